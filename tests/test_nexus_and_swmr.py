"""The file as NeXus/NXmx (validated with nxvalidate), live SWMR reading, software triggers of the simulator."""

import json
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import requests
from conftest import nxvalidate_report
from expected import expected_image

NXMX = {
    "detector_distance": 120.5,
    "beam_center_x": 511.5,
    "beam_center_y": 500.25,
    "incident_wavelength": 1.0332,
    "sample_name": "lysozyme",
}


def text(dataset) -> str:
    value = dataset[()]
    return value.decode() if isinstance(value, bytes) else str(value)


def test_file_is_nxmx_with_a_default_chain_to_the_images(sending):
    daq = sending
    output = daq.data_root / "nx.h5"
    status = daq.client.start_writer_sync({"output_file": str(output), "n_images": 5, **NXMX})
    assert status["acquisition"]["message"] == "Completed."
    with h5py.File(output, "r") as f:
        # the @default chain, as silx follows it
        from silx.io.nxdata import get_default

        nxdata = get_default(f)
        assert nxdata is not None and nxdata.signal.name == "/entry/data/data"
        assert nxdata.signal.shape == (5, 1024, 1024) and nxdata.interpretation == "image"
        entry = f["entry"]
        assert text(entry["definition"]) == "NXmx"
        assert text(entry["start_time"]) <= text(entry["end_time"])
        assert text(entry["start_time"])[:4] == time.strftime("%Y", time.gmtime())
        detector = entry["instrument/detector"]
        assert detector.attrs["NX_class"] == "NXdetector"
        assert detector["data"].id == entry["data/data"].id  # a hard link to the images
        assert detector["distance"][()] == pytest.approx(0.1205) and detector["distance"].attrs["units"] == "m"
        assert detector["beam_center_x"][()] == 511.5 and detector["beam_center_y"][()] == 500.25
        assert detector["x_pixel_size"][()] == pytest.approx(75e-6)
        assert detector["saturation_value"][()] == 2**16 - 1
        assert entry["instrument/beam/incident_wavelength"][()] == pytest.approx(1.0332)
        assert text(entry["sample/name"]) == "lysozyme"
        # two modules, the odd one mirrored; no gap pixels in this stacked layout
        assert list(detector["module1/data_origin"][:]) == [512, 0]
        assert list(detector["module1/data_size"][:]) == [512, 1024]
        assert detector["pixel_mask"].shape == (1024, 1024) and not detector["pixel_mask"][:].any()
        # the writer's own datasets are where they always were
        frame = int(entry["data/image_id"][2])
        assert np.array_equal(entry["data/data"][2], expected_image(daq.config, frame))
        assert entry.attrs["n_images_written"] == 5

    report = nxvalidate_report(output)
    assert "Total number of errors: 0" in report, report[-2000:]


def test_values_not_given_are_said_unknown_and_the_file_still_validates(sending):
    """Valid by default: a request with no NXmx values still gives a file nxvalidate accepts, and what is not
    known says so (NaN with a note), never a made-up number; bad values are refused."""
    daq = sending
    answer = requests.post(
        daq.url + "/writer/write_async", json={"output_file": str(daq.data_root / "bad.h5"), "n_images": 2,
                                          "detector_distance": "far"}, timeout=10
    )  # fmt: skip
    assert answer.status_code < 500 and answer.json()["status"] == "error"
    assert "detector_distance" in answer.json()["message"]
    assert not (daq.data_root / "bad.h5").exists()
    output = daq.data_root / "plain.h5"
    daq.client.start_writer_sync({"output_file": str(output), "n_images": 2})
    with h5py.File(output, "r") as f:
        detector = f["entry/instrument/detector"]
        assert np.isnan(detector["distance"][()]) and "unknown" in detector["distance"].attrs["note"]
        wavelength = f["entry/instrument/beam/incident_wavelength"]
        assert np.isnan(wavelength[()]) and "unknown" in wavelength.attrs["note"]
        assert (detector["beam_center_x"][()], detector["beam_center_y"][()]) == (512.0, 512.0)
        assert "centre" in detector["beam_center_x"].attrs["note"]
        assert text(f["entry/sample/name"]) == "unknown"
    report = nxvalidate_report(output)
    assert "Total number of errors: 0" in report, report[-2000:]


