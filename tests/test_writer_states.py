"""The writer state machine through the REST API: refusals, stop, waiting for images."""

import h5py
import numpy as np
import pytest
from conftest import wait_for
from expected import expected_image

from std_daq_client import StdDaqAdminException


def test_write_request_while_writing_is_refused(sending):
    daq = sending
    daq.client.start_writer_async({"output_file": str(daq.data_root / "first.h5"), "n_images": 1000})
    with pytest.raises(StdDaqAdminException, match="WRITING"):
        daq.client.start_writer_async({"output_file": str(daq.data_root / "second.h5"), "n_images": 10})
    assert not (daq.data_root / "second.h5").exists()
    assert daq.client.get_status()["acquisition"]["info"]["output_file"].endswith("first.h5")
    daq.client.stop_writer()


def test_stop_during_a_write_leaves_a_valid_file_with_what_was_written(sending):
    daq = sending
    output = daq.data_root / "stopped.h5"
    daq.client.start_writer_async({"output_file": str(output), "n_images": 10_000})
    wait_for(lambda: daq.client.get_status()["acquisition"]["stats"]["n_write_completed"] >= 20)
    status = daq.client.stop_writer()

    assert status["state"] == "READY"
    assert status["acquisition"]["state"] == "FINISHED"
    assert status["acquisition"]["message"] == "Interrupted."
    n_written = status["acquisition"]["stats"]["n_write_completed"]
    assert 20 <= n_written < 10_000
    with h5py.File(output, "r") as f:
        data = f["entry/data/data"]
        assert data.shape == (n_written, 1024, 1024)
        assert f["entry/data/image_id"].shape == (n_written,)
        last = int(f["entry/data/image_id"][-1])
        assert np.array_equal(data[-1], expected_image(daq.config, last))
    logs = daq.client.get_logs(1)
    assert logs[0]["message"] == "Interrupted."
    assert logs[0]["stats"]["n_write_completed"] == n_written
    # the writer takes the next request at once
    again = daq.client.start_writer_sync({"output_file": str(daq.data_root / "after.h5"), "n_images": 5})
    assert again["acquisition"]["message"] == "Completed."


def test_without_detector_the_acquisition_waits_for_images_then_stop_interrupts(daq):
    output = daq.data_root / "waiting.h5"
    status = daq.client.start_writer_async({"output_file": str(output), "n_images": 5})
    assert status["acquisition"]["state"] == "WAITING_IMAGES"
    assert daq.client.get_status()["acquisition"]["state"] == "WAITING_IMAGES"
    final = daq.client.stop_writer()
    assert final["acquisition"]["message"] == "Interrupted."
    with h5py.File(output, "r") as f:
        assert f["entry/data/data"].shape == (0, 1024, 1024)


def test_images_arriving_later_are_written_when_the_detector_starts(daq):
    output = daq.data_root / "late.h5"
    daq.client.start_writer_async({"output_file": str(output), "n_images": 10})
    detector = daq.simulator(n_images=40, first_frame=1)
    detector.run()
    final = wait_for(lambda: (s := daq.client.get_status())["state"] == "READY" and s)
    assert final["acquisition"]["message"] == "Completed."
    with h5py.File(output, "r") as f:
        frames = f["entry/data/image_id"][:]
        assert list(frames) == list(range(frames[0], frames[0] + 10))


def test_stop_is_always_allowed(daq):
    assert daq.client.stop_writer()["state"] == "READY"
    assert daq.client.stop_writer()["state"] == "READY"


def test_first_status_has_no_acquisition(daq):
    status = daq.client.get_status()
    assert status["state"] == "READY"
    assert status["acquisition"]["info"]["output_file"] is None
    assert status["acquisition"]["stats"]["start_time"] is None
