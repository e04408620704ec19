"""The ophyd-async StdDaqDetector against the real server: count, fly scans beside another detector, honest
step scans with the simulator's software trigger, hinted readings."""

import time

import bluesky.plan_stubs as bps
import h5py
import numpy as np
import pytest
import requests
from bluesky.plans import count, scan
from expected import expected_image
from ophyd.sim import SynAxis
from ophyd_async.core import StaticPathProvider, TriggerInfo, UUIDFilenameProvider
from ophyd_async.plan_stubs import ensure_connected
from ophyd_async.sim import SimBlobDetector

from ophyd_stddaq import SlsDetAcquireLogic, StdDaqDetector


def make_detector(daq, RE, **kwargs) -> StdDaqDetector:
    provider = StaticPathProvider(UUIDFilenameProvider(), daq.data_root)
    det = StdDaqDetector(daq.url, provider, name="daq", **kwargs)
    RE(ensure_connected(det))
    return det


def images_of(documents, key: str = "daq") -> tuple[str, str, list[int]]:
    """(file, dataset, image index of each event) from the StreamResource/StreamDatum documents."""
    (resource,) = [d for n, d in documents if n == "stream_resource" and d["data_key"] == key]
    datums = [d for n, d in documents if n == "stream_datum" and d["stream_resource"] == resource["uid"]]
    indices = [i for d in datums for i in range(d["indices"]["start"], d["indices"]["stop"])]
    assert resource["mimetype"] == "application/x-hdf5"
    assert resource["uri"].startswith("file://localhost/")
    return resource["uri"].removeprefix("file://localhost"), resource["parameters"]["dataset"], indices


def test_count_takes_its_length_from_the_plan(daq1, RE, documents):
    det = make_detector(daq1, RE, trigger_mode="simulator")
    RE(count([det], num=5))
    path, dataset, indices = images_of(documents)
    assert indices == [0, 1, 2, 3, 4] and dataset == "/entry/data/data"
    (resource,) = [d for n, d in documents if n == "stream_resource" and d["data_key"] == "daq"]
    assert tuple(resource["parameters"]["chunk_shape"]) == (1, 512, 1024)
    events = [d for n, d in documents if n == "event"]
    assert [e["data"]["daq-images_written"] for e in events] == [1, 2, 3, 4, 5]
    descriptor = next(d for n, d in documents if n == "descriptor")
    assert descriptor["hints"]["daq"]["fields"] == ["daq-images_written", "daq-image_sum", "daq-image_max"]
    with h5py.File(path, "r") as f:
        assert f[dataset].shape == (5, 512, 1024)
        frames = list(f["entry/data/image_id"][:])
        assert frames == det.plan.frame_numbers  # the frames the triggers sent, in order
        for k in (0, 4):
            assert np.array_equal(f[dataset][k], expected_image(daq1.config, frames[k]))
    # a second run of the same device: a new file, again exactly its images
    documents.clear()
    RE(count([det], num=2))
    second, _, indices = images_of(documents)
    assert second != path and indices == [0, 1]
    with h5py.File(second, "r") as f:
        assert f[dataset].shape == (2, 512, 1024)


def test_free_running_detector_gives_one_image_per_trigger(daq1, RE, documents):
    sender = daq1.simulator(rate_hz=100)
    sender.start()
    triggered = []
    try:
        det = make_detector(daq1, RE)
        RE.subscribe(lambda name, doc: triggered.append(time.time()) if name == "event" else None)
        started = time.time()
        RE(count([det], num=3))
    finally:
        sender.stop()
    path, dataset, indices = images_of(documents)
    assert indices == [0, 1, 2]
    with h5py.File(path, "r") as f:  # a gated acquisition: only the images the triggers asked for
        assert f[dataset].shape[0] == 3
        frames = f["entry/data/image_id"][:]
        stamps = f["entry/data/timestamp"][:]
    assert list(np.diff(frames) > 0) == [True, True]
    assert started < stamps[0] and all(stamps[k] < triggered[k] for k in range(3))
    assert all(triggered[k - 1] < stamps[k] for k in (1, 2))  # image k was taken after event k - 1


def test_fly_scan_beside_another_ophyd_async_detector(daq1, RE, documents, tmp_path):
    det = make_detector(daq1, RE, trigger_mode="simulator")
    blob = SimBlobDetector(StaticPathProvider(UUIDFilenameProvider(), tmp_path), name="blob")
    RE(ensure_connected(blob))

    def fly():
        info = TriggerInfo(number_of_events=12)
        yield from bps.stage_all(det, blob)
        yield from bps.open_run()
        yield from bps.prepare(det, info, wait=True)
        yield from bps.prepare(blob, info, wait=True)
        yield from bps.declare_stream(det, blob, name="primary", collect=True)
        yield from bps.kickoff_all(det, blob, wait=True)
        yield from bps.collect_while_completing([det, blob], [det, blob], flush_period=0.2)
        yield from bps.close_run()
        yield from bps.unstage_all(det, blob)

    RE(fly())
    path, dataset, indices = images_of(documents)
    assert indices == list(range(12))
    _, _, blob_indices = images_of(documents, "blob")
    assert blob_indices == list(range(12))
    with h5py.File(path, "r") as f:  # an acquisition of exactly 12 images: the DAQ finished it by itself
        assert f[dataset].shape[0] == 12 and f["entry"].attrs["n_images_written"] == 12
        assert "image_sum" not in f["entry/data"], "a fly scan at full rate asks for no image statistics"
    assert daq1.client.get_status()["acquisition"]["message"] == "Completed."


