"""Plans that fail: the plan fails with the DAQ's message and the DAQ is left READY.

Failures are real: another client's acquisition, a port nobody listens on, a stop sent by another
client, a server stopped or killed (and restarted) in the middle of a plan."""

from __future__ import annotations

import signal
import threading

import h5py
import pytest
from bluesky import plan_stubs as bps
from bluesky import plans as bp
from bluesky import preprocessors as bpp
from bluesky.utils import FailedStatus
from conftest import free_tcp_port, make_daq, wait_for
from event_model import Filler

from ophyd_stddaq import SPEC, StdDaq, StdDaqAcquisitionError, StdDaqHDF5Handler
from std_daq_client import StdDaqAdminException, StdDaqClient


def stop_doc(documents) -> dict:
    (doc,) = [doc for name, doc in documents if name == "stop"]
    return doc


def n_events(documents) -> int:
    return sum(1 for name, _ in documents if name == "event") + sum(
        len(doc["seq_num"]) for name, doc in documents if name == "event_page"
    )


def messages(error: BaseException) -> str:
    """The text of an exception and of every exception it was raised from."""
    texts = []
    while error is not None:
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    return " <- ".join(texts)


def when_written(daq, n_images: int, action) -> threading.Thread:
    """Run ``action()`` in a thread once the current acquisition has written ``n_images`` images."""

    def run():
        client = StdDaqClient(daq.url)
        wait_for(lambda: client.get_status()["acquisition"]["stats"]["n_write_completed"] >= n_images, timeout=30)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_stage_fails_with_the_daqs_message_when_another_acquisition_runs(sending, RE, documents):
    daq = sending
    other = str(daq.data_root / "someone_else.h5")
    daq.client.start_writer_async({"output_file": other, "n_images": 100_000})
    det = make_daq(daq)

    with pytest.raises(StdDaqAdminException, match="The writer is WRITING") as failure:
        RE(bp.count([det], num=1))

    assert f"daq: the DAQ refused to write {daq.data_root}" in str(failure.value)
    status = daq.client.get_status()
    assert status["state"] == "WRITING", "the other acquisition is not ours to stop"
    assert status["acquisition"]["info"]["output_file"] == other
    assert not [doc for name, doc in documents if name in ("resource", "event")]
    daq.client.stop_writer()
    assert sorted(p.name for p in daq.data_root.iterdir()) == ["someone_else.h5"]


def test_unreachable_server_fails_the_plan_with_the_clients_message(tmp_path, RE):
    url = f"http://127.0.0.1:{free_tcp_port()}"
    det = StdDaq(url, name="daq", directory=str(tmp_path))
    with pytest.raises(RuntimeError, match=f"Cannot reach the std-daq server at {url}"):
        det.bit_depth.get()
    det.n_images.put(3)
    with pytest.raises(RuntimeError, match=f"Cannot reach the std-daq server at {url}"):
        RE(bp.count([det], num=3))


def test_too_many_triggers_fail_the_scan_midway(sending, RE, documents):
    daq = sending
    det = make_daq(daq)
    det.n_images.put(3)

    with pytest.raises(StdDaqAcquisitionError, match="trigger number 4, but the acquisition has only n_images=3"):
        RE(bp.count([det], num=5))

    assert n_events(documents) == 3 and stop_doc(documents)["exit_status"] == "fail"
    assert daq.client.get_status()["state"] == "READY"
    with Filler({SPEC: StdDaqHDF5Handler}, inplace=False) as filler:
        filled = [filler(name, doc) for name, doc in documents]
    assert [doc["data"]["daq_image"].shape for name, doc in filled if name == "event"] == [(1024, 1024)] * 3


def test_stop_from_another_client_fails_complete_with_interrupted(sending, RE, documents):
    daq = sending
    det = make_daq(daq)
    det.n_images.put(100_000)  # long enough that only the stop can end it
    when_written(daq, 10, lambda: StdDaqClient(daq.url).stop_writer())

    with pytest.raises(FailedStatus) as failure:
        RE(bpp.stage_wrapper(bp.fly([det]), [det]))

    error = failure.value.__cause__
    assert isinstance(error, StdDaqAcquisitionError)
    assert "'Interrupted.'" in str(error) and "of 100000 images, 100000 needed" in str(error)
    assert error.acquisition["state"] == "FINISHED" and error.acquisition["message"] == "Interrupted."
    assert stop_doc(documents)["exit_status"] == "fail"
    assert "Interrupted." in stop_doc(documents)["reason"]
    status = daq.client.get_status()
    assert status["state"] == "READY"
    with h5py.File(det.last_output_file, "r") as f:  # a valid file with the images written until the stop
        assert f["entry/data/data"].shape[0] == status["acquisition"]["stats"]["n_write_completed"] >= 10


def test_server_killed_and_restarted_fails_complete_with_the_daqs_error(sending, RE, documents):
    """SIGKILL mid-acquisition: the restarted server reports the acquisition FAILED (state UNKNOWN);
    complete fails with that message and the device resets the writer, leaving the DAQ READY."""
    daq = sending
    det = make_daq(daq, unreachable_timeout=60)  # the restart takes a moment; it must not fail on that
    det.n_images.put(100_000)

    def kill_and_restart():
        daq.stop(signal.SIGKILL)
        daq.start(write_config=False)

    restarter = when_written(daq, 10, kill_and_restart)
    with pytest.raises(FailedStatus) as failure:
        RE(bpp.stage_wrapper(bp.fly([det]), [det]))
    restarter.join(timeout=30)

    error = failure.value.__cause__
    assert isinstance(error, StdDaqAcquisitionError)
    assert "FAILED" in str(error) and "ERROR: The server stopped during this acquisition" in str(error)
    assert "ERROR: The server stopped" in stop_doc(documents)["reason"]
    assert "ERROR: The server stopped" in str(failure.value), "the RunEngine's exception names the cause"
    status = daq.client.get_status()
    assert status["state"] == "READY", "the device reset the writer it had left UNKNOWN"
    assert status["acquisition"]["info"]["output_file"] == det.last_output_file


def test_server_gone_during_a_step_scan_fails_the_plan_with_unreachable(sending, RE, documents):
    daq = sending
    det = make_daq(daq, unreachable_timeout=1.0)
    det.n_images.put(100_000)

    def per_shot(detectors):
        if n_events(documents) == 2:
            daq.stop()  # SIGTERM: the server ends the acquisition "Interrupted." and exits
        yield from bps.trigger_and_read(detectors)

    with pytest.raises(Exception) as failure:  # the failed trigger, or unstage that cannot stop the writer
        RE(bp.count([det], num=5, per_shot=per_shot))

    assert f"Cannot reach the std-daq server at {daq.url}: Connection refused" in messages(failure.value)

    assert n_events(documents) == 2 and stop_doc(documents)["exit_status"] == "fail"
    daq.start(write_config=False)
    status = daq.client.get_status()
    assert status["state"] == "READY"
    assert status["acquisition"]["message"] == "No acquisition yet."
    assert daq.client.get_logs(1)[0]["message"] == "Interrupted."
    with Filler({SPEC: StdDaqHDF5Handler}, inplace=False) as filler:
        filled = [filler(n, d) for n, d in documents]
    assert [doc["data"]["daq_image"].shape for name, doc in filled if name == "event"] == [(1024, 1024)] * 2
