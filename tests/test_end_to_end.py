"""Simulated Jungfrau -> C receiver -> HDF5, driven by the client over REST; every pixel checked."""

import json

import h5py
import numpy as np
from expected import expected_image, missing_packets_seen


def test_written_file_holds_exactly_what_the_detector_sent(sending):
    daq = sending
    output = daq.data_root / "run1.h5"
    status = daq.client.start_writer_sync({"output_file": str(output), "n_images": 30})

    assert status["state"] == "READY"
    acquisition = status["acquisition"]
    assert acquisition["state"] == "FINISHED"
    assert acquisition["message"] == "Completed."
    assert acquisition["info"]["output_file"] == str(output)
    assert acquisition["info"]["n_images"] == 30
    assert acquisition["stats"]["n_write_completed"] == 30
    assert acquisition["stats"]["n_write_requested"] == 30
    assert acquisition["stats"]["start_time"] <= acquisition["stats"]["stop_time"]

    with h5py.File(output, "r") as f:
        data = f["entry/data/data"]
        assert data.shape == (30, 1024, 1024)
        assert data.dtype == np.uint16
        assert data.chunks == (1, 1024, 1024)
        frames = f["entry/data/image_id"][:]
        assert frames[0] > 19000, "frame numbers come from the detector, not from 0"
        assert np.array_equal(np.diff(frames), np.ones(29)), "consecutive frames, none lost"
        assert not f["entry/data/n_missing_packets"][:].any()
        assert f["entry/data/is_good_frame"][:].all()
        assert (np.diff(f["entry/data/timestamp"][:]) > 0).all()
        for i, frame in enumerate(frames):
            assert np.array_equal(data[i], expected_image(daq.config, int(frame))), f"image {i} differs"
        entry = f["entry"].attrs
        assert entry["NX_class"] == "NXentry"
        assert entry["run_id"] == acquisition["info"]["run_id"]
        assert entry["detector_name"] == "JF-test"
        assert json.loads(entry["config"])["module_positions"] == daq.config["module_positions"]
        assert entry["n_images_written"] == 30


def test_async_write_reports_progress_and_finishes(sending):
    daq = sending
    output = daq.data_root / "async.h5"
    status = daq.client.start_writer_async({"output_file": str(output), "n_images": 50, "run_id": 42})
    assert status["state"] == "WRITING"
    assert status["acquisition"]["state"] in ("WAITING_IMAGES", "WRITING")
    assert status["acquisition"]["info"]["run_id"] == 42
    seen_progress = set()
    from conftest import wait_for

    def finished():
        s = daq.client.get_status()
        seen_progress.add(s["acquisition"]["stats"]["n_write_completed"])
        return s if s["state"] == "READY" else None

    final = wait_for(finished, timeout=20)
    assert final["acquisition"]["state"] == "FINISHED"
    assert len(seen_progress) > 1, "progress is visible while writing"
    with h5py.File(output, "r") as f:
        assert f["entry/data/data"].shape[0] == 50
        assert f["entry"].attrs["run_id"] == 42


def test_images_with_lost_packets_are_written_and_flagged(daq):
    status, output = daq.acquire("lossy.h5", 40, first_frame=1, loss=0.01, seed=11)
    assert status["acquisition"]["message"] == "Completed."
    with h5py.File(output, "r") as f:
        missing = f["entry/data/n_missing_packets"][:]
        good = f["entry/data/is_good_frame"][:]
        assert missing.sum() > 0, "1 % of 256 packets an image: some images lose packets"
        assert np.array_equal(good, missing == 0)
        for i in np.flatnonzero(missing)[:3]:  # lost packets carry the missing value, the rest is exact
            frame = int(f["entry/data/image_id"][i])
            assert missing_packets_seen(daq.config, frame, f["entry/data/data"][i]) == missing[i]
