"""A server killed mid-acquisition: UNKNOWN after restart until stop; file and log survive."""

import signal
import time

import h5py
from conftest import wait_for


def test_kill_during_acquisition_then_restart(sending):
    daq = sending
    done = daq.client.start_writer_sync({"output_file": str(daq.data_root / "before.h5"), "n_images": 3})
    assert done["acquisition"]["message"] == "Completed."
    output = daq.data_root / "killed.h5"
    daq.client.start_writer_async({"output_file": str(output), "n_images": 100_000})
    wait_for(lambda: daq.client.get_status()["acquisition"]["stats"]["n_write_completed"] >= 150, timeout=20)
    time.sleep(0.2)
    daq.stop(signal.SIGKILL)

    daq.start(write_config=False)
    status = daq.client.get_status()
    assert status["state"] == "UNKNOWN"
    assert status["acquisition"]["state"] == "FAILED"
    assert status["acquisition"]["message"].startswith("ERROR:")
    assert "open-for-writing mark was cleared" in status["acquisition"]["message"]
    assert status["acquisition"]["info"]["output_file"] == str(output)
    # the log written before the crash is still there
    assert daq.client.get_logs(5)[0]["info"]["output_file"].endswith("before.h5")

    reset = daq.client.stop_writer()
    assert reset["state"] == "READY"
    # the file written until the kill reads as usual (the restart cleared its open-for-writing mark): flushed
    # about once a second, it holds the images flushed, not the requested size, and the status says how many
    with h5py.File(output, "r") as f:
        assert f["entry/data/data"].shape[1:] == (1024, 1024)
        n = f["entry/data/image_id"].shape[0]
        assert 0 < n < f["entry"].attrs["n_images_requested"]
        assert f["entry/data/image_id"][0] > 0 and f["entry/data/data"].shape[0] == n
        assert f["entry"].attrs["n_images_written"] == n
    assert status["acquisition"]["stats"]["n_write_completed"] == n, "the restarted server read the count from the file"
    after = daq.client.start_writer_sync({"output_file": str(daq.data_root / "after.h5"), "n_images": 3})
    assert after["acquisition"]["message"] == "Completed."
