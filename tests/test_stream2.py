"""The Stream2 image stream of the real server (``--stream-address``): every image written leaves as a DECTRIS
Stream2 CBOR message, decoded here with cbor2 and DECTRIS's own decompressor (``dectris-compression``) and
compared with the file bit for bit; consumers share the images round-robin; no consumer costs the stream its
images (counted in the status, the log and the file), never the file."""

import json
import time

import cbor2
import h5py
import hdf5plugin  # noqa: F401 - the bitshuffle filter for reading
import numpy as np
import pytest
import zmq
from conftest import RunningDaq, free_tcp_port, free_udp_ports, jungfrau_config
from dectris.compression import decompress

from sim import configs

TYPED = {64: "u1", 69: "<u2", 70: "<u4", 71: "<u8", 72: "i1", 77: "<i2", 78: "<i4", 79: "<i8", 85: "<f4", 86: "<f8"}


def decode(raw: bytes) -> dict:
    """A Stream2 message as a consumer decodes it: tag 56500 through dectris-compression, RFC 8746 typed
    arrays, tag 40 multi-dimensional arrays."""

    def hook(first, second):  # cbor2 6 calls hook(tag, immutable), cbor2 5 hook(decoder, tag)
        tag = first if isinstance(first, cbor2.CBORTag) else second
        if tag.tag == 56500:
            algorithm, elem_size, data = tag.value
            assert algorithm == "bslz4"
            return decompress(data, algorithm, elem_size=elem_size)
        if tag.tag in TYPED:
            return np.frombuffer(tag.value, dtype=TYPED[tag.tag])
        if tag.tag == 40:
            dims, array = tag.value
            return np.asarray(array).reshape(dims)
        return tag

    return cbor2.loads(raw, tag_hook=hook)


def pull_socket(address: str) -> zmq.Socket:
    socket = zmq.Context.instance().socket(zmq.PULL)
    socket.setsockopt(zmq.RCVTIMEO, 30000)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(address)
    return socket


def stream_daq(tmp_path, config: dict, *args: str) -> tuple[RunningDaq, str]:
    address = f"tcp://127.0.0.1:{free_tcp_port()}"
    return RunningDaq(tmp_path, config, extra_args=["--stream-address", address, *args]).start(), address


def receive_series(socket: zmq.Socket, skip_before: int = 0) -> list[dict]:
    """Messages from a start up to its end; the ``end`` of series before ``skip_before`` (waiting for a
    consumer when this one connected) is passed over."""
    messages = []
    while not messages or messages[-1]["type"] != "end":
        message = decode(socket.recv())
        if not messages and message["type"] == "end" and message["series_id"] < skip_before:
            continue
        messages.append(message)
    return messages


def assert_stream_equals_file(messages: list[dict], output, n: int) -> None:
    types = [m["type"] for m in messages]
    assert types[0] == "start" and types[-1] == "end" and types.count("image") == n, types
    start, end = messages[0], messages[-1]
    with h5py.File(output, "r") as f:
        images = f["entry/data/data"]
        assert images.shape[0] == n
        assert (start["image_size_y"], start["image_size_x"]) == images.shape[1:]
        assert start["number_of_images"] == n and start["image_dtype"] == str(images.dtype)
        frames = f["entry/data/image_id"][:]
        seen = set()
        for message in messages[1:-1]:
            assert message["series_id"] == start["series_id"] == end["series_id"]
            assert message["series_unique_id"] == start["series_unique_id"]
            k = message["image_id"]
            array = message["data"]["default"]
            assert array.dtype == images.dtype and array.shape == images.shape[1:]
            assert array.tobytes() == images[k].tobytes(), f"image {k} differs from the file (bit for bit; NaN too)"
            assert message["frame_number"] == frames[k]
            numerator, denominator = message["start_time"]
            assert denominator == 1_000_000 and numerator >= 0
            seen.add(k)
        assert seen == set(range(n))
        assert f["entry"].attrs["stream_images_sent"] == n and f["entry"].attrs["stream_images_dropped"] == 0
    assert end["images_dropped"] == 0 and end["images_sent"] == n


@pytest.mark.parametrize("compression", ["none", "bitshuffle-lz4"])
def test_every_eiger_photon_image_on_the_stream_equals_the_file(tmp_path, compression):
    config = configs.eiger_config(16, free_udp_ports(4), "EG-stream")
    daq, address = stream_daq(tmp_path, config, "--compression", compression)
    try:
        socket = pull_socket(address)
        time.sleep(0.3)  # the consumer connects
        status, output = daq.acquire("eiger.h5", 30, {"incident_wavelength": 1.0, "detector_distance": 120.0},
                                     content="photons", rate_hz=50)  # fmt: skip
        messages = receive_series(socket)
        assert_stream_equals_file(messages, output, 30)
        start = messages[0]
        assert start["compression"] == ("bslz4" if compression != "none" else "none")
        assert start["incident_wavelength"] == 1.0 and start["detector_distance"] == pytest.approx(0.12)
        assert abs(start["incident_energy"] - 12398.419843320026) < 1e-6
        assert start["user_data"]["output_file"] == str(output)
        acquisition = status["acquisition"]
        assert acquisition["stream_dropped"] == 0 and acquisition["stream"]["images_sent"] == 30
        socket.close()
    finally:
        daq.stop()