READER = r"""
import json, sys, time
import h5py
path = sys.argv[1]
deadline = time.time() + 10
while True:
    try:
        f = h5py.File(path, "r", swmr=True)
        break
    except (OSError, FileNotFoundError):
        if time.time() > deadline:
            raise
        time.sleep(0.05)
seen = []
images, ids = f["entry/data/data"], f["entry/data/image_id"]
for _ in range(12):
    ids.refresh(); images.refresh()  # in this order: the images are never behind their metadata
    n = ids.shape[0]
    seen.append([images.shape[0], n, int(images[n - 1].max()) if n else 0, int(ids[n - 1]) if n else 0])
    time.sleep(0.4)
print(json.dumps(seen))
"""


def test_a_second_process_reads_the_file_while_it_is_written(sending):
    daq = sending
    output = daq.data_root / "live.h5"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(output)], stdout=subprocess.PIPE, text=True)
    daq.client.start_writer_async({"output_file": str(output), "n_images": 100_000})
    out, _ = reader.communicate(timeout=60)
    daq.client.stop_writer()
    seen = json.loads(out)
    counts = [n for _, n, _, _ in seen]
    assert sum(1 for a, b in zip(counts, counts[1:], strict=False) if b > a) >= 2, seen  # grows while written
    assert all(n_images >= n for n_images, n, _, _ in seen)  # images are there before their metadata
    assert all(top > 0 and frame > 0 for _, n, top, frame in seen if n), seen
    with h5py.File(output, "r") as f:  # closed: every dataset holds exactly the images written
        n = f["entry"].attrs["n_images_written"]
        assert 0 < n < 100_000 and f["entry/data/data"].shape[0] == f["entry/data/image_id"].shape[0] == n


def test_close_writes_the_receiver_counters_as_entry_attributes_with_a_reader_open(tmp_path):
    """The close writes in place, in SWMR mode: a reader holding the file open does not stop it, and sees
    the counters (only the receiver's counters are kept) and the end time once it refreshes."""
    from conftest import write_target

    from daq_server.write.hdf5_writer import Hdf5Writer
    from sim.configs import jungfrau_config

    target = write_target(tmp_path / "s.h5", 3, (512, 1024), np.uint16, jungfrau_config(1, 50000), run_id=7)
    writer = Hdf5Writer(target)
    writer.write(np.ones((512, 1024), np.uint16), 11, 0, 1.0)
    with h5py.File(tmp_path / "s.h5", "r", swmr=True) as reader:
        assert text(reader["entry/end_time"]) == ""  # not ended yet
        writer.close(summary={"packets_lost": 4, "images_incomplete": 1, "per_module": {"0": 4}})
        reader["entry/end_time"].refresh()
        assert text(reader["entry/end_time"]).startswith(time.strftime("%Y", time.gmtime()))
    with h5py.File(tmp_path / "s.h5", "r") as f:
        entry = f["entry"]
        assert entry.attrs["packets_lost"] == 4 and entry.attrs["images_incomplete"] == 1
        assert entry.attrs["packets_duplicate"] == 0 and "per_module" not in entry.attrs
        assert f["entry/data/data"].shape == (1, 512, 1024) and entry.attrs["n_images_written"] == 1


def trigger(daq, body=None):
    answer = requests.post(daq.url + "/simulation/trigger", json=body, timeout=10)
    assert answer.status_code == 200
    return answer.json()