class TimedAxis(SynAxis):
    """A simulated motor that records when each move started and ended."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.moves: list[tuple[float, float]] = []

    def set(self, value):
        start = time.time()
        status = super().set(value)
        status.add_callback(lambda _: self.moves.append((start, time.time())))
        return status


def start_armed_simulator(daq) -> None:
    """The built-in simulator in its triggered mode, started as docs/simulator.rst shows."""
    answer = requests.post(daq.url + "/simulation/start?trigger_mode=software", timeout=10).json()
    assert answer["status"] == "ok" and answer["simulator"]["state"] == "ARMED", answer
    time.sleep(0.3)
    assert requests.get(daq.url + "/simulation/status", timeout=10).json()["simulator"]["frames_sent"] == 0


@pytest.mark.parametrize("how", ["simulator trigger mode", "default device, armed simulator"])
def test_step_scan_takes_each_image_at_its_point(daq1, RE, documents, how):
    if how == "simulator trigger mode":
        det = make_detector(daq1, RE, trigger_mode="simulator")
    else:  # the device as constructed without options: gated writes, and it triggers the armed simulator
        start_armed_simulator(daq1)
        det = make_detector(daq1, RE)
    motor = TimedAxis(name="motor", delay=0.3)
    RE(scan([det], motor, 0, 4, 5))
    path, dataset, indices = images_of(documents)
    assert indices == [0, 1, 2, 3, 4] and len(motor.moves) == 5
    with h5py.File(path, "r") as f:
        assert f[dataset].shape[0] == 5
        stamps = f["entry/data/timestamp"][:]
        frames = list(f["entry/data/image_id"][:])
    if how == "simulator trigger mode":
        assert frames == det.plan.frame_numbers
    assert np.all(np.diff(frames) == 1), "each point's frame, none in between"
    for k, (_, move_end) in enumerate(motor.moves):
        next_move = motor.moves[k + 1][0] if k < 4 else float("inf")
        assert move_end < stamps[k] < next_move, (k, motor.moves, list(stamps))


class SimulatorAsSlsDetector:
    """The part of ``slsdet.Detector`` the controller uses, played by the server's simulated detector:
    ``startDetector`` makes it send ``frames`` frames (the real path from UDP to the file)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames = 0
        self.exptime = self.period = None
        self.started: list[int] = []
        self.stops = 0
        self.status = "runStatus.IDLE"

    def startDetector(self) -> None:  # noqa: N802 - slsdet's name
        answer = requests.post(self.url + "/simulation/trigger", json={"n_images": self.frames}, timeout=30).json()
        assert answer["status"] == "ok", answer
        self.started.append(self.frames)

    def stopDetector(self) -> None:  # noqa: N802 - slsdet's name
        self.stops += 1


def test_slsdet_controller_arms_and_starts_per_point_and_per_fly_scan(daq1, RE, documents):
    sls = SimulatorAsSlsDetector(daq1.url)
    det = make_detector(daq1, RE, acquire_logic=SlsDetAcquireLogic(detector=sls))
    RE(count([det], num=3))
    path, dataset, indices = images_of(documents)
    assert indices == [0, 1, 2] and sls.started == [1, 1, 1] and sls.stops >= 1
    with h5py.File(path, "r") as f:
        assert f[dataset].shape[0] == 3

    documents.clear()

    def fly():
        yield from bps.stage(det, wait=True)
        yield from bps.open_run()
        yield from bps.prepare(det, TriggerInfo(number_of_events=6, livetime=0.01, deadtime=0.002), wait=True)
        yield from bps.declare_stream(det, name="primary", collect=True)
        yield from bps.kickoff(det, wait=True)
        yield from bps.collect_while_completing([det], [det], flush_period=0.2)
        yield from bps.close_run()
        yield from bps.unstage(det, wait=True)

    RE(fly())
    _, _, indices = images_of(documents)
    assert indices == list(range(6)) and sls.started[-1] == 6
    assert sls.exptime == 0.01 and sls.period == pytest.approx(0.012)


def test_slsdet_controller_without_the_package_says_how_to_install():
    pytest.importorskip("ophyd_async")
    try:
        import slsdet  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install slsdet"):
            SlsDetAcquireLogic()
    else:
        pytest.skip("slsdet is installed")