@pytest.mark.parametrize("processes", ["0", "2"])
def test_jungfrau_compressed_written_in_the_server_or_by_two_writer_processes(tmp_path, processes):
    args = ("--compression", "bitshuffle-lz4", "--writer-processes", processes)
    daq, address = stream_daq(tmp_path, jungfrau_config(), *args)
    try:
        socket = pull_socket(address)
        time.sleep(0.3)
        status, output = daq.acquire("jf.h5", 20)
        assert_stream_equals_file(receive_series(socket), output, 20)
        if processes == "2":  # each part file records its own images, the master file all of them
            for i in range(2):
                with h5py.File(output.with_name(f"jf.part{i}.h5"), "r") as f:
                    assert f["entry"].attrs["stream_images_sent"] == 10
        socket.close()
    finally:
        daq.stop()


def test_two_consumers_share_the_images_round_robin(tmp_path):
    daq, address = stream_daq(tmp_path, jungfrau_config())
    try:
        sockets = [pull_socket(address), pull_socket(address)]
        time.sleep(0.3)
        n = 40
        status, output = daq.acquire("shared.h5", n)
        assert status["acquisition"]["stream_dropped"] == 0
        got: list[list[dict]] = [[], []]
        poller = zmq.Poller()
        for s in sockets:
            poller.register(s, zmq.POLLIN)
        deadline = time.monotonic() + 30
        while sum(len(g) for g in got) < n + 2 and time.monotonic() < deadline:
            for s, _ in poller.poll(1000):
                got[sockets.index(s)].append(decode(s.recv()))
        images = [[m for m in g if m["type"] == "image"] for g in got]
        assert all(images), "each consumer gets some of the images"
        ids = sorted(m["image_id"] for g in images for m in g)
        assert ids == list(range(n)), "together they get every image, once"
        assert sorted(m["type"] for g in got for m in g if m["type"] != "image") == ["end", "start"]
        with h5py.File(output, "r") as f:
            for m in (m for g in images for m in g):
                assert np.array_equal(m["data"]["default"], f["entry/data/data"][m["image_id"]])
        for s in sockets:
            s.close()
    finally:
        daq.stop()


def test_no_consumer_drops_the_stream_never_the_file(tmp_path):
    daq, address = stream_daq(tmp_path, jungfrau_config())
    try:
        n = 30
        status, output = daq.acquire("alone.h5", n)
        acquisition = status["acquisition"]
        assert acquisition["state"] == "FINISHED" and acquisition["stats"]["n_write_completed"] == n
        assert acquisition["stream_dropped"] == n and acquisition["stream"]["start_sent"] is False
        logged = daq.client.get_logs(1)[0] if hasattr(daq.client, "get_logs") else None
        records = [json.loads(line) for line in (daq.workdir / "config.json.state" / "acquisitions.jsonl").open()]
        assert records[-1]["stream_dropped"] == n
        if logged is not None:
            assert logged.get("stream_dropped") == n
        with h5py.File(output, "r") as f:
            assert f["entry/data/data"].shape[0] == n
            assert f["entry"].attrs["stream_images_dropped"] == n and f["entry"].attrs["stream_images_sent"] == 0
        # a consumer that comes later gets the next acquisition whole: nothing stale of the one before
        socket = pull_socket(address)
        time.sleep(0.3)
        status, output = daq.acquire("later.h5", 10)
        series = status["acquisition"]["stream"]["series_id"]
        assert_stream_equals_file(receive_series(socket, skip_before=series), output, 10)
        socket.close()
    finally:
        daq.stop()


