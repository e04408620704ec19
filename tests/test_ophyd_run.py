"""The ophyd (v1) device and its run: files named after the run and knowing it, the exposure set on the
device, and a step scan's acquisition "Completed." with the images the plan took."""

from pathlib import Path

import h5py
import pytest
from bluesky.plans import count
from conftest import make_daq


def text(dataset) -> str:
    value = dataset[()]
    return value.decode() if isinstance(value, bytes) else str(value)


def test_step_scan_file_knows_its_run_and_completes_with_its_images(sending, RE, documents):
    daq = sending
    det = make_daq(daq, run_metadata={"sample": "sample", "operator": "beamline_operator"})
    det.count_time.put(0.002)
    det.frame_time.put(0.01)
    RE(count([det], num=4), sample="insulin", operator="ada")
    start = next(d for n, d in documents if n == "start")
    path = Path(det.last_output_file)
    assert path.name == f"{start['scan_id']}_{start['uid'][:8]}_daq.h5"
    with h5py.File(path, "r") as f:
        assert text(f["entry/entry_identifier_uuid"]) == start["uid"]
        assert text(f["entry/entry_identifier"]) == str(start["scan_id"])
        assert text(f["entry/sample/name"]) == "insulin"
        assert text(f["entry/run/beamline_operator"]) == "ada"
        assert f["entry/instrument/detector/count_time"][()] == pytest.approx(0.002)
        assert f["entry/instrument/detector/frame_time"][()] == pytest.approx(0.01)
        assert f["entry/data/data"].shape[0] == 4
    status = daq.client.get_status()["acquisition"]
    assert (status["message"], status["info"]["n_images"], status["stats"]["n_write_completed"]) == ("Completed.", 4, 4)
    (log,) = daq.client.get_logs(1)
    assert log["message"] == "Completed." and log["info"]["run"]["uid"] == start["uid"]
    descriptor = next(d for n, d in documents if n == "descriptor")
    configuration = descriptor["configuration"]["daq"]["data"]
    assert configuration["daq_compression"] == "none" and configuration["daq_count_time"] == pytest.approx(0.002)
    assert configuration["daq_detector_type"] == "jungfrau" and configuration["daq_bit_depth"] == 16


def test_an_acquisition_outside_a_run_gets_a_time_stamped_name(sending, RE, documents):
    det = make_daq(sending)
    RE(count([det], num=1))
    first = Path(det.last_output_file)
    det.unstage()
    det.stage()  # outside a plan: no run, a time-stamped name
    det.trigger().wait(30)
    det.unstage()
    assert Path(det.last_output_file).name.startswith("daq_") and Path(det.last_output_file) != first
