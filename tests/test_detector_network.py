"""Real detectors on a real network: restarting frame numbers, ports owned by one receiver,
packets from the wrong source, absurd frame numbers, and every packet accounted for."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from conftest import RunningDaq, free_udp_ports, jungfrau_config, wait_for
from expected import expected_image

from sim import configs as example_configs
from std_daq_client import StdDaqClient

# the names, written here independently of daq_server.serve.stats (the test is the spec)
COUNTERS = ("packets_received", "packets_lost", "packets_foreign", "packets_late", "packets_duplicate",
            "frame_restarts", "images_incomplete", "images_dropped")  # fmt: skip


def acquire_while_sending(daq: RunningDaq, name: str, n_images: int, **simulator) -> tuple[dict, str]:
    """write_async, then the simulator sends n_images + 10 frames; the acquisition's final status."""
    output = str(daq.data_root / name)
    daq.client.start_writer_async({"output_file": output, "n_images": n_images})
    detector = daq.simulator(n_images=n_images + 10, **simulator)
    detector.run()
    try:
        wait_for(lambda: daq.client.get_status()["state"] != "WRITING", timeout=20)
    except AssertionError:
        raise AssertionError(f"still writing: {daq.client.get_status()} {daq.client.get_stats()}") from None
    return daq.client.get_status()["acquisition"], output


def assert_exact(config: dict, path: str, first_frame: int, n_images: int) -> None:
    with h5py.File(path, "r") as f:
        ids = f["entry/data/image_id"][:]
        assert list(ids) == list(range(first_frame, first_frame + n_images))
        assert f["entry/data/is_good_frame"][:].all()
        for i, frame in enumerate(ids):
            assert np.array_equal(f["entry/data/data"][i], expected_image(config, int(frame))), f"image {i}"


@pytest.mark.parametrize("kind", ["jungfrau", "eiger"])
def test_acquisitions_in_a_row_with_frame_numbers_starting_again_at_1(tmp_path, kind):
    if kind == "jungfrau":
        config = jungfrau_config(2)
    else:
        config = example_configs.eiger_config(16, free_udp_ports(4), "EG-test")
    daq = RunningDaq(tmp_path, config).start()
    try:
        for k, n_images in enumerate((60, 20, 20)):
            acquisition, output = acquire_while_sending(daq, f"run{k}.h5", n_images, first_frame=1, rate_hz=100)
            assert acquisition["message"] == "Completed.", acquisition
            assert_exact(config, output, 1, n_images)
            time.sleep(0.3)  # the detector is stopped between acquisitions
        assert daq.client.get_stats()["detector"]["frame_restarts"] >= 2
    finally:
        daq.stop()


