"""The runs in tiled: a real `tiled serve` stores them through the default TiledWriter and gives the images
back bit-identical; the ophyd v1 device's StreamResource documents, its count(num=N) without n_images,
the BestEffortCallback table and the databroker handler entry point."""

import importlib.metadata
import subprocess
import sys
import threading
import time
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import h5py
import numpy as np
import pytest
import requests
from bluesky.callbacks.best_effort import BestEffortCallback
from bluesky.plans import count
from bluesky_tiled_plugins import TiledWriter
from conftest import free_tcp_port, wait_for
from ophyd_async.core import StaticPathProvider, UUIDFilenameProvider
from ophyd_async.plan_stubs import ensure_connected
from tiled.client import from_uri

from ophyd_stddaq import SPEC, StdDaq, StdDaqDetector, StdDaqHDF5Handler


@pytest.fixture
def tiled(daq1, tmp_path):
    """A tiled server (catalog in a temporary folder) that may read the DAQ's data root."""
    port = free_tcp_port()
    tiled_bin = str(Path(sys.executable).parent / "tiled")
    (tmp_path / "tiled-tmp").mkdir()
    log = open(tmp_path / "tiled.log", "w")
    proc = subprocess.Popen(
        [tiled_bin, "serve", "catalog", "--temp", "--api-key", "secret", "--host", "127.0.0.1",
         "--port", str(port), "-r", str(daq1.data_root)],
        stdout=log, stderr=subprocess.STDOUT, env={"TMPDIR": str(tmp_path / "tiled-tmp"), "PATH": ""},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "tiled.log").read_text()[-2000:]
        try:
            return requests.get(url + "/api/v1/", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, timeout=60)
    yield from_uri(url, api_key="secret")
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def stored_images(client, uid: str, key: str) -> np.ndarray:
    primary = client[uid]["primary"]
    node = primary[key] if key in primary else primary["external"][key]
    return np.asarray(node.read())


def file_images(documents, key: str) -> np.ndarray:
    (resource,) = [d for n, d in documents if n == "stream_resource" and d["data_key"] == key]
    indices = [
        i
        for n, d in documents
        if n == "stream_datum" and d["stream_resource"] == resource["uid"]
        for i in range(d["indices"]["start"], d["indices"]["stop"])
    ]
    with h5py.File(resource["uri"].removeprefix("file://localhost"), "r") as f:
        return f[resource["parameters"]["dataset"]][indices]


def test_default_tiled_writer_stores_the_ophyd_async_run(daq1, tiled, RE, documents):
    det = StdDaqDetector(daq1.url, StaticPathProvider(UUIDFilenameProvider(), daq1.data_root), name="daq",
                         trigger_mode="simulator")  # fmt: skip
    RE(ensure_connected(det))
    RE.subscribe(TiledWriter(tiled))
    (uid,) = RE(count([det], num=4))
    want = file_images(documents, "daq")
    got = stored_images(tiled, uid, "daq")
    assert want.shape == (4, 512, 1024) and want.std() > 0
    assert got.dtype == want.dtype and np.array_equal(got.reshape(want.shape), want)
    frames = np.asarray(tiled[uid]["primary"]["daq-frame_number"].read()).ravel()
    assert list(frames) == det.plan.frame_numbers


def test_default_tiled_writer_stores_the_ophyd_v1_run_without_n_images(daq1, tiled, RE, documents):
    det = StdDaq(daq1.url, name="daq", directory=str(daq1.data_root), trigger_mode="simulator", wait_timeout=60)
    RE.subscribe(TiledWriter(tiled))
    (uid,) = RE(count([det], num=5))  # n_images not set: the plan's five triggers decide
    assert not [n for n, _ in documents if n in ("resource", "datum")]
    want = file_images(documents, "daq_image")
    with h5py.File(det.last_output_file, "r") as f:
        assert f["entry/data/data"].shape[0] == 5  # one image per trigger, nothing more
    got = stored_images(tiled, uid, "daq_image")
    assert np.array_equal(got.reshape(want.shape), want) and want.std() > 0
    events = [d for n, d in documents if n == "event"]
    assert [e["data"]["daq_images_written"] for e in events] == [1, 2, 3, 4, 5]


def test_best_effort_callback_shows_the_readings(daq1, RE, capsys):
    import matplotlib

    matplotlib.use("Agg")
    det = StdDaq(daq1.url, name="daq", directory=str(daq1.data_root), trigger_mode="simulator", wait_timeout=60)
    bec = BestEffortCallback()
    bec.disable_plots()
    RE.subscribe(bec)
    RE(count([det], num=3))
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("|") and "daq_images_written" in line)
    columns = [cell.strip() for cell in header.split("|")]
    assert "daq_image_sum" in columns and "daq_image_max" in columns  # hinted: the image statistics
    rows = [line.split("|") for line in table.splitlines() if line.startswith("|") and line != header]
    column = columns.index("daq_images_written")
    assert [row[column].strip() for row in rows if row[1].strip().isdigit()] == ["1", "2", "3"]


