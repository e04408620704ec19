"""Sustained line rate to disk: the real server, realistic images, at least a minute per row.

    python benchmarks/sustained.py                 # 60 s per row (the figures in docs/benchmarks.rst)
    python benchmarks/sustained.py --seconds 5     # a quick look (the page cache hides the disk)

Every row starts ``std_daq_server`` (with or without ``--compression bitshuffle-lz4``) and
``std_daq_sim`` as separate processes on loopback; the simulator sends realistic content
(``jungfrau-raw`` for Jungfrau, ``photons`` for Eiger) as fast as it can for ``--seconds``, into
one acquisition writing to ``--dir``. Rows: 1 and 4 Jungfrau modules and one Eiger module (16
bit), each without and with compression; one Jungfrau module converted to photons and compressed
(``jungfrau_conversion``, the simulator's gain maps, a pedestal taken first), beside the raw rows; the
compressed Eiger row again with every per-image result on (``eigerres``: a 200-bin radial profile in q,
four ROI sums and a spot count, docs/results.rst), offered the rate the compressed Eiger row wrote;
the receiver alone (no acquisition) for 4 Jungfrau
modules; and a busy machine: a 1 kHz Jungfrau acquisition, and a compressed Eiger one flat out, while
``dd ... conv=fdatasync`` writes to the same disk. The same run measures the loopback ceiling (a bare
sendmmsg -> recvmmsg pair per datagram size) and the disk's fsync'd sequential rate. Prints one table; nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from loopback import loopback_ceiling

from sim import configs
from sim.jungfrau import PEDESTAL_CYCLE, write_gain_maps
from std_daq_client import StdDaqClient

JUNGFRAU_PACKET, EIGER_PACKET = 8240, 4144


def free_port(kind: int = socket.SOCK_STREAM, block: int = 1) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return port - block if port + block > 65000 else port


def ceiling(packet_size: int, seconds: float) -> float:
    """GB/s of the barest sendmmsg -> recvmmsg pair on loopback (best of 3 runs)."""
    n_packets = int(max(seconds, 1) * 1.5e9 / packet_size / 3)
    best = 0.0
    for _ in range(3):
        result = loopback_ceiling(free_port(socket.SOCK_DGRAM), packet_size, n_packets)
        best = max(best, result["bytes_received"] / result["seconds"] / 1e9)
    return best


def disk_rate(folder: Path, n_bytes: int) -> float:
    """GB/s of a sequential write + fsync of ``n_bytes`` into ``folder``."""
    block = np.random.default_rng(0).integers(0, 255, 8 << 20, dtype=np.uint8)
    path = folder / "disk_probe.bin"
    t0 = time.monotonic()
    with open(path, "wb") as handle:
        for _ in range(max(1, n_bytes // block.nbytes)):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    seconds = time.monotonic() - t0
    path.unlink()
    return max(1, n_bytes // block.nbytes) * block.nbytes / seconds / 1e9


SERVER_OPTIONS: list[str] = []
"""More std_daq_server options for every row (from this script's command line)."""
SIM_OPTIONS: list[str] = []
"""More std_daq_sim options for every row's stream (from this script's command line, e.g. ``--gso``)."""
GSO_HELP = "the simulator sends UDP segmentation offload messages (about half its CPU; the same datagrams)"


class Server:
    """A std_daq_server subprocess for one config, writing into ``folder``."""

    def __init__(self, folder: Path, config: dict, compression: str, threads: int):
        self.folder, self.config = folder, config
        self.config_file = folder / "config.json"
        self.config_file.write_text(json.dumps(config))
        self.log_file = folder / "server.log"
        self.url = f"http://127.0.0.1:{free_port()}"
        cmd = [sys.executable, "-m", "daq_server.serve.cli", "--config", str(self.config_file), "--port",
               self.url.rsplit(":", 1)[1], "--data-root", str(folder), "--udp-address", "127.0.0.1",
               "--compression", compression, *(["--compression-threads", str(threads)] if threads else []),
               *SERVER_OPTIONS]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=open(self.log_file, "w"), stderr=subprocess.STDOUT)
        # a stop closes the file first: with many lossy images the per-image pixel mask takes seconds
        self.client = StdDaqClient(self.url, timeout=300)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.client.get_status()
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log_file.read_text()[-500:]}")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        return self.log_file.read_text()


