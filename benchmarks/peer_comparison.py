"""The same Jungfrau stream into our receiver and into slsDetectorPackage's ``slsReceiver``.

    python benchmarks/peer_comparison.py [--frames 2000] [--rate 0]

Our side: ``std_daq_server`` writing one acquisition of ``--frames`` images (uncompressed) while
``std_daq_sim`` sends them (``jungfrau-raw`` content). The peer: ``slsReceiver``, configured
through ``sls_detector_put`` with a virtual Jungfrau detector server
(``jungfrauDetectorServer_virtual``) for its control side; the packets come from the same
simulator (the same slsDetectorPackage v2 packet header). Both rows report frames lost and the
receiving process's CPU seconds per 1,000 frames (utime + stime from /proc). When the peer's
programs are not on PATH the peer row is skipped with a note. Nothing here asserts a timing.
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
import time
from pathlib import Path

from sim import configs
from std_daq_client import StdDaqClient

PEER_PROGRAMS = ("slsReceiver", "sls_detector_put", "sls_detector_get", "jungfrauDetectorServer_virtual")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send(config_file: Path, frames: int, rate: float) -> dict:
    run = subprocess.run(
        [sys.executable, "-m", "sim.cli", "--config", str(config_file), "--rate", str(rate), "--n-images", str(frames),
         "--content", "jungfrau-raw"], capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(run.stdout)


def ours(folder: Path, frames: int, rate: float) -> dict:
    config_file = folder / "config.json"
    config_file.write_text(json.dumps(configs.jungfrau_config(1, free_port(socket.SOCK_DGRAM), "peer")))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daq_server.serve.cli", "--config", str(config_file), "--port", str(port), "--data-root",
         str(folder), "--udp-address", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = StdDaqClient(f"http://127.0.0.1:{port}")
    try:
        for _ in range(300):
            try:
                client.get_status()
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        client.start_writer_async({"output_file": str(folder / "ours.h5"), "n_images": frames})
        cpu0 = cpu_seconds(server.pid)
        send(config_file, frames, rate)
        for _ in range(600):  # the writer catches up, or the acquisition is stopped after a minute
            if client.get_status()["state"] != "WRITING":
                break
            time.sleep(0.1)
        status = client.stop_writer()
        cpu = cpu_seconds(server.pid) - cpu0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    written = status["acquisition"]["stats"]["n_write_completed"]
    return {"receiver": "std-daq (receive + write)", "lost": frames - written, "cpu_per_1000": 1000 * cpu / frames}


def peer(folder: Path, frames: int, rate: float) -> dict:
    """slsReceiver fed by the same simulator; RuntimeError with the reason if it cannot run."""
    control, rx_tcp, udp = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    procs = [
        subprocess.Popen(["jungfrauDetectorServer_virtual", "-p", str(control)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.STDOUT, cwd=folder),
        subprocess.Popen(["slsReceiver", "-t", str(rx_tcp)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT),
    ]  # fmt: skip

    def put(*words: str) -> str:
        run = subprocess.run(["sls_detector_put", *words], capture_output=True, text=True, timeout=30)
        if run.returncode:
            raise RuntimeError(f"sls_detector_put {' '.join(words)}: {(run.stderr or run.stdout).strip()[-200:]}")
        return run.stdout

    def get(word: str) -> int:
        out = subprocess.run(["sls_detector_get", word], capture_output=True, text=True, timeout=30).stdout
        return int(out.split()[-1].strip("[]"))

    try:
        time.sleep(2)
        put("hostname", f"localhost:{control}")
        put("rx_hostname", f"localhost:{rx_tcp}")
        put("udp_dstip", "127.0.0.1")
        put("udp_dstport", str(udp))
        put("fwrite", "1")
        put("fpath", str(folder))
        put("frames", str(frames))
        put("rx_start")
        config_file = folder / "peer.json"
        config_file.write_text(json.dumps(configs.jungfrau_config(1, udp, "peer")))
        cpu0 = cpu_seconds(procs[1].pid)
        send(config_file, frames, rate)
        time.sleep(2)
        caught = get("rx_framescaught")
        cpu = cpu_seconds(procs[1].pid) - cpu0
        put("rx_stop")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    return {"receiver": "slsReceiver (receive + write)", "lost": frames - caught, "cpu_per_1000": 1000 * cpu / frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000, help="frames of one Jungfrau module (default 2000)")
    parser.add_argument("--rate", type=float, default=0, help="frames per second (default 0: as fast as possible)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="std_daq_peer_"))
    rows, notes = [ours(folder, args.frames, args.rate)], []
    missing = [name for name in PEER_PROGRAMS if shutil.which(name) is None]
    if missing:
        notes.append(f"peer skipped: {', '.join(missing)} not on PATH (slsDetectorPackage provides them)")
    else:
        try:
            rows.append(peer(folder, args.frames, args.rate))
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as error:
            notes.append(f"peer skipped: {error}")
    shutil.rmtree(folder, ignore_errors=True)
    offered = "max" if args.rate == 0 else f"{args.rate:g} Hz"
    print(f"{args.frames} Jungfrau frames ({offered}), {os.cpu_count()} cores")
    print(f"{'receiver':<32} {'frames lost':>11} {'CPU s / 1000 frames':>20}")
    for r in rows:
        print(f"{r['receiver']:<32} {r['lost']:>11} {r['cpu_per_1000']:>20.2f}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
