"""The C receiver under faults, fed by the simulator over real UDP (no server involved)."""

import socket
import struct
import time

import numpy as np
import pytest
from conftest import collect_images, free_udp_ports, jungfrau_config
from expected import MISSING, expected_image, missing_packets_seen, module_coordinates

from daq_server.receive.udp_receiver import Receiver, ReceiverSettings
from sim import SimulatedDetector, configs


def receive_from_simulator(config: dict, n_images: int, ring_mb: int = 16, **simulator_options) -> list[tuple]:
    """A receiver of its own, fed n_images by the simulator: the collected (frame, n_missing, image)."""
    receiver = Receiver(config, ReceiverSettings(bind_address="127.0.0.1", ring_bytes=ring_mb << 20))
    try:
        SimulatedDetector(config, n_images=n_images, **simulator_options).run()
        return collect_images(receiver, n_images)
    finally:
        receiver.close()


@pytest.fixture
def config():
    return jungfrau_config(2)


@pytest.fixture
def receiver(config):
    rx = Receiver(config, ReceiverSettings(bind_address="127.0.0.1", ring_bytes=48 << 20))
    yield rx
    rx.close()


@pytest.mark.parametrize(("loss", "burst"), [(0.03, 1), (0.004, 40)], ids=["random", "burst"])
def test_loss_reorder_and_duplicates_are_accounted_packet_by_packet(config, receiver, loss, burst):
    detector = SimulatedDetector(config, rate_hz=100, n_images=30, first_frame=7, loss=loss, loss_burst=burst,
                                 reorder=16, duplicate=0.05, seed=3)  # fmt: skip
    detector.start()
    images = collect_images(receiver, 30)
    detector.join()
    assert [frame for frame, _, _ in images] == list(range(7, 37))
    for frame, n_missing, image in images:
        assert missing_packets_seen(config, frame, image) == n_missing
    total_missing = sum(n for _, n, _ in images)
    assert total_missing == detector.counters["packets_not_sent"] > 0
    counters = receiver.counters()
    assert counters["packets_duplicate"] > 0
    assert counters["packets_lost"] == total_missing
    assert counters["images_incomplete"] == sum(1 for _, n, _ in images if n)


def test_foreign_datagrams_in_the_stream_are_counted_and_ignored(config, receiver):
    detector = SimulatedDetector(config, rate_hz=200, n_images=10, first_frame=1, foreign=0.05, seed=9)
    detector.run()
    images = collect_images(receiver, 10)
    assert [f for f, n, _ in images] == list(range(1, 11))
    assert all(n == 0 and np.array_equal(image, expected_image(config, f)) for f, n, image in images)
    assert receiver.counters()["packets_foreign"] == detector.counters["foreign_sent"] > 0


def test_foreign_packets_are_counted_and_ignored(config, receiver):
    port = config["start_udp_port"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"hello", ("127.0.0.1", port))
        s.sendto(bytes(9000), ("127.0.0.1", port))
        wrong_version = struct.pack("<QIIQQHHHHIHBB", 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1) + bytes(8192)
        s.sendto(wrong_version, ("127.0.0.1", port + 1))
        bad_packet_number = struct.pack("<QIIQQHHHHIHBB", 1, 0, 999, 0, 0, 0, 0, 0, 0, 0, 0, 3, 2) + bytes(8192)
        s.sendto(bad_packet_number, ("127.0.0.1", port))
    SimulatedDetector(config, rate_hz=200, n_images=5, first_frame=100).run()
    images = collect_images(receiver, 5)
    assert [f for f, n, _ in images] == [100, 101, 102, 103, 104]
    assert all(n == 0 for _, n, _ in images)
    assert receiver.counters()["packets_foreign"] == 4


def test_detector_restarting_its_frame_numbers(config, receiver):
    SimulatedDetector(config, rate_hz=200, n_images=20, first_frame=50_000, restart_after=10).run()
    images = collect_images(receiver, 20)
    assert [f for f, _, _ in images] == list(range(50_000, 50_010)) + list(range(1, 11))
    for frame, n_missing, image in images:
        assert n_missing == 0
        assert np.array_equal(image, expected_image(config, frame))
    assert receiver.counters()["frame_restarts"] >= 1


def test_a_module_that_stops_sending_gives_incomplete_images_not_a_stall(config, receiver):
    SimulatedDetector(config, rate_hz=100, n_images=10, first_frame=1, silent_module=1, silent_after=3).run()
    images = collect_images(receiver, 10, timeout=5)
    assert [f for f, _, _ in images] == list(range(1, 11))
    rows, cols = module_coordinates(config, 1)
    rows0, cols0 = module_coordinates(config, 0)
    for frame, n_missing, image in images:
        expected = expected_image(config, frame)
        assert np.array_equal(image[np.ix_(rows0, cols0)], expected[np.ix_(rows0, cols0)])
        if frame <= 3:
            assert n_missing == 0 and np.array_equal(image, expected)
        else:
            assert n_missing == 128
            assert (image[np.ix_(rows, cols)] == MISSING).all()


def test_full_ring_drops_frames_and_recovers(config, receiver):
    n_slots = receiver.n_slots
    SimulatedDetector(config, rate_hz=500, n_images=n_slots + 10, first_frame=1).run()
    time.sleep(0.2)
    counters = receiver.counters()
    assert counters["module_frames_dropped"] > 0, "nobody consumed: frames beyond the ring are dropped"
    assert counters["images_dropped"] > 0
    assert len(collect_images(receiver, n_slots, timeout=3)) == n_slots
    SimulatedDetector(config, rate_hz=200, n_images=5, first_frame=1000).run()
    images = collect_images(receiver, 5)
    assert [f for f, n, _ in images] == [1000, 1001, 1002, 1003, 1004]


