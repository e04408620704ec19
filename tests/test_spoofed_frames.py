"""No image from one packet (docs/receiver.rst, docs/security.rst): frames far ahead of the stream are held
until the stream proves them, a restart of the numbering needs a complete frame, a stray packet after a pause
writes nothing, and frame numbers that go backwards are counted and named in the status. The C receiver fed
by the simulator over real UDP, the attacks sent from a socket of the test."""

from __future__ import annotations

import socket
import struct
import time

import numpy as np
from conftest import collect_images, jungfrau_config, wait_for
from expected import expected_image

from daq_server.receive.udp_receiver import Receiver, ReceiverSettings
from sim import SimulatedDetector

PACKETS = 128  # of a Jungfrau module frame


def jungfrau_packet(frame: int, packet: int) -> bytes:
    """A well-formed Jungfrau packet (slsDetector header v2) full of 0xA5."""
    return struct.pack("<QIIQQHHHHIHBB", frame, 0, packet, frame, 0, 0, 0, 0, 0, 0, 0, 3, 2) + b"\xa5" * 8192


def send(port: int, datagrams: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for datagram in datagrams:
            s.sendto(datagram, ("127.0.0.1", port))


def receive_while(config: dict, attack, n_images: int = 40, first_frame: int = 1001) -> tuple[list, dict]:
    """The simulator sends n_images at 100 Hz; after 10 of them ``attack(newest frame)`` runs."""
    receiver = Receiver(config, ReceiverSettings(bind_address="127.0.0.1", ring_bytes=64 << 20))
    try:
        detector = SimulatedDetector(config, rate_hz=100, n_images=n_images, first_frame=first_frame)
        detector.start()
        images = collect_images(receiver, 10)
        attack(images[-1][0])
        images += collect_images(receiver, n_images - 10)
        detector.join()
        time.sleep(0.2)  # what was held is dropped at the stream's next packet, long since
        return images, receiver.counters()
    finally:
        receiver.close()


def assert_exact(config: dict, images: list, first_frame: int, n: int) -> None:
    assert [frame for frame, _, _ in images] == list(range(first_frame, first_frame + n))
    for frame, n_missing, image in images:
        assert n_missing == 0 and np.array_equal(image, expected_image(config, frame))


def test_one_packet_far_ahead_sent_ten_times_makes_no_image_and_no_restart():
    config = jungfrau_config(2)
    port = config["start_udp_port"]
    images, counters = receive_while(config, lambda newest: send(port, [jungfrau_packet(newest + 5000, 3)] * 10))
    assert_exact(config, images, 1001, 40)
    assert counters["frame_restarts"] == 0
    assert counters["packets_foreign"] == 10


def test_a_restart_of_the_numbering_needs_a_complete_frame():
    config = jungfrau_config(2)
    port = config["start_udp_port"]
    images, counters = receive_while(config, lambda newest: send(port, [jungfrau_packet(7, p) for p in range(20)]))
    assert_exact(config, images, 1001, 40)
    assert counters["frame_restarts"] == 0
    assert counters["packets_foreign"] == 20


def test_a_single_packet_after_a_pause_writes_nothing():
    config = jungfrau_config(2)
    receiver = Receiver(config, ReceiverSettings(bind_address="127.0.0.1", ring_bytes=64 << 20))
    try:
        send(config["start_udp_port"], [jungfrau_packet(123_456, 5)])
        assert collect_images(receiver, 1, timeout=1.5) == []  # not even an image of missing pixels
        assert receiver.counters()["packets_foreign"] == 1  # its frame was abandoned, never written
        SimulatedDetector(config, rate_hz=100, n_images=5, first_frame=50).run()  # the detector is not held up
        assert_exact(config, collect_images(receiver, 5), 50, 5)
    finally:
        receiver.close()


def test_frame_numbers_going_backwards_are_counted():
    config = jungfrau_config(1)
    receiver = Receiver(config, ReceiverSettings(bind_address="127.0.0.1", ring_bytes=64 << 20))
    try:
        for frame in range(2000, 1980, -1):  # 20 whole frames, each one lower than the last
            send(config["start_udp_port"], [jungfrau_packet(frame, p) for p in range(PACKETS)])
            time.sleep(0.005)
        wait_for(lambda: receiver.counters()["frames_backwards"] == 19)
        assert receiver.counters()["packets_late"] == 19 * PACKETS
    finally:
        receiver.close()


def test_the_status_names_frames_going_backwards(daq):
    daq.client.start_writer_async({"output_file": str(daq.data_root / "backwards.h5"), "n_images": 5})
    for frame in range(900, 880, -1):
        for module in range(daq.config["n_modules"]):
            send(daq.config["start_udp_port"] + module, [jungfrau_packet(frame, p) for p in range(PACKETS)])
        time.sleep(0.005)
    wait_for(lambda: "going backwards" in daq.client.get_status()["acquisition"]["message"])
    message = daq.client.get_status()["acquisition"]["message"]
    assert message.startswith("Waiting for images.") and "frame numbers must count up" in message, message
    daq.client.stop_writer()
