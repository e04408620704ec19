"""pedestal_plan and the conversion in the configuration, for both devices, against the real server."""

import asyncio

import h5py
import numpy as np
import pytest
from bluesky import plans as bp
from conftest import RunningDaq, jungfrau_config, make_daq
from ophyd_async.core import StaticPathProvider, UUIDFilenameProvider
from ophyd_async.plan_stubs import ensure_connected

from ophyd_stddaq import StdDaqAcquisitionError, StdDaqDetector, pedestal_plan
from sim.jungfrau import write_gain_maps


@pytest.fixture
def RE():
    """A RunEngine whose calls return the plan's result (pedestal_plan returns the pedestal in use)."""
    from bluesky import RunEngine

    return RunEngine({}, call_returns_result=True)


@pytest.fixture
def converting(tmp_path):
    """A server converting a 1-module Jungfrau to photons, the simulator sending pedestal-mode dark frames."""
    config = jungfrau_config(1)
    write_gain_maps(tmp_path / "gains.h5", config, seed=5)
    config |= {"jungfrau_gain_maps": str(tmp_path / "gains.h5"), "jungfrau_conversion": "photons"}
    daq = RunningDaq(tmp_path / "server", config)
    (tmp_path / "server").mkdir()
    daq.start()
    yield daq
    daq.stop()


def pedestal_while_dark(daq: RunningDaq, RE, det) -> dict:
    """pedestal_plan while the simulator sends its pedestal mode; returns the plan's result."""
    detector = daq.simulator(rate_hz=200, content="jungfrau-pedestal", seed=5)
    detector.start()
    try:
        return RE(pedestal_plan(det, 300)).plan_result
    finally:
        detector.stop()


def test_the_v1_device_takes_a_pedestal_and_shows_the_conversion(converting, RE):
    det = make_daq(converting, nexus={"incident_energy": 12.4})
    described = det.describe_configuration()
    assert described["daq_conversion"]["dtype"] == "string"
    assert det.read_configuration()["daq_pedestal_file"]["value"] == ""
    pedestal = pedestal_while_dark(converting, RE, det)
    frames = pedestal["gain_stage_frames"]
    assert sum(frames) > 290 and min(frames) > 40, "frames of each stage (a busy machine may lose one)"
    assert pedestal["file"].endswith("_pedestal.h5")
    read = det.read_configuration()
    assert read["daq_conversion"]["value"] == "photons"
    assert read["daq_pedestal_file"]["value"] == pedestal["file"]
    assert read["daq_pedestal_sha256"]["value"] == pedestal["sha256"]
    assert "gains.h5" in read["daq_gain_maps"]["value"]
    detector = converting.simulator(content="jungfrau-raw", seed=5, noise=0)
    detector.start()
    try:
        det.n_images.put(3)
        RE(bp.count([det], num=3))
    finally:
        detector.stop()
    with h5py.File(det.last_output_file, "r") as f:
        assert f["entry/data/data"].dtype == np.uint16 and f["entry/data/data"].attrs["units"] == "photons"


def test_the_async_detector_takes_a_pedestal_and_a_bad_one_raises(converting, RE):
    det = StdDaqDetector(converting.url, StaticPathProvider(UUIDFilenameProvider(), converting.data_root), name="daq")
    RE(ensure_connected(det))
    pedestal = pedestal_while_dark(converting, RE, det)
    assert pedestal["file"].startswith(str(converting.data_root))
    config = asyncio.run_coroutine_threadsafe(det.read_configuration(), RE.loop).result(10)
    assert config["daq-conversion"]["value"] == "photons"
    assert config["daq-pedestal_file"]["value"] == pedestal["file"]
    described = asyncio.run_coroutine_threadsafe(det.describe_configuration(), RE.loop).result(10)
    assert {"daq-conversion", "daq-pedestal_sha256"} <= set(described)
    with pytest.raises(StdDaqAcquisitionError, match="did not end within"):
        RE(pedestal_plan(det, 300, timeout=1.0))  # nothing sends: no frame comes
    assert converting.client.get_status()["state"] == "READY", "the abandoned pedestal was stopped"