def test_a_second_server_on_the_same_ports_refuses_and_the_owner_keeps_every_image(tmp_path):
    config = jungfrau_config(1)
    owner = RunningDaq(tmp_path / "owner", config).start()
    second = RunningDaq(tmp_path / "second", config).start()
    port = str(config["start_udp_port"])
    try:
        deployment = second.client.get_deployment_status()
        assert deployment["status"] == "FAILED"
        assert port in deployment["message"] and str(second.config_file) in deployment["message"]
        assert "pid " in deployment["message"], "names the process that holds the port"
        status = second.client.get_status()  # the truth about readiness: not READY, and why
        assert status["state"] == "ERROR" and port in status["reason"]
        cli = subprocess.run([sys.executable, "-c", "from std_daq_client.cli import get_status; get_status()",
                              "--url-base", second.url], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert cli.returncode == 5 and '"ERROR"' in cli.stdout, cli.stdout + cli.stderr
        assert second.client.stop_writer()["state"] == "ERROR", "a stop cannot make a server without receiver ready"
        with pytest.raises(Exception, match=port):
            second.client.start_writer_async({"output_file": str(second.data_root / "x.h5"), "n_images": 5})
        assert not list(second.data_root.iterdir()), "a refused request leaves nothing"

        acquisition, output = acquire_while_sending(owner, "owner.h5", 40, first_frame=501, rate_hz=100)
        assert acquisition["message"] == "Completed."
        assert_exact(config, output, 501, 40)

        # the operator fixes the second server's config: it receives on its new port
        new_port = free_udp_ports(1)
        second.client.set_config({"start_udp_port": new_port})
        assert second.client.get_deployment_status()["status"] == "SUCCESS"
        assert second.client.get_status()["state"] == "READY"
    finally:
        second.stop()
        owner.stop()


def spoofed_packet(frame: int, packet: int) -> bytes:
    """A well-formed Jungfrau packet (slsDetector header v2) full of 0xA5."""
    header = struct.pack("<QIIQQHHHHIHBB", frame, 0, packet, frame, 0, 0, 0, 0, 0, 0, 0, 3, 2)
    return header + b"\xa5" * 8192


def test_only_the_detectors_packets_are_written(tmp_path):
    config = jungfrau_config(1) | {"detector_address": "127.0.0.2"}
    daq = RunningDaq(tmp_path, config).start()
    port = config["start_udp_port"]
    spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spoofer.bind(("127.0.0.3", 0))
    try:
        output = str(daq.data_root / "spoofed.h5")
        daq.client.start_writer_async({"output_file": output, "n_images": 50})
        n_spoofed = 0
        for frame in (1001, 1020, 1060, 2**62 + 5):  # inside, after, far after the acquisition, absurd
            for packet in range(128):
                spoofer.sendto(spoofed_packet(frame, packet), ("127.0.0.1", port))
                n_spoofed += 1
        detector = daq.simulator(n_images=60, first_frame=1001, rate_hz=100, source_address="127.0.0.2")
        detector.run()
        wait_for(lambda: daq.client.get_status()["state"] != "WRITING", timeout=20)
        assert daq.client.get_status()["acquisition"]["message"] == "Completed."
        assert_exact(config, output, 1001, 50)
        assert daq.client.get_stats()["detector"]["packets_foreign"] >= n_spoofed
    finally:
        spoofer.close()
        daq.stop()


def test_an_absurd_frame_number_in_the_stream_changes_nothing(daq):
    """Without a source filter: single corrupt packets far ahead (or far behind) of the stream are
    counted foreign; no empty images are opened and the acquisition is not ended early."""
    port = daq.config["start_udp_port"]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    output = str(daq.data_root / "jump.h5")
    daq.client.start_writer_async({"output_file": output, "n_images": 40})
    detector = daq.simulator(n_images=50, first_frame=3001, rate_hz=100)
    detector.start()
    # mid-stream: 10 images taken (the count written follows only at the file's next flush)
    wait_for(lambda: daq.client.get_status()["acquisition"]["stats"]["n_write_requested"] >= 10)
    for frame in (3001 + 10**12, 2**63, 7):
        sender.sendto(spoofed_packet(frame, 3), ("127.0.0.1", port))
        time.sleep(0.05)
    detector.join()
    sender.close()
    wait_for(lambda: daq.client.get_status()["state"] != "WRITING", timeout=20)
    assert daq.client.get_status()["acquisition"]["message"] == "Completed."
    assert_exact(daq.config, output, 3001, 40)
    # the statistics are sampled once a second: the last spoof shows at the next sample
    wait_for(lambda: daq.client.get_stats()["detector"]["packets_foreign"] >= 3, timeout=5)
    assert daq.client.get_stats()["detector"]["packets_foreign"] == 3


def test_counters_in_stats_log_file_and_redis(tmp_path, redis_url):
    import redis

    from std_daq_client.redis_parsers import channel, parse_message

    config = jungfrau_config(2, name="JF-count")
    daq = RunningDaq(tmp_path, config, extra_args=["--redis-url", redis_url]).start()
    pubsub = redis.Redis.from_url(redis_url).pubsub()
    pubsub.subscribe(channel("JF-count", "stats"))
    try:
        output = str(daq.data_root / "counted.h5")
        daq.client.start_writer_async({"output_file": output, "n_images": 100})
        options = {"loss": 0.01, "duplicate": 0.01, "foreign": 0.01, "seed": 5, "first_frame": 1, "rate_hz": 100}
        detector = daq.simulator(**options)  # until the acquisition is complete, however busy the machine
        detector.start()
        try:
            wait_for(lambda: daq.client.get_status()["state"] != "WRITING", timeout=60)
        finally:
            detector.stop()
        assert daq.client.get_status()["acquisition"]["message"] == "Completed."

        stats = daq.client.get_stats()["detector"]
        assert all(isinstance(stats[key], int) for key in COUNTERS)
        for key in ("packets_received", "packets_lost", "packets_foreign", "packets_duplicate", "images_incomplete"):
            assert stats[key] > 0, key

        entry = StdDaqClient(daq.url).get_logs(1)[0]
        assert entry["info"]["output_file"] == output
        counters = entry["counters"]
        assert set(COUNTERS) <= set(counters)
        assert 0 < counters["packets_lost"] <= stats["packets_lost"]
        with h5py.File(output, "r") as f:
            attrs = f["entry"].attrs
            assert {key: int(attrs[key]) for key in COUNTERS} == counters
            n_missing = int(f["entry/data/n_missing_packets"][:].sum())
        assert 0 < n_missing <= counters["packets_lost"], "every lost packet of a written image is counted"

        def redis_counters():
            message = pubsub.get_message(timeout=0.5)
            if message and message["type"] == "message":
                _, data = parse_message(message)
                return data["detector"] if data["detector"].get("packets_lost", 0) >= counters["packets_lost"] else None
            return None

        published = wait_for(redis_counters, timeout=10)
        assert set(COUNTERS) <= set(published)
    finally:
        pubsub.close()
        daq.stop()


def test_dropped_images_are_said_in_the_status_while_the_acquisition_waits(tmp_path):
    """A ring of four images and a detector sending flat out to a compressing writer: when the
    writer falls behind, the status says how many images were dropped, and the log entry counts them."""
    config = jungfrau_config(1)
    daq = RunningDaq(tmp_path, config, extra_args=["--ring-mb", "4", "--compression", "bitshuffle-lz4"]).start()
    try:
        daq.client.start_writer_async({"output_file": str(daq.data_root / "dropped.h5"), "n_images": 5000})
        daq.simulator(n_images=1500, first_frame=1, rate_hz=0).run()
        dropped = daq.client.get_stats()["detector"]["images_dropped"]
        message = daq.client.get_status()["acquisition"]["message"]
        daq.client.stop_writer()
        if not dropped:
            pytest.skip("the writer kept up with the simulator on this machine: nothing was dropped")
        assert f"{dropped} images dropped so far" in message
        assert daq.client.get_logs(1)[0]["counters"]["images_dropped"] == dropped
    finally:
        daq.stop()


def test_config_addresses_are_validated(daq):
    client = daq.client
    with pytest.raises(Exception, match="not an IPv4 address"):
        client.set_config({"detector_address": "detector.psi.ch"})
    with pytest.raises(Exception, match="one per module"):
        client.set_config({"detector_address": ["127.0.0.2"] * 3})
    applied = client.set_config({"detector_address": ["127.0.0.2", "127.0.0.4"], "receiver_address": "127.0.0.1"})
    assert applied["detector_address"] == ["127.0.0.2", "127.0.0.4"]
    assert json.loads(daq.config_file.read_text())["receiver_address"] == "127.0.0.1"