def test_software_trigger_sends_one_frame_per_trigger(daq):
    output = daq.data_root / "triggered.h5"
    daq.client.start_writer_async({"output_file": str(output), "n_images": 4})
    sent = [trigger(daq)["simulator"]["frame_number"] for _ in range(3)]
    assert sent == [sent[0], sent[0] + 1, sent[0] + 2]
    more = trigger(daq, {"n_images": 1})["simulator"]["frame_numbers"]
    assert more == [sent[0] + 3]
    deadline = time.monotonic() + 10
    while daq.client.get_status()["state"] != "READY" and time.monotonic() < deadline:
        time.sleep(0.05)
    with h5py.File(output, "r") as f:
        assert list(f["entry/data/image_id"][:]) == [*sent, *more]
        assert np.array_equal(f["entry/data/data"][1], expected_image(daq.config, sent[1]))


@pytest.mark.parametrize("body", [{"n_images": 0}, {"n_images": "one"}, {"n_images": True}, {"rate": 3}, [1]])
def test_software_trigger_refuses_bad_bodies(daq, body):
    answer = trigger(daq, body)
    assert answer["status"] == "error" and answer["message"]
    assert requests.get(daq.url + "/simulation/status", timeout=10).json()["simulator"]["frames_sent"] == 0


def test_software_trigger_refused_while_running_free(daq):
    assert simulation(daq, "start", {"rate_hz": 50})["status"] == "ok"
    try:
        answer = trigger(daq)
        assert answer["status"] == "error" and "stop" in answer["message"]
    finally:
        simulation(daq, "stop", {})


def simulation(daq, action: str, body: dict) -> dict:
    """/simulation/start or /stop: POST with a JSON body where the server takes it, else GET with a query."""
    answer = requests.post(f"{daq.url}/simulation/{action}", json=body, timeout=10)
    if answer.status_code == 405:
        answer = requests.get(f"{daq.url}/simulation/{action}", params=body, timeout=10)
    return answer.json()


def writer_trigger(daq, body=None):
    answer = requests.post(daq.url + "/writer/trigger", json=body, timeout=10)
    assert answer.status_code == 200
    return answer.json()


def test_gated_acquisition_writes_only_the_triggered_images(sending):
    daq = sending  # a free-running detector at 100 Hz
    output = daq.data_root / "gated.h5"
    daq.client.start_writer_async({"output_file": str(output), "n_images": 1000, "gated": True})
    time.sleep(0.3)
    assert daq.client.get_status()["acquisition"]["stats"]["n_write_completed"] == 0
    opened = []
    for k in (1, 2, 3):
        opened.append(time.time())
        assert writer_trigger(daq, {"n_images": 1} if k > 1 else None)["status"] == "ok"
        deadline = time.monotonic() + 10
        while daq.client.get_status()["acquisition"]["stats"]["n_write_completed"] < k:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.1)
    assert daq.client.get_status()["acquisition"]["stats"]["n_write_completed"] == 3
    daq.client.stop_writer()
    with h5py.File(output, "r") as f:
        stamps = f["entry/data/timestamp"][:]
        assert f["entry/data/data"].shape[0] == 3
    assert all(stamps[k] >= opened[k] for k in range(3))  # each image taken after its trigger


@pytest.mark.parametrize("body", [{"n_images": 0}, {"n_images": "1"}, {"gate": 1}, [1]])
def test_writer_trigger_refuses_bad_bodies_and_ungated_acquisitions(sending, body):
    daq = sending
    assert writer_trigger(daq)["status"] == "error"  # nothing running
    daq.client.start_writer_async({"output_file": str(daq.data_root / "g.h5"), "n_images": 5, "gated": True})
    answer = writer_trigger(daq, body)
    assert answer["status"] == "error" and answer["message"]
    daq.client.stop_writer()
    answer = requests.post(
        daq.url + "/writer/write_async",
        json={"output_file": str(daq.data_root / "h.h5"), "n_images": 2, "gated": "yes"},
        timeout=10,
    ).json()
    assert answer["status"] == "error" and "gated" in answer["message"]
    daq.client.start_writer_sync({"output_file": str(daq.data_root / "ungated.h5"), "n_images": 2})
    assert "gated" in writer_trigger(daq)["message"]
