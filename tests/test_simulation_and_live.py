"""/simulation/* drives the built-in simulated detector; /daq/live streams a decodable preview."""

import io

import h5py
import numpy as np
import requests
from conftest import wait_for
from expected import expected_image
from PIL import Image


def api(daq, path, **body):
    """GET /simulation/status; POST (JSON body) the state changes /simulation/start and /simulation/stop."""
    if path.endswith("/status"):
        answer = requests.get(daq.url + path, timeout=10)
    else:
        answer = requests.post(daq.url + path, json=body, timeout=10)
    assert answer.status_code == 200
    return answer.json()


def test_built_in_simulator_feeds_an_acquisition(daq):
    assert api(daq, "/simulation/status")["simulator"]["state"] == "STOPPED"
    started = api(daq, "/simulation/start", rate_hz=100)
    assert started["status"] == "ok", started
    assert started["simulator"]["state"] == "RUNNING"
    again = api(daq, "/simulation/start")
    assert again["status"] == "error" and "running already" in again["message"]

    output = daq.data_root / "sim.h5"
    status = daq.client.start_writer_sync({"output_file": str(output), "n_images": 10})
    assert status["acquisition"]["message"] == "Completed."
    with h5py.File(output, "r") as f:
        frame = int(f["entry/data/image_id"][3])
        assert np.array_equal(f["entry/data/data"][3], expected_image(daq.config, frame))

    assert api(daq, "/simulation/status")["simulator"]["frames_sent"] >= 10
    stopped = api(daq, "/simulation/stop")["simulator"]
    assert stopped["state"] == "STOPPED"
    sent = stopped["frames_sent"]
    wait_for(lambda: daq.client.get_stats()["detector"]["images_per_second"] == 0, timeout=5)
    assert api(daq, "/simulation/status")["simulator"]["frames_sent"] == sent


def test_frame_numbers_continue_across_simulator_runs(daq):
    first = api(daq, "/simulation/start", rate_hz=200, n_images=5)["simulator"]
    wait_for(lambda: api(daq, "/simulation/status")["simulator"]["state"] == "STOPPED", timeout=10)
    assert first["n_images"] == 5
    daq.client.start_writer_async({"output_file": str(daq.data_root / "second.h5"), "n_images": 5})
    api(daq, "/simulation/start", rate_hz=200, n_images=5)
    final = wait_for(lambda: (s := daq.client.get_status())["state"] == "READY" and s, timeout=10)
    assert final["acquisition"]["message"] == "Completed."
    with h5py.File(daq.data_root / "second.h5", "r") as f:
        assert list(f["entry/data/image_id"][:]) == [6, 7, 8, 9, 10]


def test_simulator_rejects_bad_parameters(daq):
    answer = api(daq, "/simulation/start", rate_hz="fast")
    assert answer["status"] == "error" and "rate_hz" in answer["message"]
    answer = api(daq, "/simulation/start", rate_hz=-5)
    assert answer["status"] == "error"
    assert api(daq, "/simulation/status")["simulator"]["state"] == "STOPPED"


def test_get_never_starts_the_simulator(daq):
    answer = requests.get(daq.url + "/simulation/start", params={"rate_hz": 10}, timeout=10)
    assert answer.status_code == 405 and answer.json()["status"] == "error"
    assert api(daq, "/simulation/status")["simulator"] == {
        "state": "STOPPED", "rate_hz": None, "n_images": None, "frames_sent": 0, "error": None, "content": None,
        "frame_period": None, "exposure_time": None,
    }  # fmt: skip


def test_settings_set_the_frame_period_of_a_running_simulator(daq):
    for body in ({"frame_period": 0}, {"frame_period": "fast"}, {"exposure_time": -1}, {"period": 0.1},
                 {"frame_period": 0.01, "exposure_time": 0.02}):  # fmt: skip
        answer = requests.post(daq.url + "/simulation/settings", json=body, timeout=10).json()
        assert answer["status"] == "error", (body, answer)
    assert api(daq, "/simulation/status")["simulator"]["frame_period"] is None
    assert api(daq, "/simulation/start", rate_hz=10)["status"] == "ok"
    try:
        answer = requests.post(daq.url + "/simulation/settings", json={"frame_period": 0.005, "exposure_time": 0.004},
                               timeout=10).json()  # fmt: skip
        assert answer["status"] == "ok", answer
        status = answer["simulator"]
        assert (status["state"], status["rate_hz"], status["exposure_time"]) == ("RUNNING", 200, 0.004)
        sent = api(daq, "/simulation/status")["simulator"]["frames_sent"]
        wait_for(lambda: api(daq, "/simulation/status")["simulator"]["frames_sent"] >= sent + 100, timeout=20)
    finally:
        requests.post(daq.url + "/simulation/stop", timeout=10)


def read_mjpeg(response, n):
    """Split a multipart/x-mixed-replace stream into (headers, jpeg bytes) parts."""
    boundary = response.headers["Content-Type"].split("boundary=")[1].encode()
    body = response.content
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        head, _, rest = chunk.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().strip().splitlines())
        parts.append((headers, rest[: int(headers["Content-Length"])]))
    assert len(parts) == n
    return parts


def test_live_stream_decodes_to_the_latest_images(daq):
    api(daq, "/simulation/start", rate_hz=50)
    try:
        wait_for(lambda: daq.client.get_stats()["detector"]["images_per_second"] > 0, timeout=5)
        response = requests.get(daq.url + "/daq/live", params={"n_frames": 3}, timeout=30)
    finally:
        api(daq, "/simulation/stop")
    assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
    parts = read_mjpeg(response, 3)
    frames = [int(headers["X-Frame-Number"]) for headers, _ in parts]
    assert frames == sorted(set(frames)), "each picture shows a newer image"
    for headers, jpeg in parts:
        picture = Image.open(io.BytesIO(jpeg))
        assert picture.format == "JPEG"
        assert picture.size == (512, 512)  # 1024 x 1024 shown at half size
        pixels = np.asarray(picture, dtype=np.float32)
        # the simulator's ramp runs along each row: brightness increases left to right in each module row
        expected = expected_image(daq.config, int(headers["X-Frame-Number"]))[::2, ::2].astype(np.float32)
        assert np.corrcoef(pixels.ravel(), expected.ravel())[0, 1] > 0.5


def test_the_preview_keeps_a_plain_copy_and_scales_only_when_asked():
    from daq_server.acquire.live_preview import LivePreview
    from daq_server.receive.image_source import ReceivedImage

    preview = LivePreview(max_rate_hz=1000, max_size=64)
    image = np.arange(256 * 128, dtype=np.uint16).reshape(256, 128)
    preview.offer(ReceivedImage(0, 42, 0, 0, 0.0, image))
    frame, kept = preview.latest()
    assert frame == 42 and kept.dtype == np.uint16  # kept as it came: no scaling was done for nobody
    assert np.array_equal(kept, image[::4, ::4])
    first = preview.wait_jpeg(after=None, timeout=1.0)
    assert first[0] == 42 and preview.wait_jpeg(after=None, timeout=1.0)[1] is first[1]  # encoded once
    assert np.asarray(Image.open(io.BytesIO(first[1]))).shape == (64, 32)
