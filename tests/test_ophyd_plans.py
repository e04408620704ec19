"""Real bluesky plans with a RunEngine against the real server + simulated detector.

Documents are validated against the event-model schemas and the images are loaded back through
them with event-model's Filler and our handler (no file name known to the reader)."""

from __future__ import annotations

import h5py
import numpy as np
from bluesky import plan_stubs as bps
from bluesky import plans as bp
from bluesky import preprocessors as bpp
from bluesky.utils import ProgressBarManager
from conftest import make_daq
from event_model import DocumentNames, Filler, schema_validators
from expected import expected_image

from ophyd_stddaq import SPEC, StdDaqHDF5Handler


def validate(documents):
    for name, doc in documents:
        schema_validators[DocumentNames[name]].validate(doc)


def filled(documents) -> list[tuple[str, dict]]:
    """The documents as a reader sees them after event-model's Filler dereferenced the external data."""
    with Filler({SPEC: StdDaqHDF5Handler}, inplace=False) as filler:
        return [filler(name, doc) for name, doc in documents]


def images_of(filled_documents, key="daq_image") -> list[np.ndarray]:
    images = []
    for name, doc in filled_documents:
        if name == "event":
            images.append(doc["data"][key])
        elif name == "event_page":
            images.extend(doc["data"][key])
    return images


def names(documents) -> list[str]:
    return [name for name, _ in documents]


def the(documents, name) -> dict:
    (doc,) = [doc for n, doc in documents if n == name]
    return doc


def test_count_writes_one_file_and_the_events_load_its_images(sending, RE, documents):
    daq = sending
    det = make_daq(daq)
    det.n_images.put(5)

    RE(bp.count([det], num=5))

    validate(documents)
    assert names(documents)[:2] == ["start", "descriptor"] and names(documents)[-1] == "stop"
    assert the(documents, "stop")["exit_status"] == "success"
    data_key = the(documents, "descriptor")["data_keys"]["daq_image"]
    assert data_key["external"] == "FILESTORE:"
    assert data_key["shape"] == [1024, 1024] and data_key["dtype_numpy"] == "<u2"
    assert the(documents, "descriptor")["configuration"]["daq"]["data"]["daq_n_images"] == 5
    resource = the(documents, "resource")
    assert resource["spec"] == SPEC and resource["run_start"] == the(documents, "start")["uid"]
    output = f"{resource['root']}/{resource['resource_path']}"
    assert output.startswith(str(daq.data_root)) and det.last_output_file == output
    datums = [doc for name, doc in documents if name == "datum"]
    assert [d["datum_kwargs"]["index"] for d in datums] == [0, 1, 2, 3, 4]
    events = [doc for name, doc in documents if name == "event"]
    assert [e["data"]["daq_image"] for e in events] == [d["datum_id"] for d in datums]

    status = daq.client.get_status()
    assert status["state"] == "READY"
    assert status["acquisition"]["info"]["output_file"] == output
    assert status["acquisition"]["message"] == "Completed."

    images = images_of(filled(documents))
    with h5py.File(output, "r") as f:
        assert f["entry/data/data"].shape == (5, 1024, 1024)
        frames = f["entry/data/image_id"][:]
        for i, image in enumerate(images):
            assert np.array_equal(image, f["entry/data/data"][i])
            assert np.array_equal(image, expected_image(daq.config, int(frames[i]))), f"event {i}"
    assert len(images) == 5


def test_two_runs_get_two_new_files(sending, RE, documents):
    det = make_daq(sending)
    det.n_images.put(2)
    RE(bp.count([det], num=2))
    RE(bp.count([det], num=2))
    resources = [doc for name, doc in documents if name == "resource"]
    assert len({r["resource_path"] for r in resources}) == 2
    assert len(images_of(filled(documents))) == 4


def test_fewer_points_than_n_images_stops_the_writer_at_unstage(sending, RE, documents):
    daq = sending
    det = make_daq(daq)
    det.n_images.put(100_000)  # far more than the plan takes: unstage must end the acquisition

    RE(bp.count([det], num=3))

    status = daq.client.get_status()
    assert status["state"] == "READY"
    assert status["acquisition"]["message"] == "Interrupted."
    assert status["acquisition"]["info"]["output_file"] == det.last_output_file
    images = images_of(filled(documents))
    assert len(images) == 3
    with h5py.File(det.last_output_file, "r") as f:
        assert f["entry/data/data"].shape[0] >= 3  # the file holds what was written until the stop
        for i, image in enumerate(images):
            assert np.array_equal(image, f["entry/data/data"][i])


def test_fly_scan_collects_every_image(sending, RE, documents):
    daq = sending
    det = make_daq(daq)
    det.n_images.put(20)

    RE(bpp.stage_wrapper(bp.fly([det]), [det]))

    validate(documents)
    assert the(documents, "stop")["exit_status"] == "success"
    assert the(documents, "stop")["num_events"] == {"primary": 20}
    assert the(documents, "descriptor")["name"] == "primary"
    assert len([doc for name, doc in documents if name == "datum"]) == 20
    assert daq.client.get_status()["acquisition"]["message"] == "Completed."
    images = images_of(filled(documents))
    assert len(images) == 20
    with h5py.File(det.last_output_file, "r") as f:
        assert f["entry/data/data"].shape == (20, 1024, 1024)
        assert "image_sum" not in f["entry/data"], "a fly scan at full rate asks for no image statistics"
        frames = f["entry/data/image_id"][:]
        assert np.array_equal(np.diff(frames), np.ones(19))
        for i in (0, 7, 19):
            assert np.array_equal(images[i], expected_image(daq.config, int(frames[i])))


def test_fly_scan_without_stage(sending, RE, documents):
    det = make_daq(sending)
    det.n_images.put(10)
    RE(bp.fly([det]))
    RE(bp.fly([det]))  # kickoff starts a new acquisition each time
    assert [doc["num_events"] for name, doc in documents if name == "stop"] == [{"primary": 10}] * 2
    assert len(images_of(filled(documents))) == 20
    assert sending.client.get_status()["state"] == "READY"


def test_complete_reports_progress_to_watchers(sending, RE):
    det = make_daq(sending)
    det.n_images.put(50)
    updates: list[dict] = []

    def plan():
        yield from bps.kickoff(det, wait=True)
        status = yield from bps.complete(det, wait=False, group="done")
        status.watch(lambda **kw: updates.append(kw))
        yield from bps.wait(group="done")

    RE(bpp.run_wrapper(plan()))

    currents = [u["current"] for u in updates]
    assert currents == sorted(currents), "images written only grow"
    assert currents[-1] == 50 and len(set(currents)) > 2, "several intermediate counts were reported"
    assert {u["target"] for u in updates} == {50} and {u["unit"] for u in updates} == {"images"}
    assert updates[-1]["fraction"] == 0.0 and updates[0]["fraction"] > 0.5
    assert all(u["name"] == "daq" for u in updates)


def test_bluesky_progress_bar_shows_images_written(sending, RE, capsys):
    det = make_daq(sending)
    det.n_images.put(50)  # 0.5 s at 100 Hz: longer than the progress bar's 0.2 s drawing delay
    RE.waiting_hook = ProgressBarManager()
    RE(bp.fly([det]))
    out = capsys.readouterr().out
    assert "daq" in out and "/50" in out and "images" in out