def start_sim(server: Server, rate: float, content: str) -> subprocess.Popen:
    """std_daq_sim for ``server``'s config at ``rate`` (0: flat out), ``content`` of seed 1 and SIM_OPTIONS, until
    :func:`stop_sim`."""
    return subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "--config", str(server.config_file), "--rate", str(rate), "--n-images", "0",
         "--content", content, "--seed", "1", *SIM_OPTIONS], stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # stopped with Ctrl-C, even from a job
    )  # fmt: skip


def stop_sim(sim: subprocess.Popen) -> dict:
    """Stop the simulator as Ctrl-C does; what it printed: its counters (``frames_sent`` …)."""
    sim.send_signal(signal.SIGINT)
    return json.loads(sim.communicate(timeout=60)[0])


def photon_config(folder: Path) -> dict:
    """One Jungfrau module converted to photons with the simulator's gain maps (seed 1)."""
    config = configs.jungfrau_config(1, free_port(socket.SOCK_DGRAM, 1), "bench")
    (maps,) = write_gain_maps(folder / "gains.bin", config, seed=1)
    wavelength = 12.398419843320026 / 12.4  # the beamline default: 12.4 keV photons
    extra = {
        "jungfrau_gain_maps": str(maps),
        "jungfrau_conversion": "photons",
        "nexus": {"incident_wavelength": wavelength},
    }
    return config | extra


def results_config(folder: Path) -> dict:
    """One Eiger module (16 bit) with every per-image result on, the geometry as beamline defaults."""
    config = configs.eiger_config(16, free_port(socket.SOCK_DGRAM, 4), "bench")
    rois = {f"roi{k}": [200 * k, 100, 200 * k + 200, 300] for k in range(4)}
    nexus = {"detector_distance": 80.0, "incident_wavelength": 1.0, "beam_center_x": 250.5, "beam_center_y": 500.0}
    results = {"radial_profile": {"bins": 200, "unit": "q"}, "rois": rois, "spots": {"threshold": 5, "min_pixels": 2}}
    return config | {"nexus": nexus, "results": results}


def take_pedestal(server: Server) -> None:
    """A pedestal acquisition from the simulator's pedestal mode (before a converting row)."""
    request = {"output_file": str(server.folder / "pedestal.h5"), "n_images": PEDESTAL_CYCLE, "pedestal": True}
    server.client.start_writer_async(request)
    subprocess.run([sys.executable, "-m", "sim.cli", "--config", str(server.config_file), "--rate", "500",
                    "--n-images", str(PEDESTAL_CYCLE + 50), "--content", "jungfrau-pedestal", "--seed", "1"],
                   check=True, stdout=subprocess.DEVNULL, timeout=120)  # fmt: skip
    status = server.client.get_status()
    if status["state"] != "READY" or not status.get("pedestal"):
        raise RuntimeError(f"the pedestal failed: {status['acquisition']['message']}")


