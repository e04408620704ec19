"""CPU the server spends per GB received: receive only, and receive + write (raw and bitshuffle-LZ4).

    python benchmarks/cpu_per_gb.py                       # 2000 images of 4 Jungfrau modules at 200 Hz per row
    python benchmarks/cpu_per_gb.py --images 300          # a quick look
    python benchmarks/cpu_per_gb.py --profile /tmp/prof   # also where it goes (perf), per row

Every row starts ``std_daq_server`` (4 Jungfrau modules; ``--compression bitshuffle-lz4`` for the
compressed row) and sends ``--images`` images with ``std_daq_sim --static-pixels`` paced at ``--rate``
(200 Hz = 0.84 GB/s), as the acceptance check ``18-cpu-per-gb`` does. A row's figure is the CPU time
(user + system, from /proc) of the server's whole process tree -- receive threads, consumer, writer
processes, compressing threads -- over the UDP payload bytes it received. Beside them, in the same run:

* **memcpy**: one copy of the same number of bytes, image by image (numpy, one core): what a single
  copy of every byte costs on this machine;
* **bare receiver**: the same stream into the barest receiver (``benchmarks/native/loopback_ceiling.c``:
  a thread per port, blocking ``recvmmsg`` batches of 64 into one buffer, nothing done with them), its
  threads' CPU time: the kernel's own receive work, the floor under the receive row;
* **slsReceiver**: the reference receiver on the same stream (one module, its raw files written), when
  slsDetectorPackage's programs are on PATH (see ``benchmarks/peer_comparison.py``).

With ``--profile DIR`` each server row also runs ``perf record -e cpu-clock`` on the server's process
tree and prints the functions that take the most, in core-seconds per GB. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from loopback import bare_receive

from sim import configs
from std_daq_client import StdDaqClient

MODULES = 4
PAYLOAD = 8192  # Jungfrau pixel bytes per packet (the 48-byte header is not counted)
TICK = os.sysconf("SC_CLK_TCK")
PROFILE_HZ = 1999


def free_port(kind: int = socket.SOCK_STREAM, block: int = 1) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return port - block if port + block > 65000 else port


def tree(pid: int) -> list[int]:
    """pid and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def tree_cpu(pid: int) -> float:
    """utime + stime of pid and its descendants, reaped children included (cutime + cstime)."""
    total = 0.0
    for member in tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(fields[k]) for k in (11, 12, 13, 14)) / TICK
    return total


def memcpy_row(n_bytes: int, image_bytes: int) -> dict:
    """One copy of n_bytes, an image at a time, between two buffers the size of a small ring."""
    source = np.ones((8, image_bytes), dtype=np.uint8)
    target = np.empty_like(source)
    t0 = time.process_time()
    for i in range(max(1, n_bytes // image_bytes)):
        np.copyto(target[i % 8], source[i % 8])
    return {"case": "memcpy of the same bytes", "gb": n_bytes / 1e9, "cpu": time.process_time() - t0, "lost": None}


def bare_row(args: argparse.Namespace) -> dict:
    """The same stream into the barest receiver (benchmarks/native): the kernel's own receive work."""
    folder = Path(tempfile.mkdtemp(prefix="std_daq_bare_", dir=args.dir))
    port = free_port(socket.SOCK_DGRAM, MODULES)
    config_file = folder / "config.json"
    config_file.write_text(json.dumps(configs.jungfrau_config(MODULES, port, "bare")))
    result: dict = {}
    receiver = threading.Thread(target=lambda: result.update(bare_receive(list(range(port, port + MODULES)), 8240)))
    receiver.start()
    time.sleep(0.5)
    try:
        subprocess.run(
            [sys.executable, "-m", "sim.cli", "--config", str(config_file), "--rate", str(args.rate),
             "--n-images", str(args.images), "--static-pixels"], check=True, capture_output=True,
        )  # fmt: skip
    finally:
        receiver.join()
        shutil.rmtree(folder, ignore_errors=True)
    gb = result["packets_received"] * PAYLOAD / 1e9
    return {"case": "bare receiver (kernel's own work)", "gb": gb, "cpu": result["cpu_seconds"], "lost": None}


class Server:
    """std_daq_server for a config, in its own folder."""

    def __init__(self, folder: Path, config: dict, compression: str):
        self.folder = folder
        self.data = folder / "data"
        self.data.mkdir(parents=True)
        self.config_file = folder / "config.json"
        self.config_file.write_text(json.dumps(config))
        port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daq_server.serve.cli", "--config", str(self.config_file), "--port", str(port),
             "--data-root", str(self.data), "--udp-address", "127.0.0.1", "--compression", compression],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.client = StdDaqClient(f"http://127.0.0.1:{port}")
        for _ in range(300):
            try:
                self.client.get_status()
                return
            except Exception:  # noqa: BLE001 - not up yet
                if self.process.poll() is not None:
                    raise RuntimeError("std_daq_server exited at start") from None
                time.sleep(0.1)
        raise RuntimeError("std_daq_server did not answer within 30 s")

    def packets(self) -> int:
        return int(self.client.get_stats()["detector"].get("packets_received", 0))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def profile_start(pids: list[int], output: Path) -> subprocess.Popen | None:
    if shutil.which("perf") is None:
        return None
    return subprocess.Popen(
        ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(PROFILE_HZ), "-o", str(output),
         "-p", ",".join(map(str, pids))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def profile_top(output: Path, core_s_per_gb: float, n: int) -> list[str]:
    """The n functions with most samples, each as its share and its core-seconds per GB."""
    report = subprocess.run(
        ["perf", "report", "-i", str(output), "--stdio", "--no-children", "-q", "--sort", "dso,sym",
         "--percent-limit", "0.5"], capture_output=True, text=True,
    ).stdout  # fmt: skip
    lines = []
    for line in report.splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[0].endswith("%"):
            continue
        share = float(parts[0].rstrip("%")) / 100
        dso, symbol = parts[1], " ".join(parts[3:])
        lines.append(f"    {share:6.1%} {share * core_s_per_gb:7.3f}  {symbol[:60]} [{dso}]")
        if len(lines) == n:
            break
    return lines


def server_row(label: str, compression: str, write: bool, args: argparse.Namespace) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="std_daq_cpu_", dir=args.dir))
    config = configs.jungfrau_config(MODULES, free_port(socket.SOCK_DGRAM, MODULES), "cpu")
    server = Server(folder, config, compression)
    try:
        time.sleep(1.0)  # the writer processes are up
        packets0, cpu0 = server.packets(), tree_cpu(server.process.pid)
        profiler = None
        if args.profile:
            profiler = profile_start(tree(server.process.pid), args.profile / f"{label.replace(' ', '_')}.data")
        if write:
            server.client.start_writer_async({"output_file": str(server.data / "run.h5"), "n_images": args.images})
        extra = 50 if write else 0  # the writer starts on the next image: a few more are sent
        subprocess.run(
            [sys.executable, "-m", "sim.cli", "--config", str(server.config_file), "--rate", str(args.rate),
             "--n-images", str(args.images + extra), "--static-pixels"], check=True, capture_output=True,
        )  # fmt: skip
        lost = None
        if write:
            for _ in range(1200):
                status = server.client.get_status()
                if status["state"] != "WRITING":
                    break
                time.sleep(0.1)
            lost = args.images - status["acquisition"]["stats"]["n_write_completed"]
        time.sleep(1.0)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(60)
        gb = (server.packets() - packets0) * PAYLOAD / 1e9
        cpu = tree_cpu(server.process.pid) - cpu0
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return {"case": label, "gb": gb, "cpu": cpu, "lost": lost}


