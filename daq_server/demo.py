"""std_daq_demo: the whole chain on this machine, no hardware needed.

Starts std_daq_server and a simulated 2-module Jungfrau (std_daq_sim) as separate processes, acquires
--n-images images (default 100) with the Python client, and prints the status, the file written, its
shape and a checksum read back with h5py. Without --workdir everything goes to a new temp folder that is
removed at the end (--keep keeps it); with --workdir the files stay there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from sim.configs import jungfrau_config
from std_daq_client import StdDaqClient


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(client: StdDaqClient, server: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit("the server did not start; see its output above")
        try:
            client.get_status()
            return
        except RuntimeError:
            time.sleep(0.1)
    sys.exit("the server did not answer in time")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="std_daq_demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-images", type=int, default=100, help="images to acquire (default 100)")
    parser.add_argument("--rate", type=float, default=100.0, help="simulated detector images per second")
    parser.add_argument("--workdir", type=Path, help="where config and data go, kept (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (with --workdir it is always kept)")
    args = parser.parse_args(argv)
    if args.n_images < 1:
        parser.error("--n-images must be 1 or more")

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="std_daq_demo_"))).resolve()
    try:
        _run_demo(args, workdir)
    finally:
        _clean_up(workdir, remove=args.workdir is None and not args.keep)


def _clean_up(workdir: Path, remove: bool) -> None:
    """Say where the files are, or remove the temp folder and say so."""
    size = sum(f.stat().st_size for f in workdir.rglob("*") if f.is_file())
    if remove:
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"removed {workdir} ({size / 1e6:.0f} MB; --keep or --workdir DIR keeps the files)")
    else:
        print(f"kept {workdir} ({size / 1e6:.0f} MB)")


def _run_demo(args: argparse.Namespace, workdir: Path) -> None:
    data_root = workdir / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    config = jungfrau_config(2, _free_port(socket.SOCK_DGRAM), name="JF1M-demo")
    config_file = workdir / "jungfrau.json"
    config_file.write_text(json.dumps(config, indent=2))
    port = _free_port(socket.SOCK_STREAM)
    url = f"http://127.0.0.1:{port}"
    print(f"config:    {config_file}\nserver:    {url}\ndata root: {data_root}")

    server_cmd = [sys.executable, "-m", "daq_server.serve.cli", "--config", str(config_file), "--port", str(port),
                  "--data-root", str(data_root), "--udp-address", "127.0.0.1", "--log-level", "WARNING"]  # fmt: skip
    sim_cmd = [sys.executable, "-m", "sim.cli", "--config", str(config_file), "--rate", str(args.rate)]
    server = subprocess.Popen(server_cmd, cwd=workdir)  # never a source tree's copy of the package
    detector = None
    try:
        client = StdDaqClient(url)
        _wait_for_server(client, server)
        detector = subprocess.Popen(sim_cmd, stdout=subprocess.DEVNULL, cwd=workdir)
        output_file = data_root / "demo_run.h5"
        print(f"acquiring {args.n_images} images from the simulated detector at {args.rate:g} Hz ...")
        status = client.start_writer_sync({"output_file": str(output_file), "n_images": args.n_images})
        print("status:", json.dumps(status, indent=2))
        with h5py.File(output_file, "r") as f:
            data = f["entry/data/data"]
            digest = hashlib.sha256()
            for i in range(data.shape[0]):
                digest.update(np.ascontiguousarray(data[i]).tobytes())
            frames = f["entry/data/image_id"][:]
            missing = int(f["entry/data/n_missing_packets"][:].sum())
            print(f"file:      {output_file}")
            print(f"dataset:   /entry/data/data shape={data.shape} dtype={data.dtype}")
            print(f"frames:    {int(frames[0])} … {int(frames[-1])}, missing packets: {missing}")
            print(f"sha256:    {digest.hexdigest()}")
        print("stats:", json.dumps(client.get_stats()))
    finally:
        if detector is not None:
            detector.terminate()
            detector.wait()
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