def run_row(label: str, config: dict, content: str, folder: Path, seconds: float, rate: float, compression: str,
            threads: int, write: bool = True, competitor: list[str] | None = None, prepare=None) -> dict:  # fmt: skip
    """One row: server + simulator for ``seconds`` (+ an optional competing process; ``prepare(server)``
    runs before the acquisition)."""
    work = Path(tempfile.mkdtemp(prefix="row_", dir=folder))
    server = Server(work, config, compression, threads)
    if prepare is not None:
        prepare(server)
    output = work / "sustained.h5"
    image_bytes = config["image_pixel_width"] * config["image_pixel_height"] * max(config["bit_depth"], 8) // 8
    if write:  # more than the sender can send: the acquisition is stopped when the sender stops
        server.client.start_writer_async({"output_file": str(output), "n_images": int(seconds * 20000)})
    other = subprocess.Popen(competitor, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if competitor else None
    sim = start_sim(server, rate, content)
    received, t0 = [], time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        received.append(server.client.get_stats()["detector"]["bytes_per_second"])
    sent = stop_sim(sim)
    send_s = time.monotonic() - t0
    if other is not None:
        other.kill()
        other.wait()
    written, stored, drain_s, without = 0, 0, 0.0, None
    if write:
        t1 = time.monotonic()
        while time.monotonic() - t1 < 600:  # until the writer caught up with what was received
            done = server.client.get_status()["acquisition"]["stats"]["n_write_completed"]
            time.sleep(1.0)
            if server.client.get_status()["acquisition"]["stats"]["n_write_completed"] == done:
                break
        server.client.stop_writer()
        drain_s = time.monotonic() - t1
        with h5py.File(output, "r") as f:
            written = len(f["entry/data/image_id"])
            stored = f["entry/data/data"].id.get_storage_size()
            without = f["entry"].attrs.get("images_without_results")  # with results configured
    log = server.stop()
    per_core = re.findall(r"([\d.]+) GB/s per core", log)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "case": label,
        "compression": compression if write else "-",
        "offered": "max" if rate == 0 else f"{rate:g} Hz",
        "seconds": send_s,
        "sent": sent["frames_sent"],
        "lost": sent["frames_sent"] - written if write else None,
        "ratio": written * image_bytes / stored if stored else None,
        "received": float(np.mean(received[1:] or received)) / 1e9,
        "to_disk": stored / (send_s + drain_s) / 1e9 if write else None,
        "per_core": float(per_core[-1]) if per_core else None,
        "without_results": None if without is None else int(without),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="sending time per row (default 60)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the files go")
    parser.add_argument("--compression-threads", type=int, default=0, help="server option (default: its own)")
    parser.add_argument("--writer-processes", type=int, help="server option (default: its own, 1)")
    parser.add_argument("--writer-nice", type=int,
                        help="server option (default: its own, -10, ahead of the simulator; 0: its equal)")  # fmt: skip
    parser.add_argument("--gso", action="store_true", help=GSO_HELP)
    parser.add_argument("--rows", default="all",
                        help="comma-separated row names (jf1,jfph,jf4,eiger,eigerres,rx4,busy) or all")  # fmt: skip
    args = parser.parse_args()
    if args.writer_processes is not None:
        SERVER_OPTIONS.extend(["--writer-processes", str(args.writer_processes)])
    if args.gso:
        SIM_OPTIONS.append("--gso")
    if args.writer_nice is not None:
        SERVER_OPTIONS.extend(["--writer-nice", str(args.writer_nice)])
    folder = Path(tempfile.mkdtemp(prefix="std_daq_sustained_", dir=args.dir))
    every = {"jf1", "jfph", "jf4", "eiger", "eigerres", "rx4", "busy"}
    wanted = every if args.rows == "all" else set(args.rows.split(","))
    ceilings = {JUNGFRAU_PACKET: ceiling(JUNGFRAU_PACKET, 2), EIGER_PACKET: ceiling(EIGER_PACKET, 2)}
    disk = disk_rate(folder, int(min(4 << 30, max(256 << 20, args.seconds * 50e6))))
    s, threads, rows = args.seconds, args.compression_threads, []
    udp = socket.SOCK_DGRAM
    cases = [
        ("jf1", "1 x Jungfrau", lambda: configs.jungfrau_config(1, free_port(udp, 1)), "jungfrau-raw", JUNGFRAU_PACKET),
        ("jf4", "4 x Jungfrau", lambda: configs.jungfrau_config(4, free_port(udp, 4)), "jungfrau-raw", JUNGFRAU_PACKET),
        ("eiger", "Eiger 16 bit", lambda: configs.eiger_config(16, free_port(udp, 4)), "photons", EIGER_PACKET),
    ]
    for key, label, make, content, packet in cases:
        if key in wanted:
            for compression in ("none", "bitshuffle-lz4"):
                row = run_row(label, make(), content, folder, s, 0, compression, threads)
                rows.append(row | {"ceiling": ceilings[packet]})
        if key == "jf1" and "jfph" in wanted:  # beside the raw rows: the same stream converted to photons
            row = run_row("1 x Jungfrau, photons", photon_config(folder), "jungfrau-raw", folder, s, 0,
                          "bitshuffle-lz4", threads, prepare=take_pedestal)  # fmt: skip
            rows.append(row | {"ceiling": ceilings[JUNGFRAU_PACKET]})
    if "eigerres" in wanted:  # beside the Eiger rows: the compressed one with every per-image result, offered
        # the rate the compressed row reached without results (flat out if that row did not run)
        plain = [r for r in rows if r["case"] == "Eiger 16 bit" and r["compression"] == "bitshuffle-lz4"]
        rate = round((plain[-1]["sent"] - plain[-1]["lost"]) / plain[-1]["seconds"]) if plain else 0  # as written
        row = run_row("Eiger 16 bit, results", results_config(folder), "photons", folder, s, rate, "bitshuffle-lz4",
                      threads)  # fmt: skip
        rows.append(row | {"ceiling": ceilings[EIGER_PACKET]})
    if "rx4" in wanted:
        config = configs.jungfrau_config(4, free_port(socket.SOCK_DGRAM, 4), "bench")
        row = run_row("4 x Jungfrau, receiver only", config, "jungfrau-raw", folder, s, 0, "none", threads, False)
        rows.append(row | {"ceiling": ceilings[JUNGFRAU_PACKET]})
    if "busy" in wanted:
        dd = ["dd", "if=/dev/zero", f"of={folder / 'dd.bin'}", "bs=1M", f"count={int(s * 400)}", "conv=fdatasync"]
        config = configs.jungfrau_config(1, free_port(socket.SOCK_DGRAM, 1), "bench")
        row = run_row("1 x Jungfrau + dd fdatasync", config, "jungfrau-raw", folder, s, 1000, "none", threads,
                      competitor=dd)  # fmt: skip
        rows.append(row | {"ceiling": ceilings[JUNGFRAU_PACKET]})
        # the same busy disk under a stream that fits it: compressed photon-counting images, flat out
        config = configs.eiger_config(16, free_port(socket.SOCK_DGRAM, 4), "bench")
        row = run_row("Eiger 16 bit + dd fdatasync", config, "photons", folder, s, 0, "bitshuffle-lz4", threads,
                      competitor=dd)  # fmt: skip
        rows.append(row | {"ceiling": ceilings[EIGER_PACKET]})
        (folder / "dd.bin").unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    print_table(rows, disk, s, ceilings)