def peer_row(args: argparse.Namespace) -> dict | str:
    """slsReceiver on the same stream (one module), or why not."""
    sys.path.insert(0, str(Path(__file__).parent))
    import peer_comparison

    missing = [name for name in peer_comparison.PEER_PROGRAMS if shutil.which(name) is None]
    if missing:
        return f"slsReceiver skipped: {', '.join(missing)} not on PATH"
    folder = Path(tempfile.mkdtemp(prefix="std_daq_peer_", dir=args.dir))
    frames = args.images * MODULES  # the same bytes as the other rows, from one module
    try:
        row = peer_comparison.peer(folder, frames, args.rate * MODULES)
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as error:
        return f"slsReceiver skipped: {error}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    gb = (frames - row["lost"]) * 128 * PAYLOAD / 1e9
    return {"case": "slsReceiver: receive + raw write", "gb": gb, "cpu": row["cpu_per_1000"] * frames / 1000,
            "lost": row["lost"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000, help="images of 4 Jungfrau modules per row")
    parser.add_argument("--rate", type=float, default=200, help="images per second (default 200 = 0.84 GB/s)")
    parser.add_argument("--dir", default=None, help="folder for the written files (default: the temp folder)")
    parser.add_argument("--profile", type=Path, default=None, help="record a perf profile per row in this folder")
    parser.add_argument("--top", type=int, default=15, help="functions listed per profiled row")
    parser.add_argument("--rows", default="bare,receive,raw,lz4,peer", help="which rows (default all)")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    wanted = args.rows.split(",")
    image_bytes = MODULES * 128 * PAYLOAD
    rows: list[dict] = [memcpy_row(args.images * image_bytes, image_bytes)]
    if "bare" in wanted:
        rows.append(bare_row(args))
    notes: list[str] = []
    cases = (("receive", "receive only", "none", False), ("raw", "receive + write raw", "none", True),
             ("lz4", "receive + write bitshuffle-lz4", "bitshuffle-lz4", True))  # fmt: skip
    for key, label, compression, write in cases:
        if key in wanted:
            rows.append(server_row(label, compression, write, args))
    if "peer" in wanted:
        peer = peer_row(args)
        rows.append(peer) if isinstance(peer, dict) else notes.append(peer)
    print(f"{args.images} images of {MODULES} Jungfrau modules at {args.rate:g} Hz per row; {os.cpu_count()} cores; "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{'case':<34} {'GB received':>11} {'core-s':>7} {'core-s / GB':>11} {'images lost':>11}")
    for r in rows:
        lost = "" if r["lost"] is None else r["lost"]
        print(f"{r['case']:<34} {r['gb']:11.2f} {r['cpu']:7.2f} {r['cpu'] / r['gb']:11.3f} {lost:>11}")
    for note in notes:
        print(note)
    if args.profile:
        for r in rows[1:]:
            data = args.profile / f"{r['case'].replace(' ', '_')}.data"
            if data.exists():
                print(f"\n{r['case']}: share of samples, core-s per GB, function [object]")
                print("\n".join(profile_top(data, r["cpu"] / r["gb"], args.top)))


if __name__ == "__main__":
    main()
