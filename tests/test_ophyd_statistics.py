"""Image statistics in step-scan events: both devices ask the DAQ for them, each event carries the sum and the
maximum of its own image (hinted: the BestEffortCallback table shows them), checked against the HDF5 file.

The detector runs free with photon-like content (every image differs) and the devices' acquisitions are
gated: each trigger gets the next image."""

import math

import h5py
import matplotlib
import numpy as np
import pytest
from bluesky.callbacks.best_effort import BestEffortCallback
from bluesky.plans import count, scan
from conftest import RunningDaq, jungfrau_config
from ophyd.sim import SynAxis
from ophyd_async.core import StaticPathProvider, UUIDFilenameProvider
from ophyd_async.plan_stubs import ensure_connected

from ophyd_stddaq import StdDaq, StdDaqDetector
from ophyd_stddaq._statistics import statistics_of

matplotlib.use("Agg")


@pytest.fixture
def daq1(tmp_path):
    """A running server for a 1-module Jungfrau and a simulator sending photon-like images at 100 Hz."""
    running = RunningDaq(tmp_path, jungfrau_config(1)).start()
    sender = running.simulator(content="photons", first_frame=1)
    sender.start()
    yield running
    sender.stop()
    running.stop()


@pytest.fixture
def table(RE):
    """The BestEffortCallback (plots off) subscribed to the RunEngine; its table is what the test prints."""
    bec = BestEffortCallback()
    bec.disable_plots()
    RE.subscribe(bec)
    return bec


def stream_indices(documents, key: str) -> tuple[str, list[int]]:
    """(file, image index of each event) from the StreamResource/StreamDatum documents of ``key``."""
    (resource,) = [d for n, d in documents if n == "stream_resource" and d["data_key"] == key]
    datums = [d for n, d in documents if n == "stream_datum" and d["stream_resource"] == resource["uid"]]
    indices = [i for d in datums for i in range(d["indices"]["start"], d["indices"]["stop"])]
    return resource["uri"].removeprefix("file://localhost"), indices


def file_statistics(path: str, indices: list[int]) -> tuple[list[int], list[int]]:
    """numpy's sum and max of the file's images at ``indices`` (no packet is lost on loopback)."""
    with h5py.File(path, "r") as f:
        images = f["entry/data/data"][indices]
        assert not f["entry/data/n_missing_packets"][:].any()
    return [int(i.sum(dtype=np.uint64)) for i in images], [int(i.max()) for i in images]


def table_columns(text: str) -> list[str]:
    header = next(line for line in text.splitlines() if line.startswith("|") and "seq_num" in line)
    return [cell.strip() for cell in header.strip("|").split("|")]


def test_ophyd_async_step_scan_events_carry_their_image_statistics(daq1, RE, documents, table, capsys):
    det = StdDaqDetector(daq1.url, StaticPathProvider(UUIDFilenameProvider(), daq1.data_root), name="daq")
    RE(ensure_connected(det))
    motor = SynAxis(name="motor")
    RE(scan([det], motor, 0, 4, 5))
    descriptor = next(d for n, d in documents if n == "descriptor")
    assert descriptor["hints"]["daq"]["fields"] == ["daq-images_written", "daq-image_sum", "daq-image_max"]
    assert descriptor["data_keys"]["daq-image_sum"]["dtype"] == "number"
    events = [d for n, d in documents if n == "event"]
    path, indices = stream_indices(documents, "daq")
    assert indices == [0, 1, 2, 3, 4]
    sums, maxima = file_statistics(path, indices)
    assert [e["data"]["daq-image_sum"] for e in events] == sums
    assert [e["data"]["daq-image_max"] for e in events] == maxima
    assert len(set(sums)) > 1, "the images differ (a few of the simulator's photon frames may repeat)"
    with h5py.File(path, "r") as f:  # the DAQ stored them beside the images
        assert list(f["entry/data/image_sum"][:]) == sums and list(f["entry/data/image_max"][:]) == maxima
    columns = table_columns(capsys.readouterr().out)
    assert {"daq-images_written", "daq-image_sum", "daq-image_max"} <= set(columns)


def test_ophyd_v1_count_events_carry_their_image_statistics(daq1, RE, documents, table, capsys):
    det = StdDaq(daq1.url, name="daq", directory=str(daq1.data_root), wait_timeout=60)
    RE(count([det], num=4))
    events = [d for n, d in documents if n == "event"]
    path, indices = stream_indices(documents, "daq_image")
    assert indices == [0, 1, 2, 3]
    sums, maxima = file_statistics(path, indices)
    assert [e["data"]["daq_image_sum"] for e in events] == sums
    assert [e["data"]["daq_image_max"] for e in events] == maxima
    assert len(set(sums)) > 1, "the images differ"
    text = capsys.readouterr().out
    columns = table_columns(text)
    assert "daq_image_sum" in columns
    rows = [line for line in text.splitlines() if line.startswith("|") and line.split("|")[1].strip().isdigit()]
    position = columns.index("daq_image_sum") + 1
    assert [float(row.split("|")[position]) for row in rows] == sums  # the table shows the values


def test_statistics_can_be_left_out(daq1, RE, documents):
    det = StdDaq(daq1.url, name="daq", directory=str(daq1.data_root), wait_timeout=60, image_statistics=False)
    adet = StdDaqDetector(daq1.url, StaticPathProvider(UUIDFilenameProvider(), daq1.data_root), name="adaq",
                          image_statistics=False)  # fmt: skip
    RE(ensure_connected(adet))
    RE(count([det], num=2))
    RE(count([adet], num=2))
    keys = {k for n, d in documents if n == "event" for k in d["data"]}
    assert keys == {"daq_images_written", "adaq-images_written"}
    for path in (det.last_output_file, adet.last_output_file):
        with h5py.File(path, "r") as f:
            assert "image_sum" not in f["entry/data"]
    assert "last_image" not in daq1.client.get_status()["acquisition"]["stats"]


def test_values_of_another_image_or_none_reported_are_nan():
    reported = {"stats": {"last_image": {"index": 4, "image_id": 9, "n_missing_packets": 0, "sum": 10, "max": 3}}}
    assert statistics_of(reported, 4) == {"image_sum": 10.0, "image_max": 3.0}
    for acquisition, index in ((reported, 3), ({"stats": {"n_write_completed": 5}}, 4), (None, 0), (reported, -1)):
        assert all(math.isnan(v) for v in statistics_of(acquisition, index).values())
