"""Per-image results as readings of both ophyd devices (real server, simulator, RunEngine): step-scan events carry
their image's ROI sums (hinted: the BestEffortCallback table shows them), radial profile (1-D) and spot count,
equal to the file's /entry/results rows of the event's image and to numpy's ROI sums of that image; an
ophyd-async fly scan declares the file's results datasets as StreamResources."""

import math
from contextlib import contextmanager

import bluesky.plan_stubs as bps
import h5py
import matplotlib
import numpy as np
import pytest
from bluesky.plans import count
from conftest import RunningDaq, jungfrau_config
from ophyd_async.core import StaticPathProvider, TriggerInfo, UUIDFilenameProvider
from ophyd_async.plan_stubs import ensure_connected
from test_ophyd_statistics import table  # noqa: F401 - the BestEffortCallback fixture

from ophyd_stddaq import StdDaq, StdDaqDetector
from ophyd_stddaq._results import ResultKeys

matplotlib.use("Agg")
ROI = [100, 50, 400, 300]
RESULTS = {"rois": {"roi0": ROI}, "radial_profile": {"bins": 40, "unit": "2theta"},
           "spots": {"threshold": 30, "min_pixels": 2}, "max_delay_s": None}  # fmt: skip
"""Every image gets its results, however loaded the test machine (docs/results.rst, Images first)."""


@pytest.fixture
def daq1(tmp_path):
    """A 1-module Jungfrau with results and a beamline distance in its config, sending photon-like images."""
    daq = RunningDaq(tmp_path, jungfrau_config(1) | {"results": RESULTS, "nexus": {"detector_distance": 60.0}})
    with running(daq.start()) as started, sending(started.simulator(content="photons", first_frame=1)):
        yield started


@contextmanager
def running(daq: RunningDaq):
    try:
        yield daq
    finally:
        daq.stop()


@contextmanager
def sending(detector):
    detector.start()
    try:
        yield detector
    finally:
        detector.stop()


def file_results(path: str, indices: list[int]) -> tuple[list[float], np.ndarray, list[int], list[float]]:
    """The file's ROI sums, profile rows and spot counts at ``indices``, and numpy's ROI sums of those images."""
    with h5py.File(path, "r") as f:
        results = f["entry/results"]
        rois = [float(v) for v in results["roi_sums/roi0"][indices]]
        profiles = results["radial_profile/intensity"][indices]
        spots = [int(v) for v in results["spot_count/spot_count"][indices]]
        images = f["entry/data/data"][indices]
        mask = f["entry/instrument/detector/pixel_mask"][()] != 0
    x0, y0, x1, y1 = ROI
    inside = np.zeros(mask.shape, bool)
    inside[y0:y1, x0:x1] = True
    return rois, profiles, spots, [float(i[inside & ~mask & (i != 0xFFFF)].sum()) for i in images]


@pytest.mark.usefixtures("table")
@pytest.mark.parametrize("kind", ["ophyd", "ophyd-async"])
def test_count_events_carry_their_results(daq1, RE, documents, capsys, kind):
    if kind == "ophyd":
        det, sep = StdDaq(daq1.url, name="daq", directory=str(daq1.data_root), wait_timeout=60), "_"
    else:
        det, sep = StdDaqDetector(daq1.url, StaticPathProvider(UUIDFilenameProvider(), daq1.data_root), name="daq"), "-"
        RE(ensure_connected(det))
    RE(count([det], num=3))
    descriptor = next(d for n, d in documents if n == "descriptor")
    assert f"daq{sep}roi0_sum" in descriptor["hints"]["daq"]["fields"]
    assert descriptor["data_keys"][f"daq{sep}radial_profile"]["shape"] == [40]
    events = [d for n, d in documents if n == "event"]
    rois, profiles, spots, numpy_rois = file_results(det.last_output_file, [0, 1, 2])
    assert [e["data"][f"daq{sep}roi0_sum"] for e in events] == rois == numpy_rois
    assert [e["data"][f"daq{sep}spot_count"] for e in events] == spots
    for event, row in zip(events, profiles, strict=True):
        assert np.array_equal(np.asarray(event["data"][f"daq{sep}radial_profile"], float), row, equal_nan=True)
    assert len(set(rois)) > 1, "the images differ"
    assert f"daq{sep}roi0_sum" in capsys.readouterr().out  # a column of the table


def test_ophyd_async_fly_scan_declares_the_results_datasets(daq1, RE, documents):
    det = StdDaqDetector(daq1.url, StaticPathProvider(UUIDFilenameProvider(), daq1.data_root), name="fdaq")
    RE(ensure_connected(det))

    def fly():
        yield from bps.open_run()
        yield from bps.prepare(det, TriggerInfo(number_of_events=5), wait=True)
        yield from bps.declare_stream(det, name="primary", collect=True)
        yield from bps.kickoff(det, wait=True)
        yield from bps.collect_while_completing([det], [det], flush_period=0.2)
        yield from bps.close_run()

    RE(fly())
    resources = {d["data_key"]: d for n, d in documents if n == "stream_resource"}
    assert resources["fdaq-roi0_sum"]["parameters"]["dataset"] == "/entry/results/roi_sums/roi0"
    assert resources["fdaq-radial_profile"]["parameters"]["dataset"] == "/entry/results/radial_profile/intensity"
    assert resources["fdaq-spot_count"]["parameters"]["dataset"] == "/entry/results/spot_count/spot_count"
    with h5py.File(det.last_output_file, "r") as f:
        results = f["entry/results"]
        for key, resource in resources.items():
            if key.startswith("fdaq-") and key != "fdaq":
                dataset = f[resource["parameters"]["dataset"]]
                assert dataset.shape[0] == 5 and dataset.chunks == tuple(resource["parameters"]["chunk_shape"])
        assert results["radial_profile/two_theta"].attrs["units"] == "deg"


def test_values_of_another_image_or_none_reported_are_nan():
    keys = ResultKeys("d", RESULTS)
    reported = {"stats": {"last_image": {"index": 2, "results": {
        "roi_sums": {"roi0": 5.0}, "radial_profile": [1.0, None] + [2.0] * 38, "spot_count": 3}}}}  # fmt: skip
    values = keys.values(reported, 2)
    assert values["d-roi0_sum"] == 5.0 and values["d-spot_count"] == 3 and math.isnan(values["d-radial_profile"][1])
    for acquisition, index in ((reported, 1), (None, 0), ({"stats": {}}, 2)):
        values = keys.values(acquisition, index)
        assert math.isnan(values["d-roi0_sum"]) and values["d-spot_count"] == -1
        assert np.isnan(values["d-radial_profile"]).all()
    assert not ResultKeys("d", None) and not ResultKeys("d", {})