def eiger_config(bit_depth: int) -> dict:
    """One Eiger module: 4 ports of 512 x 256, 2-px chip gaps, bottom half mirrored."""
    return configs.eiger_config(bit_depth, free_udp_ports(4), "EG-test")


@pytest.mark.parametrize("bit_depth", [4, 8, 16, 32])
def test_eiger_at_every_bit_depth_with_gaps_and_mirroring(bit_depth):
    config = eiger_config(bit_depth)
    images = receive_from_simulator(config, 5, rate_hz=200, first_frame=3)
    assert [f for f, n, _ in images] == [3, 4, 5, 6, 7]
    for frame, n_missing, image in images:
        assert n_missing == 0
        assert image.dtype == {4: np.uint8, 8: np.uint8, 16: np.uint16, 32: np.uint32}[bit_depth]
        assert np.array_equal(image, expected_image(config, frame))
        assert not image[:, 256:258].any(), "chip gap columns stay 0"
        assert not image[256:258, :].any(), "gap rows between the half modules stay 0"


def test_payloads_of_an_in_order_stream_land_in_place_and_packed_ones_are_decoded(config):
    """One copy: the kernel puts the payloads of a stream that arrives in order straight into the image
    (only a frame's first packet is received whole); 4-bit payloads must be unpacked, so none is placed."""
    for cfg, placed in ((config, True), (eiger_config(4), False)):
        receiver = Receiver(cfg, ReceiverSettings(bind_address="127.0.0.1", ring_bytes=48 << 20))
        try:
            SimulatedDetector(cfg, rate_hz=100, n_images=20, first_frame=1).run()
            images = collect_images(receiver, 20)
            counters = receiver.counters()
        finally:
            receiver.close()
        assert [f for f, _, _ in images] == list(range(1, 21))
        for frame, n_missing, image in images:
            assert n_missing == 0 and np.array_equal(image, expected_image(cfg, frame))
        if placed:
            assert counters["packets_placed"] > counters["packets_received"] // 2
        else:
            assert counters["packets_placed"] == 0


def gigafrost_config(width: int, height: int) -> dict:
    return configs.gigafrost_config(width, height, free_udp_ports(8), "GF-test")


@pytest.mark.parametrize(("width", "height"), [(2016, 2016), (624, 400), (96, 12), (6120, 2048)])
def test_gigafrost_12_bit_streams_assemble_into_quadrants(width, height):
    config = gigafrost_config(width, height)
    images = receive_from_simulator(config, 4, ring_mb=128, rate_hz=100, first_frame=70_000)
    assert [f for f, _, _ in images] == [70_000, 70_001, 70_002, 70_003]
    for frame, n_missing, image in images:
        assert n_missing == 0
        assert image.dtype == np.uint16 and image.shape == (height, width)
        assert image.max() <= 0xFFF, "12-bit pixels"
        assert np.array_equal(image, expected_image(config, frame))


def test_gigafrost_loss_including_the_short_last_packet():
    # 312 x 100 streams: 15 rows a packet (odd: 36 bytes of padding), the last packet holds 10 rows
    config = gigafrost_config(624, 400)
    receiver = Receiver(config, ReceiverSettings(bind_address="127.0.0.1", ring_bytes=16 << 20))
    detector = SimulatedDetector(config, rate_hz=100, n_images=20, first_frame=1, loss=0.1, seed=5)
    try:
        detector.run()
        images = collect_images(receiver, 20)
    finally:
        receiver.close()
    assert len(images) == 20
    assert sum(n for _, n, _ in images) == detector.counters["packets_not_sent"] > 0
    for frame, _, image in images:
        expected = expected_image(config, frame)
        lost = image != expected
        assert (image[lost] == MISSING).all(), "a pixel differs only where its packet was lost"


def test_pinned_receive_threads(config):
    """With pin_threads each module's receive thread runs on its own CPU (CPU 0 left to the writer)."""
    import os
    from pathlib import Path

    n_cpus = os.cpu_count()
    before = {task.name for task in Path("/proc/self/task").iterdir()}
    receiver = Receiver(config, ReceiverSettings(bind_address="127.0.0.1", ring_bytes=16 << 20, pin_threads=True))
    try:
        new_tasks = [t for t in Path("/proc/self/task").iterdir() if t.name not in before]
        allowed = sorted(
            line.split()[1]
            for task in new_tasks
            for line in (task / "status").read_text().splitlines()
            if line.startswith("Cpus_allowed_list")
        )
        assert allowed == sorted(str((m + 1) % n_cpus) for m in range(config["n_modules"]))
        SimulatedDetector(config, rate_hz=200, n_images=5, first_frame=1).run()
        images = collect_images(receiver, 5)
        assert [f for f, n, _ in images] == [1, 2, 3, 4, 5] and all(n == 0 for _, n, _ in images)
    finally:
        receiver.close()


def test_static_pixels_repeat_the_first_frame_with_new_frame_numbers(config, receiver):
    """The benchmark mode of the simulator: headers advance, pixels stay those of the first frame."""
    SimulatedDetector(config, rate_hz=200, n_images=3, first_frame=10, static_pixels=True).run()
    images = collect_images(receiver, 3)
    assert [f for f, _, _ in images] == [10, 11, 12]
    for _, n_missing, image in images:
        assert n_missing == 0 and np.array_equal(image, expected_image(config, 10))
