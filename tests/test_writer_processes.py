"""The writer in its own processes: the ring buffer in named shared memory, a writer that crashes or
hangs fails its acquisition and never the receiver, and several processes write one acquisition."""

import os
import signal
import stat
import time

import h5py
import hdf5plugin  # noqa: F401 - the bitshuffle filter for the compressed case
import numpy as np
import pytest
from conftest import RunningDaq, jungfrau_config, nxvalidate_report, wait_for, writer_pids
from expected import expected_image


def packets_received(daq: RunningDaq) -> int:
    return daq.client.get_stats()["detector"]["packets_received"]


def start_long_acquisition(daq: RunningDaq, name: str) -> str:
    """An acquisition that has been writing for more than a second (the file's metadata is flushed each second)."""
    output = str(daq.data_root / name)
    daq.client.start_writer_async({"output_file": output, "n_images": 100000})
    wait_for(lambda: daq.client.get_status()["acquisition"]["stats"]["n_write_completed"] >= 150, timeout=30)
    return output


def assert_images_as_sent(daq: RunningDaq, path: str, at_least: int) -> int:
    """The file holds at least ``at_least`` images, each complete one exactly as sent (on a busy machine an
    image may lose a module's packets: those are marked, not compared)."""
    with h5py.File(path, "r") as f:
        frames = f["entry/data/image_id"][:]
        missing = f["entry/data/n_missing_packets"][:]
        assert len(frames) >= at_least
        complete = [i for i in (0, len(frames) // 2, len(frames) - 1) if missing[i] == 0]
        for i in complete:
            assert np.array_equal(f["entry/data/data"][i], expected_image(daq.config, int(frames[i])))
    return len(frames)


def test_ring_buffer_is_named_shared_memory_private_to_the_server(daq):
    rings = [name for name in os.listdir("/dev/shm") if name.startswith(f"std_daq.{daq.proc.pid}.")]
    assert len(rings) == 1
    info = os.stat(f"/dev/shm/{rings[0]}")
    assert stat.S_IMODE(info.st_mode) == 0o600, "only the server's user maps the images"
    assert len(writer_pids(daq)) == 1, "one writer process by default"
    daq.stop()
    assert not os.path.exists(f"/dev/shm/{rings[0]}"), "the name goes with the server"


def test_killed_writer_process_fails_the_acquisition_not_the_receiver(sending):
    daq = sending
    output = start_long_acquisition(daq, "killed.h5")
    [pid] = writer_pids(daq)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: daq.client.get_status()["acquisition"]["state"] == "FAILED", timeout=30)
    status = daq.client.get_status()
    assert status["state"] == "READY"
    message = status["acquisition"]["message"]
    assert f"writer process 0 (pid {pid}) was killed by signal SIGKILL" in message
    assert daq.client.get_logs(1)[0]["state"] == "FAILED"

    before = packets_received(daq)
    wait_for(lambda: packets_received(daq) > before, timeout=10)  # the receiver never stopped counting
    n_file = assert_images_as_sent(daq, output, at_least=20)  # what was written stays readable
    said = status["acquisition"]["stats"]["n_write_completed"]
    with h5py.File(output, "r") as f:  # counts never lie: status, log and file agree
        assert said == n_file == f["entry/data/data"].shape[0] == f["entry"].attrs["n_images_written"]
    assert daq.client.get_logs(1)[0]["stats"]["n_write_completed"] == said
    assert f"with {said} images" in message

    again = daq.client.start_writer_sync({"output_file": str(daq.data_root / "after.h5"), "n_images": 10})
    assert again["acquisition"]["message"] == "Completed."
    assert writer_pids(daq) != [pid], "a new writer process serves the next acquisition"
    assert_images_as_sent(daq, str(daq.data_root / "after.h5"), at_least=10)


def test_hung_writer_process_is_killed_while_control_answers(tmp_path):
    daq = RunningDaq(tmp_path, jungfrau_config(), extra_args=["--writer-timeout", "2"]).start()
    detector = daq.simulator(first_frame=1)
    detector.start()
    try:
        output = start_long_acquisition(daq, "hung.h5")
        [pid] = writer_pids(daq)
        os.kill(pid, signal.SIGSTOP)  # a writer stuck in HDF5 (or on a dead file server)
        slowest = 0.0
        deadline = time.monotonic() + 30
        while daq.client.get_status()["acquisition"]["state"] != "FAILED" and time.monotonic() < deadline:
            began = time.monotonic()
            daq.client.get_status()
            slowest = max(slowest, time.monotonic() - began)
            time.sleep(0.1)
        status = daq.client.get_status()
        assert status["acquisition"]["state"] == "FAILED"
        assert "sent nothing for 2 s" in status["acquisition"]["message"]
        assert slowest < 5, "status answers while the writer hangs"
        assert_images_as_sent(daq, output, at_least=20)  # the killed process's file reads as usual
        before = packets_received(daq)
        wait_for(lambda: packets_received(daq) > before, timeout=10)
        again = daq.client.start_writer_sync({"output_file": str(daq.data_root / "after.h5"), "n_images": 10})
        assert again["acquisition"]["message"] == "Completed."
        assert pid not in writer_pids(daq)
    finally:
        detector.stop()
        daq.stop()


def test_an_idle_writer_process_is_not_taken_for_hung(tmp_path):
    """Pauses longer than --writer-timeout between images, and before the stop, are no hang."""
    daq = RunningDaq(tmp_path, jungfrau_config(), extra_args=["--writer-timeout", "1"]).start()
    try:
        output = daq.data_root / "pauses.h5"
        daq.client.start_writer_async({"output_file": str(output), "n_images": 1000})
        for burst, first in enumerate((1, 1001)):  # two bursts of 10 images, a pause after each
            detector = daq.simulator(first_frame=first, n_images=10)
            detector.start()
            written = 10 * burst + 10
            wait_for(lambda n=written: daq.client.get_status()["acquisition"]["stats"]["n_write_completed"] >= n)
            detector.stop()
            time.sleep(2.5)
            assert daq.client.get_status()["acquisition"]["state"] == "WRITING"
        status = daq.client.stop_writer()
        wait_for(lambda: daq.client.get_status()["state"] == "READY")
        acquisition = daq.client.get_status()["acquisition"]
        assert acquisition["state"] == "FINISHED" and acquisition["message"] == "Interrupted."
        assert acquisition["stats"]["n_write_completed"] == 20
        assert status["state"] in ("READY", "WRITING")
    finally:
        daq.stop()


@pytest.mark.parametrize("compression", ["none", "bitshuffle-lz4"])
def test_several_writer_processes_write_one_acquisition(tmp_path, compression):
    args = ["--writer-processes", "3", "--compression", compression]
    daq = RunningDaq(tmp_path, jungfrau_config(), extra_args=args).start()
    try:
        assert len(writer_pids(daq)) == 3
        nxmx = {"incident_wavelength": 1.0332, "detector_distance": 120.5, "sample_name": "lysozyme"}
        request = {"image_statistics": True, **nxmx}
        status, output = daq.acquire("joined.h5", 50, request=request, first_frame=501)
    finally:
        daq.stop()
    assert status["acquisition"]["message"] == "Completed."
    assert status["acquisition"]["stats"]["n_write_completed"] == 50
    parts = [output.with_name(f"joined.part{i}.h5") for i in range(3)]
    with h5py.File(output, "r") as f:
        data = f["entry/data/data"]
        assert data.is_virtual and data.shape == (50, 1024, 1024)
        frames = f["entry/data/image_id"][:]
        assert np.array_equal(np.diff(frames), np.ones(49)), "the images in the order they came"
        good = f["entry/data/is_good_frame"][:]
        assert np.array_equal(good, f["entry/data/n_missing_packets"][:] == 0)
        assert good.sum() >= 45, "on a busy machine an image may lose a module's packets, not many"
        sums = f["entry/data/image_sum"][:]
        for i in np.flatnonzero(good):  # every complete image exactly as sent
            want = expected_image(daq.config, int(frames[i]))
            assert np.array_equal(data[i], want), f"image {i}"
            assert sums[i] == want.sum(dtype=np.uint64)
        images = data[:]
        assert f["entry"].attrs["n_images_written"] == 50
        assert f["entry/instrument/detector/data"].shape == (50, 1024, 1024)
    if compression == "none":
        report = nxvalidate_report(output)
        assert "Total number of errors: 0" in report, report[-2000:]
    for i, part in enumerate(parts):  # each part a complete file of its own: every third image
        with h5py.File(part, "r") as f:
            assert np.array_equal(f["entry/data/image_id"][:], frames[i::3])
            assert np.array_equal(f["entry/data/data"][:], images[i::3]), "the master maps image k to part k mod 3"


def test_refused_shared_memory_falls_back_to_writing_in_the_server(tmp_path):
    """A file size limit (RLIMIT_FSIZE) forbids the shared ring buffer: the server writes itself and says so."""
    daq = RunningDaq(tmp_path, jungfrau_config(), max_file_bytes=50_000_000).start()
    try:
        message = daq.client.get_deployment_status()["message"]
        assert "cannot be shared memory" in message
        assert "writes the files itself" in message
        assert writer_pids(daq) == []
        status, _ = daq.acquire("local.h5", 5, first_frame=1)
        assert status["acquisition"]["message"] == "Completed."
    finally:
        daq.stop()


def test_an_output_folder_removed_during_the_acquisition_fails_it_at_once(sending):
    """Detected at the next flush (within about a second), FAILED with the reason, nothing written into the void."""
    daq = sending
    folder = daq.data_root / "doomed"
    folder.mkdir()
    daq.client.start_writer_async({"output_file": str(folder / "gone.h5"), "n_images": 100000})
    wait_for(lambda: daq.client.get_status()["acquisition"]["stats"]["n_write_completed"] >= 50, timeout=30)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    wait_for(lambda: daq.client.get_status()["state"] == "READY", timeout=30)
    acquisition = daq.client.get_status()["acquisition"]
    assert acquisition["state"] == "FAILED"
    assert "was removed" in acquisition["message"] and "gone.h5" in acquisition["message"]
    assert acquisition["stats"]["n_write_completed"] < 100000