def test_databroker_handler_entry_point():
    (entry,) = [e for e in importlib.metadata.entry_points(group="databroker.handlers") if e.name == SPEC]
    assert entry.load() is StdDaqHDF5Handler


def test_tiled_reads_the_run_while_it_runs(daq1, tiled, RE):
    det = StdDaqDetector(daq1.url, StaticPathProvider(UUIDFilenameProvider(), daq1.data_root), name="daq",
                         trigger_mode="simulator")  # fmt: skip
    RE(ensure_connected(det))
    RE.subscribe(TiledWriter(tiled, batch_size=1))  # each document written to tiled at once
    seen = []

    def read_back(name, doc):  # runs after the TiledWriter got the same event: the run is still open
        if name == "event":
            run = tiled.values().last()
            images = np.asarray(run["primary"]["daq"].read())
            with h5py.File(det.last_output_file, "r", swmr=True) as f:
                live = f["entry/data/data"][: doc["seq_num"]]
            seen.append((doc["seq_num"], "stop" in run.metadata, images.shape[0], np.array_equal(images, live)))

    RE.subscribe(read_back)
    RE(count([det], num=4))
    assert seen == [(k, False, k, True) for k in range(1, 5)]


def test_v1_count_without_n_images_on_a_free_running_detector(sending, RE, documents):
    det = StdDaq(sending.url, name="daq", directory=str(sending.data_root), wait_timeout=60)
    RE(count([det], num=4))
    images = file_images(documents, "daq_image")
    assert images.shape == (4, 1024, 1024)
    with h5py.File(det.last_output_file, "r") as f:  # gated: exactly the triggered images
        assert f["entry/data/data"].shape[0] == 4 and np.all(np.diff(f["entry/data/image_id"][:]) > 0)


def test_tiled_reads_never_fail_while_the_file_holds_more_than_announced(daq1, tiled, RE, documents):
    """A free-running detector: the file gets image k+1 while tiled still knows k images (its StreamDatum is
    on the way). Every read of a viewer polling tiled meanwhile succeeds with the images announced so far
    (before, tiled failed to reshape the file's (k+1, h, w) to the announced (k, 1, h, w))."""
    answer = requests.post(daq1.url + "/simulation/start", json={"rate_hz": 20}, timeout=10).json()
    assert answer["status"] == "ok", answer
    det = StdDaqDetector(daq1.url, StaticPathProvider(UUIDFilenameProvider(), daq1.data_root), name="daq")
    RE(ensure_connected(det))
    RE.subscribe(TiledWriter(tiled, batch_size=1))
    state = {"uid": None, "done": False, "shapes": [], "errors": []}
    RE.subscribe(lambda name, doc: state.update(uid=doc["uid"]) if name == "start" else None)

    def viewer():
        node = None
        while not state["done"]:
            time.sleep(0.05)
            try:
                node = node or tiled[state["uid"]]["primary"]["daq"]
            except Exception:  # the run or its node is not there yet
                continue
            try:
                node.refresh()  # the structure as tiled knows it now
                # the images known at the refresh (a whole-array read() may meet tiled's own race: docs/tiled.rst)
                state["shapes"].append(np.asarray(node[: node.shape[0]]).shape)
                node[-1]
            except Exception as error:
                state["errors"].append(str(error).splitlines()[0])

    thread = threading.Thread(target=viewer, daemon=True)
    thread.start()
    try:
        RE(count([det], num=60))
    finally:
        state["done"] = True
        thread.join(10)
        requests.post(daq1.url + "/simulation/stop", timeout=10)
    assert state["errors"] == [] and len(state["shapes"]) >= 2  # a 3 s run: reads while the file grows
    assert all(shape[1:] == (512, 1024) and 1 <= shape[0] <= 60 for shape in state["shapes"])
    assert np.array_equal(stored_images(tiled, state["uid"], "daq"), file_images(documents, "daq"))


def test_v1_fly_scan_declaring_its_stream_is_stored_by_the_default_tiled_writer(daq1, tiled, RE, documents):
    det = StdDaq(daq1.url, name="daq", directory=str(daq1.data_root), trigger_mode="simulator", wait_timeout=60)
    det.n_images.put(6)
    RE.subscribe(TiledWriter(tiled))

    @bpp.stage_decorator([det])  # staged: the device follows the RunEngine's runs from here
    def fly():
        yield from bps.open_run()
        yield from bps.declare_stream(det, name="primary", collect=True)
        yield from bps.kickoff(det, wait=True)
        yield from bps.complete(det, wait=True)
        yield from bps.collect(det, name="primary")
        yield from bps.close_run()

    (uid,) = RE(fly())
    assert not [n for n, _ in documents if n in ("resource", "datum")]
    images = file_images(documents, "daq_image")
    assert images.shape == (6, 512, 1024)
    assert np.array_equal(stored_images(tiled, uid, "daq_image"), images)
    start = next(d for n, d in documents if n == "start")
    assert Path(det.last_output_file).name == f"{start['scan_id']}_{start['uid'][:8]}_daq.h5"
