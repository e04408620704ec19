"""The file knows its run (ophyd-async): the run's identity, sample and exposure reach the file, the status and
the log; a plan that ends after its N images leaves a "Completed." acquisition of N images; folders of the
path provider are created (``create_dir_depth``); the configuration says what the detector is."""

import math
from pathlib import Path, PurePosixPath

import bluesky.plan_stubs as bps
import h5py
import pytest
import requests
from bluesky.plans import count
from bluesky.run_engine import call_in_bluesky_event_loop
from conftest import wait_for
from ophyd_async.core import StaticPathProvider, TriggerInfo, UUIDFilenameProvider, YMDPathProvider
from ophyd_async.plan_stubs import ensure_connected

from ophyd_stddaq import StdDaqDetector, folders_to_create, run_file_stem, run_request_fields


@pytest.fixture
def free_running(daq1):
    """The server's built-in simulator sending free at 50 Hz (a free-running detector)."""
    answer = requests.post(daq1.url + "/simulation/start", json={"rate_hz": 50}, timeout=10).json()
    assert answer["status"] == "ok", answer
    yield daq1
    requests.post(daq1.url + "/simulation/stop", timeout=10)


def connected(daq, RE, provider=None, **kwargs) -> StdDaqDetector:
    provider = provider or StaticPathProvider(UUIDFilenameProvider(), daq.data_root)
    det = StdDaqDetector(daq.url, provider, name="det", **kwargs)
    RE(ensure_connected(det))
    return det


def file_of(documents) -> Path:
    (resource,) = [d for n, d in documents if n == "stream_resource" and d["data_key"] == "det"]
    return Path(resource["uri"].removeprefix("file://localhost"))


def text(dataset) -> str:
    value = dataset[()]
    return value.decode() if isinstance(value, bytes) else str(value)


def test_count_writes_the_runs_identity_into_file_status_and_log(free_running, RE, documents):
    daq = free_running
    det = connected(daq, RE)
    RE(count([det], num=3), sample={"name": "lysozyme", "temperature": 100}, proposal_id="p12345")
    start = next(d for n, d in documents if n == "start")
    path = file_of(documents)
    with h5py.File(path, "r") as f:
        assert text(f["entry/entry_identifier_uuid"]) == start["uid"]
        assert text(f["entry/entry_identifier"]) == str(start["scan_id"])
        assert text(f["entry/title"]) == "count"
        assert text(f["entry/sample/name"]) == "lysozyme"
        assert text(f["entry/run/proposal_id"]) == "p12345"
        assert f["entry/data/data"].shape[0] == 3
    status = daq.client.get_status()["acquisition"]
    assert status["info"]["run"]["uid"] == start["uid"] and status["info"]["run"]["scan_id"] == start["scan_id"]
    assert status["message"] == "Completed." and status["state"] == "FINISHED"
    assert status["info"]["n_images"] == 3 and status["stats"]["n_write_completed"] == 3
    (log,) = daq.client.get_logs(1)
    assert log["info"]["run"]["plan_name"] == "count" and log["info"]["n_images"] == 3
    assert log["message"] == "Completed."


def test_fly_scan_exposure_reaches_file_simulator_and_configuration(free_running, RE, documents):
    daq = free_running
    det = connected(daq, RE)

    def fly():
        yield from bps.open_run()
        yield from bps.prepare(det, TriggerInfo(number_of_events=10, livetime=0.004, deadtime=0.001), wait=True)
        yield from bps.declare_stream(det, name="primary", collect=True)
        yield from bps.kickoff(det, wait=True)
        yield from bps.complete(det, wait=True)
        yield from bps.collect(det, name="primary")
        yield from bps.close_run()

    RE(count([det], num=1))  # a run before: the fly scan (no stage) still gets a new file
    first = file_of(documents)
    documents.clear()
    RE(fly())
    path = file_of(documents)
    assert path != first
    with h5py.File(path, "r") as f:
        assert f["entry/instrument/detector/count_time"][()] == pytest.approx(0.004, abs=1e-12)
        assert f["entry/instrument/detector/frame_time"][()] == pytest.approx(0.005, abs=1e-12)
        assert f["entry/data/data"].shape[0] == 10
    simulator = requests.get(daq.url + "/simulation/status", timeout=10).json()["simulator"]
    assert simulator["frame_period"] == pytest.approx(0.005) and simulator["rate_hz"] == pytest.approx(200)
    assert simulator["exposure_time"] == pytest.approx(0.004)
    conf = [d for n, d in documents if n == "descriptor"][0]["configuration"]["det"]
    assert conf["data"]["det-detector_type"] == "jungfrau"
    assert conf["data"]["det-image_pixel_height"] == 512 and conf["data"]["det-image_pixel_width"] == 1024
    assert conf["data"]["det-bit_depth"] == 16 and conf["data"]["det-compression"] == "none"
    assert conf["data"]["det-count_time"] == pytest.approx(0.004)
    assert conf["data_keys"]["det-frame_time"]["dtype"] == "number"


