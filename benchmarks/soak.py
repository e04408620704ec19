"""Soak: the real server for a long time at half the loopback ceiling, acquisitions started and stopped
throughout; does anything leak or get lost?

    python benchmarks/soak.py                    # 30 minutes (the figures in docs/benchmarks.rst)
    python benchmarks/soak.py --minutes 2        # a quick look

One Eiger module (16 bit, the simulator's ``photons`` content) sends at ``--fraction`` (default 0.5) of
this machine's loopback ceiling, measured first in the same run, into ``std_daq_server --compression
bitshuffle-lz4``. Acquisitions of 5-15 s of images follow each other with a second between them; every
third is stopped half-way (a stop must end it "Interrupted." with a valid file), the others must end
"Completed." with every image. Reported: acquisitions, images written, images lost (dropped or incomplete,
from the receiver's counters; target 0), and the server's process tree (server and writer processes) at
the start and at the end: resident memory, open descriptors, threads. Prints one table; nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sustained import EIGER_PACKET, Server, ceiling, free_port  # noqa: E402

from sim import configs  # noqa: E402

LOST = ("images_dropped", "images_incomplete")


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def resources(pid: int) -> dict:
    """RSS (MiB), descriptors and threads of the process tree of ``pid``."""
    rss = fds = threads = 0
    for p in tree(pid):
        try:
            status = open(f"/proc/{p}/status").read()
            fds += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("Threads:"):
                threads += int(line.split()[1])
    return {"rss_mib": rss / 1024, "fds": fds, "threads": threads, "processes": len(tree(pid))}


def counters(server: Server) -> dict:
    return server.client.get_stats()["detector"]


def soak(folder: Path, minutes: float, fraction: float) -> dict:
    top = ceiling(EIGER_PACKET, 2)
    config = configs.eiger_config(16, free_port(block=4), "EGSOAK")
    server = Server(folder, config, "bitshuffle-lz4", 0)
    packets_per_image = 4 * 128  # 4 ports of a 16-bit Eiger module, 128 packets of 4144 bytes each
    rate = fraction * top * 1e9 / (packets_per_image * EIGER_PACKET)
    detector = subprocess.Popen([sys.executable, "-m", "sim.cli", "--config", str(server.config_file), "--rate",
                                 f"{rate:.1f}", "--content", "photons"], stdout=subprocess.DEVNULL)  # fmt: skip
    time.sleep(3)  # the stream settles; then the start figures
    start, before = resources(server.proc.pid), counters(server)
    results = {"acquisitions": 0, "completed": 0, "interrupted": 0, "failed": 0, "images": 0, "problems": []}
    deadline = time.monotonic() + minutes * 60
    k = 0
    try:
        while time.monotonic() < deadline:
            seconds = 5 + (k * 7) % 11
            n_images = int(rate * seconds)
            output = folder / "data" / f"soak{k:05d}.h5"
            server.client.start_writer_async({"output_file": str(output), "n_images": n_images})
            if k % 3 == 2:  # stopped half-way
                time.sleep(seconds / 2)
                server.client.stop_writer()
            while server.client.get_status()["state"] == "WRITING":
                time.sleep(0.2)
            acquisition = server.client.get_status()["acquisition"]
            results["acquisitions"] += 1
            results["images"] += acquisition["stats"]["n_write_completed"]
            expected = "Interrupted." if k % 3 == 2 else "Completed."
            kind = {"Completed.": "completed", "Interrupted.": "interrupted"}.get(acquisition["message"], "failed")
            results[kind] += 1
            if acquisition["message"] != expected:
                results["problems"].append(f"{output.name}: {acquisition['state']} {acquisition['message'][:80]}")
            output.unlink(missing_ok=True)  # the disk holds one acquisition at a time
            k += 1
            time.sleep(1)
    finally:
        after = counters(server)
        end = resources(server.proc.pid)
        detector.terminate()
        detector.wait(30)
        server.stop()
    lost = sum(int(after.get(key, 0)) - int(before.get(key, 0)) for key in LOST)
    return results | {"ceiling": top, "rate_hz": rate, "gbps": rate * packets_per_image * EIGER_PACKET / 1e9,
                      "lost": lost, "start": start, "end": end, "minutes": minutes}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fraction", type=float, default=0.5, help="of the loopback ceiling (default 0.5)")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (default: a temp folder)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="std_daq_soak_", dir=args.dir))
    (folder / "data").mkdir()
    try:
        r = soak(folder, args.minutes, args.fraction)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"soak {r['minutes']:g} min, one Eiger module 16 bit, photons, bitshuffle-lz4, at {r['rate_hz']:.0f} Hz = "
        f"{r['gbps']:.2f} GB/s = {r['gbps'] / r['ceiling']:.2f} of this run's loopback ceiling {r['ceiling']:.2f} GB/s"
    )
    print(
        f"acquisitions {r['acquisitions']} (completed {r['completed']}, interrupted {r['interrupted']}, "
        f"failed {r['failed']}), images written {r['images']}, images lost {r['lost']}"
    )
    print(f"{'':10} {'RSS MiB':>9} {'fds':>6} {'threads':>8} {'processes':>10}")
    for label in ("start", "end"):
        s = r[label]
        print(f"{label:10} {s['rss_mib']:9.0f} {s['fds']:6d} {s['threads']:8d} {s['processes']:10d}")
    for problem in r["problems"][:10]:
        print("problem:", problem)


if __name__ == "__main__":
    main()
