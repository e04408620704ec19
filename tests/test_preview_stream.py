"""The preview stream of the real server (``--preview-address``, ``--preview-rate``): a ZeroMQ SUB socket gets
PSI ``array-1.0`` messages (JSON header, raw image) at no more than the rate asked for, each image the one the
simulator sent for its frame; the page's image is the same preview."""

import json
import time

import numpy as np
import requests
import zmq
from conftest import RunningDaq, free_tcp_port, jungfrau_config
from expected import expected_image

RATE_HZ = 2.0


def receive_previews(socket: zmq.Socket, at_least: int, quiet_s: float = 2.0, timeout_s: float = 60.0) -> list:
    """(header, raw bytes, unix time received) until ``at_least`` came and then nothing for ``quiet_s``."""
    received, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not socket.poll(int(quiet_s * 1000)):
            if len(received) >= at_least:
                break
            continue
        header, data = socket.recv_multipart()
        received.append((json.loads(header), data, time.time()))
    return received


def test_preview_stream_in_array10_form_at_the_rate_and_the_page_shows_it(tmp_path):
    address = f"tcp://127.0.0.1:{free_tcp_port()}"
    args = ["--preview-address", address, "--preview-rate", str(RATE_HZ)]
    daq = RunningDaq(tmp_path, jungfrau_config(), extra_args=args).start()
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(address)
    try:
        time.sleep(0.3)  # the subscription reaches the server
        detector = daq.simulator(rate_hz=100)
        detector.start()
        try:
            previews = receive_previews(socket, at_least=4, quiet_s=0.1)
        finally:
            detector.stop()
        previews += receive_previews(socket, at_least=0)  # the last ones, until the server is quiet
        assert len(previews) >= 4
        height, width = daq.config["image_pixel_height"], daq.config["image_pixel_width"]
        frames = []
        for header, data, _ in previews:
            assert header["htype"] == "array-1.0" and header["type"] == "uint16" and header["shape"] == [height, width]
            image = np.frombuffer(data, dtype="<u2").reshape(header["shape"])
            assert np.array_equal(image, expected_image(daq.config, header["frame"])), "not the frame's image"
            frames.append(header["frame"])
        assert frames == sorted(set(frames)), "one message per kept image, in order"
        kept = [header["preview_time"] for header, _, _ in previews]
        assert min(np.diff(kept)) >= 0.99 / RATE_HZ, "more previews than the rate allows"

        # the page shows the last preview: same frame, and its colour scale from that image (strided as the page does)
        response = requests.get(daq.url + "/daq/live/latest.png", timeout=10)
        header, data, _ = previews[-1]
        assert response.headers["X-Frame-Number"] == str(header["frame"])
        step = header["preview_step"]
        small = np.frombuffer(data, dtype="<u2").reshape(header["shape"])[::step, ::step]
        low, high = np.percentile(small.astype(np.float64), (1, 99.9))
        assert float(response.headers["X-Scale-Min"]) == float(f"{low:g}")
        assert float(response.headers["X-Scale-Max"]) == float(f"{high:g}")
    finally:
        socket.close()
        daq.stop()


def test_a_preview_rate_out_of_range_is_refused(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "c.json"
    config.write_text(json.dumps(jungfrau_config()))
    result = subprocess.run(
        [sys.executable, "-m", "daq_server.serve.cli", "--config", str(config), "--data-root", str(tmp_path),
         "--preview-rate", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "--preview-rate must be above 0" in result.stderr