def test_configuration_without_exposure_is_nan(daq1, RE):
    det = connected(daq1, RE)
    readings = call_in_bluesky_event_loop(det.read_configuration())
    assert readings["det-detector_type"]["value"] == "jungfrau"
    assert math.isnan(readings["det-count_time"]["value"])


def test_create_dir_depth_makes_the_folders_inside_the_data_root(free_running, RE, documents):
    daq = free_running
    (daq.data_root / "beamtime").mkdir()
    # <beamtime>/det/<year>/<month>/<day>: the last 4 folders are created
    provider = YMDPathProvider(UUIDFilenameProvider(), daq.data_root / "beamtime", create_dir_depth=-4)
    det = connected(daq, RE, provider)
    RE(count([det], num=2))
    path = file_of(documents)
    assert path.exists() and path.parents[3] == daq.data_root / "beamtime" / "det"
    with h5py.File(path, "r") as f:
        assert f["entry/data/data"].shape[0] == 2


def test_create_folders_never_reaches_the_data_root_or_above(daq1):
    outside = daq1.data_root / "a" / "b.h5"
    for n, reason in ((2, "only 1 folder(s)"), (-1, "create_folders"), (True, "create_folders")):
        answer = requests.post(
            daq1.url + "/writer/write_async",
            json={"output_file": str(outside), "n_images": 1, "create_folders": n},
            timeout=10,
        ).json()
        assert answer["status"] == "error" and reason in answer["message"], answer
    assert list(daq1.data_root.iterdir()) == []
    assert daq1.client.get_status()["state"] == "READY"


def test_stop_with_n_images(free_running):
    daq = free_running
    for body in ({"n_images": 0}, {"n_images": "3"}, {"n": 3}, [3]):
        answer = requests.post(daq.url + "/writer/stop", json=body, timeout=10).json()
        assert answer["status"] == "error", (body, answer)
    target = daq.data_root / "gated.h5"
    daq.client.start_writer_async({"output_file": str(target), "n_images": 1000, "gated": True})
    requests.post(daq.url + "/writer/trigger", json={"n_images": 2}, timeout=10)
    wait_for(lambda: daq.client.get_status()["acquisition"]["stats"]["n_write_completed"] == 2, timeout=20)
    status = daq.client.stop_writer(n_images=3)["acquisition"]  # the plan says 3: one is missing
    assert status["message"] == "Interrupted." and status["info"]["n_images"] == 1000
    target = daq.data_root / "gated2.h5"
    daq.client.start_writer_async({"output_file": str(target), "n_images": 1000, "gated": True})
    requests.post(daq.url + "/writer/trigger", json={"n_images": 2}, timeout=10)
    wait_for(lambda: daq.client.get_status()["acquisition"]["stats"]["n_write_completed"] == 2, timeout=20)
    status = daq.client.stop_writer(n_images=2)["acquisition"]
    assert status["message"] == "Completed." and status["info"]["n_images"] == 2
    with h5py.File(target, "r") as f:
        assert f["entry/data/data"].shape[0] == 2


def test_folders_to_create_follows_area_detectors_create_dir_depth():
    directory = PurePosixPath("/data/beamtime/det/2026/12/06")
    assert [folders_to_create(directory, depth) for depth in (0, -3, -4, 2, 6, 9, -9)] == [0, 3, 4, 4, 0, 0, 6]


def test_run_request_fields_send_what_the_daq_accepts():
    start = {"uid": "1f0c2a9e-aaaa", "scan_id": 7, "plan_name": "scan", "sample": {"name": "insulin", "T": 100},
             "proposal_id": 12345, "operator": ["two", "people"], "beamline_id": float("nan"),
             "project": True}  # fmt: skip
    fields = run_request_fields(start)
    assert fields == {
        "run": {"uid": "1f0c2a9e-aaaa", "scan_id": 7, "plan_name": "scan",
                "metadata": {"sample": "insulin", "proposal_id": 12345, "project": True}},
        "sample_name": "insulin",
    }  # fmt: skip
    assert run_request_fields(None) == {} and run_file_stem(start) == "7_1f0c2a9e"