def print_table(rows: list[dict], disk: float, seconds: float, ceilings: dict[int, float]) -> None:
    print(f"machine: {os.cpu_count()} cores; {seconds:g} s per row; disk (sequential write + fsync) {disk:.2f} GB/s; "
          "loopback ceiling " + ", ".join(f"{v:.2f} GB/s at {k} B" for k, v in ceilings.items()))  # fmt: skip
    header = (f"{'case':<30} {'compression':>14} {'offered':>8} {'sent':>7} {'lost':>6} {'ratio':>6} "
              f"{'recv GB/s':>9} {'% ceil':>6} {'disk GB/s':>9} {'comp GB/s/core':>14} {'no results':>10}")  # fmt: skip
    print(header)
    print("-" * len(header))

    def show(value, fmt):
        return "" if value is None else format(value, fmt)

    for r in rows:
        print(f"{r['case']:<30} {r['compression']:>14} {r['offered']:>8} {r['sent']:>7} {show(r['lost'], 'd'):>6} "
              f"{show(r['ratio'], '.1f'):>6} {r['received']:9.2f} {100 * r['received'] / r['ceiling']:6.0f} "
              f"{show(r['to_disk'], '.2f'):>9} {show(r['per_core'], '.2f'):>14} "
              f"{show(r['without_results'], 'd'):>10}")  # fmt: skip
    print("(ceiling per datagram size: a bare sendmmsg -> recvmmsg pair on loopback, best of 3, same run;")
    print(" recv GB/s: the server's detector bytes/s, averaged; disk GB/s: bytes stored / time to write them;")
    print(" no results: images written without their per-image results, the DAQ behind, docs/results.rst)")


if __name__ == "__main__":
    main()
