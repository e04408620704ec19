"""Throughput and loss of the receive path, next to the machine's own loopback ceiling.

    python benchmarks/throughput.py [--frames N]

Prints one table. Rows, all measured in this run on loopback:
  * ceiling        a bare C sendmmsg -> recvmmsg pair, same datagram size, no processing
  * receiver       simulator (a separate process, sendmmsg) -> our C receiver -> images
                   taken from the ring buffer and released (Python touches only images)
  * recv + writer  the same, every image written to an HDF5 file with the server's writer
The simulator sends as fast as it can (offered load) or at a fixed rate. CPU % is the
receiving process (all its threads) over wall time; 100 % = one core. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from loopback import loopback_ceiling

from daq_server.config import validate_config
from daq_server.receive.udp_receiver import Receiver, ReceiverSettings
from daq_server.write.hdf5_writer import Hdf5Writer
from daq_server.write.request import WriteTarget, parse_write_request
from sim import configs

JUNGFRAU_PACKET = 8240  # the ceiling uses this datagram size (Eiger's are 4144 bytes)
JUNGFRAU_PACKETS_PER_FRAME = 128


def free_udp_block(n: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1] - n if s.getsockname()[1] > 60000 else s.getsockname()[1]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ceiling(n_packets: int) -> dict:
    result = loopback_ceiling(free_udp_block(1), JUNGFRAU_PACKET, n_packets)
    seconds = result["seconds"]
    return {
        "case": "ceiling: bare sendmmsg->recvmmsg (best of 3)",
        "offered": "max",
        "gbps": result["bytes_received"] / seconds / 1e9,
        "images_per_s": result["packets_received"] / JUNGFRAU_PACKETS_PER_FRAME / seconds,
        "lost_packets": int(result["packets_sent"] - result["packets_received"]),
        "lost_images": None,
        "cpu": None,
    }


def disk_limit(n_bytes: int = 1 << 30) -> dict:
    """Sequential write + fsync of plain bytes to the temp folder the writer rows use."""
    block = np.ones(8 << 20, dtype=np.uint8)
    fd, path = tempfile.mkstemp(prefix="std_daq_bench_disk_")
    t0 = time.monotonic()
    with os.fdopen(fd, "wb") as handle:
        for _ in range(n_bytes // block.nbytes):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    seconds = time.monotonic() - t0
    os.unlink(path)
    return {
        "case": "disk: sequential write + fsync",
        "offered": "max",
        "gbps": n_bytes / seconds / 1e9,
        "images_per_s": n_bytes / seconds / (1 << 20),
        "lost_packets": None,
        "lost_images": None,
        "cpu": None,
    }


def receive(config: dict, label: str, n_frames: int, rate: float, write: bool, static: bool = False) -> dict:
    """Simulator process -> receiver (-> writer); static: the sender repeats the first frame's pixels."""
    workdir = Path(tempfile.mkdtemp(prefix="std_daq_bench_"))
    config_file = workdir / "config.json"
    config_file.write_text(json.dumps(config))
    receiver = Receiver(config, ReceiverSettings(bind_address="127.0.0.1", ring_bytes=512 << 20))
    writer = None
    if write:
        request = parse_write_request({"output_file": str(workdir / "bench.h5"), "n_images": n_frames}, workdir, 0)
        target = WriteTarget(request, validate_config(config), receiver.shape, str(receiver.dtype))
        writer = Hdf5Writer(target)
    sim = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "--config", str(config_file), "--rate", str(rate),
         "--n-images", str(n_frames), *(["--static-pixels"] if static else [])],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    images, first, last = 0, None, None
    cpu0 = cpu_seconds()
    t_start = time.monotonic()
    idle_since = None
    while True:
        image = receiver.next_image(timeout=0.05)
        if image is None:
            if sim.poll() is not None:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 0.5:
                    break
            continue
        idle_since = None
        now = time.monotonic()
        first = first or now
        last = now
        if writer is not None and writer.n_written < n_frames:
            writer.write(image.data, image.frame_number, image.n_missing_packets, image.receive_time)
        receiver.release(image)
        images += 1
    cpu = cpu_seconds() - cpu0
    wall = (last or time.monotonic()) - t_start
    sent = json.loads(sim.stdout.read())
    counters = receiver.counters()
    receiver.close()
    if writer is not None:
        writer.close()
    for f in workdir.iterdir():
        f.unlink()
    workdir.rmdir()
    span = (last - first) if first and last and last > first else wall
    frames_received = counters["images_complete"] + counters["images_incomplete"]
    return {
        "case": f"{'recv + writer' if write else 'receiver'}: {label}{' (static px)' if static else ''}",
        "offered": "max" if rate == 0 else f"{rate:g} Hz",
        "gbps": counters["bytes_received"] / span / 1e9,
        "images_per_s": images / span,
        "lost_packets": int(sent["packets_sent"] - counters["packets_received"]),
        "lost_images": int(n_frames - frames_received + counters["images_incomplete"]),
        "cpu": 100 * cpu / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000, help="images per run (default 2000)")
    args = parser.parse_args()
    # the ceiling is the best of three runs: one short run on a shared VM can land on a bad moment
    best_ceiling = max((ceiling(args.frames * JUNGFRAU_PACKETS_PER_FRAME) for _ in range(3)), key=lambda r: r["gbps"])
    rows = [best_ceiling, disk_limit()]
    # the rate the disk sustains: 80 % of its measured sequential rate, in 1 MiB Jungfrau module images
    disk_rate = max(10, int(0.8 * rows[1]["gbps"] * 1e9 / (1 << 20)))
    for n_modules in (1, 4):
        frames, label = args.frames // n_modules, f"{n_modules} x Jungfrau"
        for n, rate in ((frames, 0), (min(frames, 1000), 1000 / n_modules)):  # max rate, then 1 kHz of modules
            for write in (False, True):
                config = configs.jungfrau_config(n_modules, free_udp_block(n_modules), "bench")
                rows.append(receive(config, label, n, rate, write))
    config = configs.jungfrau_config(1, free_udp_block(1), "bench")
    rows.append(receive(config, "1 x Jungfrau", min(args.frames, 4 * disk_rate), disk_rate, True))
    # the sender builds every packet's pixels; with static pixels its core goes to sending only,
    # which shows how much more the receiver takes than the simulator offers above
    for n_modules in (1, 4):
        config = configs.jungfrau_config(n_modules, free_udp_block(n_modules), "bench")
        rows.append(receive(config, f"{n_modules} x Jungfrau", args.frames // n_modules, 0, False, static=True))
    for bit_depth in (16, 32):
        frames, label = args.frames // 2, f"Eiger 1 module, {bit_depth} bit"
        for write in (False, True):
            rows.append(receive(configs.eiger_config(bit_depth, free_udp_block(4), "bench"), label, frames, 0, write))
    print(f"machine: {os.cpu_count()} cores; datagram {JUNGFRAU_PACKET} B; {args.frames} images per run at 1 module")
    header = (
        f"{'case':<44} {'offered':>9} {'GB/s':>7} {'% ceil':>7} {'images/s':>9} {'lost pkts':>10} "
        f"{'lost img':>9} {'CPU %':>6}"
    )
    print(header)
    print("-" * len(header))
    top = rows[0]["gbps"]
    for r in rows:
        lost_images = "" if r["lost_images"] is None else r["lost_images"]
        lost_packets = "" if r["lost_packets"] is None else r["lost_packets"]
        cpu = "" if r["cpu"] is None else f"{r['cpu']:.0f}"
        share = 100 * r["gbps"] / top
        print(f"{r['case']:<44} {r['offered']:>9} {r['gbps']:7.2f} {share:7.0f} {r['images_per_s']:9.0f} "
              f"{lost_packets:>10} {lost_images:>9} {cpu:>6}")  # fmt: skip
    print(f"(ceiling = {top:.2f} GB/s; GB/s counts UDP datagram bytes received; the disk row counts")
    print(" bytes written, images/s there = 1 MiB Jungfrau module images the disk takes per second)")


if __name__ == "__main__":
    main()