def test_a_stream_address_that_cannot_be_bound_is_refused(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "c.json"
    config.write_text(json.dumps(jungfrau_config()))
    (tmp_path / "data").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "daq_server.serve.cli", "--config", str(config), "--data-root", str(tmp_path / "data"),
         "--port", str(free_tcp_port()), "--stream-address", "tcp://no-such-host.invalid:1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and "cannot bind the stream" in result.stderr


@pytest.mark.parametrize(("output", "compression"), [("photons", "bitshuffle-lz4"), ("keV", "none")])
def test_jungfrau_converted_images_on_the_stream_equal_the_file(tmp_path, output, compression):
    """A pedestal acquisition (not streamed), then converted images: uint16 photons (compressed) or float32 keV."""
    from sim.jungfrau import PEDESTAL_CYCLE, write_gain_maps

    config = jungfrau_config(2)
    write_gain_maps(tmp_path / "gains.h5", config, seed=3)
    config |= {"jungfrau_gain_maps": str(tmp_path / "gains.h5"), "jungfrau_conversion": output}
    (tmp_path / "server").mkdir()
    daq, address = stream_daq(tmp_path / "server", config, "--compression", compression)
    try:
        socket = pull_socket(address)
        time.sleep(0.3)
        status, _ = daq.acquire("pedestal.h5", PEDESTAL_CYCLE, {"pedestal": True}, rate_hz=200,
                                content="jungfrau-pedestal", seed=3)  # fmt: skip
        assert status["acquisition"]["state"] == "FINISHED" and "stream" not in status["acquisition"]
        request = {"incident_wavelength": 12.398419843320026 / 12.4}
        status, output_file = daq.acquire("converted.h5", 8, request, content="jungfrau-raw", seed=3, rate_hz=50)
        messages = receive_series(socket)
        assert_stream_equals_file(messages, output_file, 8)
        assert messages[0]["image_dtype"] == ("uint16" if output == "photons" else "float32")
        socket.close()
    finally:
        daq.stop()


def test_image_messages_carry_the_per_image_results_the_file_holds(tmp_path):
    config = configs.eiger_config(16, free_udp_ports(4), "EG-results")
    config["results"] = {"radial_profile": {"bins": 50, "unit": "q"}, "rois": {"roi0": [10, 20, 200, 220]},
                         "spots": {"threshold": 5, "min_pixels": 2}, "max_delay_s": None}  # fmt: skip
    daq, address = stream_daq(tmp_path, config, "--compression", "bitshuffle-lz4")
    try:
        socket = pull_socket(address)
        time.sleep(0.3)  # the consumer connects
        request = {"incident_wavelength": 1.0, "detector_distance": 120.0, "beam_center_x": 250.0,
                   "beam_center_y": 250.0}  # fmt: skip
        status, output = daq.acquire("results.h5", 8, request, content="photons", rate_hz=50)
        assert status["acquisition"]["state"] == "FINISHED", status
        messages = receive_series(socket)
        with h5py.File(output, "r") as f:
            profile = f["entry/results/radial_profile/intensity"][()]
            roi = f["entry/results/roi_sums/roi0"][()]
            spots = f["entry/results/spot_count/spot_count"][()]
            for message in messages[1:-1]:
                k, results = message["image_id"], message["results"]
                assert np.array_equal(results["radial_profile"], profile[k], equal_nan=True)
                assert results["roi_sums"]["roi0"] == roi[k]
                assert results["spot_count"] == spots[k]
        assert len(messages) == 10
        socket.close()
    finally:
        daq.stop()


def test_images_nobody_can_take_are_dropped_before_they_are_built(tmp_path):
    """The publisher's gate: with no consumer a writer drops its images itself (the publisher sees none of
    them, the live count has them); once a consumer connects, the gate opens and every image reaches it."""
    from daq_server.stream.stream2_feed import Stream2Feed, StreamSpec
    from daq_server.stream.stream2_publisher import Stream2Publisher

    publisher = Stream2Publisher(f"tcp://127.0.0.1:{free_tcp_port()}")
    try:
        spec = StreamSpec(publisher.feed_address, 7, "series-7", time.time(), 0.0, publisher.gate.path)
        feed = Stream2Feed(spec, (4, 6), "<u2")
        image = np.arange(24, dtype="<u2").reshape(4, 6)
        time.sleep(0.1)
        assert not publisher.gate.open
        for frame in range(50):
            feed.send(frame, time.time(), image, compressed=False)
        assert feed.dropped == 50 and publisher.gate.dropped(7) == 50
        time.sleep(0.2)
        assert publisher.counts(7).forwarded == 0 and publisher.counts(7).dropped == {}
        assert feed.finish() == {"stream_images_sent": 0, "stream_images_dropped": 50}

        consumer = pull_socket(publisher.address)
        deadline = time.monotonic() + 10
        while not publisher.gate.open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert publisher.gate.open, "a connected consumer opens the gate"
        spec = StreamSpec(publisher.feed_address, 8, "series-8", time.time(), 0.0, publisher.gate.path)
        feed = Stream2Feed(spec, (4, 6), "<u2")
        for frame in range(10):
            feed.send(frame, time.time(), image, compressed=False)
        received = [decode(consumer.recv()) for _ in range(10)]
        assert [m["image_id"] for m in received] == list(range(10))
        assert all(np.array_equal(m["data"]["default"], image) for m in received)
        assert feed.finish() == {"stream_images_sent": 10, "stream_images_dropped": 0}
        consumer.close()
    finally:
        publisher.close()
