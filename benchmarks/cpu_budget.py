"""Where the CPU goes per image, stage by stage, and the rate the machine's cores allow for each setup.

    python benchmarks/cpu_budget.py                    # 20 s per row, every row paced at 400 Hz
    python benchmarks/cpu_budget.py --gso --seconds 10 # the segmented simulator (about half its CPU)

Every row starts ``std_daq_server`` and ``std_daq_sim`` on loopback (as ``sustained.py`` does), paced at
``--rate``, a rate every setup holds on two cores, and reads each thread's CPU time (user + system, from
``/proc/<pid>/task``) over ``--seconds`` of steady writing. The threads are grouped by stage:

* **sim**: the simulator process (on a beamline: the detector, no CPU of ours);
* **receive**: the receiver's threads (``daq-rx-*``), one per module;
* **pipeline**: the native threads of the writer process (``daq-compress``): Jungfrau conversion, per-image
  results, bitshuffle-LZ4;
* **writer**: the rest of the writer process: Python per image (HDF5 chunk writes, metadata, the stream
  messages), ZeroMQ's I/O thread;
* **server**: the rest of the server process: Python (HTTP, image dispatch to the writer, the stream's
  forwarding thread), ZeroMQ's I/O thread.

Each figure is milliseconds of one core per image. ``DAQ`` adds receive, pipeline, writer and server;
``cores/kHz`` is what DAQ + sim need at 1,000 images per second; ``top rate`` is the rate at which they would
use every core of this machine (``os.cpu_count()``): where the sustained rows of the same setup must stop,
whatever the code does, once the simulator shares the cores. Rows: one Eiger module (16 bit, photons,
bitshuffle-LZ4) plain, with every per-image result (the ``eigerres`` settings of ``sustained.py``), with the
Stream2 stream (no consumer: every message dropped at the publisher), with both; one Jungfrau module
converted to photons (a pedestal taken first), compressed. Prints one table; nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import sustained
from cpu_per_gb import TICK, tree

from sim import configs

GROUPS = ("sim", "receive", "pipeline", "writer", "server")


def thread_times(pid: int) -> dict[tuple[int, int], tuple[str, float]]:
    """(pid, tid) -> (thread name, CPU seconds) for every thread of ``pid``'s process tree."""
    times = {}
    for member in tree(pid):
        try:
            tids = os.listdir(f"/proc/{member}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                text = Path(f"/proc/{member}/task/{tid}/stat").read_text()
            except OSError:
                continue
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text.rsplit(")", 1)[1].split()
            times[(member, int(tid))] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return times


def group_of(server_pid: int, pid: int, name: str) -> str:
    """The stage a server thread belongs to (by its process and its name)."""
    if name.startswith("daq-rx"):
        return "receive"
    if name.startswith("daq-compress"):
        return "pipeline"
    return "server" if pid == server_pid else "writer"


def cpu_by_group(before: dict, after: dict, server_pid: int) -> dict[str, float]:
    """CPU seconds per group between two ``thread_times`` of the server tree."""
    spent = dict.fromkeys(GROUPS, 0.0)
    for key, (name, seconds) in after.items():
        spent[group_of(server_pid, key[0], name)] += seconds - before.get(key, (name, 0.0))[1]
    return spent


def measure(label: str, config: dict, content: str, folder: Path, args: argparse.Namespace, stream: bool = False,
            prepare=None) -> dict:  # fmt: skip
    """One row: the server (+ stream) writing what the simulator sends at ``args.rate``; CPU per image per group."""
    work = Path(tempfile.mkdtemp(prefix="row_", dir=folder))
    address = f"tcp://127.0.0.1:{sustained.free_port()}"
    sustained.SERVER_OPTIONS[:] = ["--stream-address", address] if stream else []
    server = sustained.Server(work, config, "bitshuffle-lz4", 0)
    try:
        if prepare is not None:
            prepare(server)
        server.client.start_writer_async({"output_file": str(work / "budget.h5"), "n_images": 10_000_000})
        sim = sustained.start_sim(server, args.rate, content)
        time.sleep(3.0)  # past the start: every thread is up, the writer steady

        def snapshot():
            stats = server.client.get_status()["acquisition"]["stats"]
            return thread_times(server.proc.pid), thread_times(sim.pid), stats["n_write_completed"], time.monotonic()

        daq0, sim0, written0, t0 = snapshot()
        time.sleep(args.seconds)
        daq1, sim1, written1, t1 = snapshot()
        sustained.stop_sim(sim)
        server.client.stop_writer()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    spent = cpu_by_group(daq0, daq1, server.proc.pid)
    spent["sim"] = sum(seconds - sim0.get(key, (name, 0.0))[1] for key, (name, seconds) in sim1.items())
    images = max(written1 - written0, 1)
    per_image = {group: 1000 * seconds / images for group, seconds in spent.items()}  # ms of a core per image
    return {"case": label, "rate": images / (t1 - t0), **per_image}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per row (default 20)")
    parser.add_argument("--rate", type=float, default=400.0, help="the simulator's rate, Hz (default 400)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the files go")
    parser.add_argument("--gso", action="store_true", help=sustained.GSO_HELP)
    args = parser.parse_args()
    if args.gso:
        sustained.SIM_OPTIONS.append("--gso")
    folder = Path(tempfile.mkdtemp(prefix="std_daq_budget_", dir=args.dir))
    udp = socket.SOCK_DGRAM
    rows = [
        measure("Eiger 16 bit", configs.eiger_config(16, sustained.free_port(udp, 4), "bench"), "photons", folder,
                args),
        measure("Eiger 16 bit + results", sustained.results_config(folder), "photons", folder, args),
        measure("Eiger 16 bit + stream", configs.eiger_config(16, sustained.free_port(udp, 4), "bench"), "photons",
                folder, args, stream=True),
        measure("Eiger 16 bit + stream + results", sustained.results_config(folder), "photons", folder, args,
                stream=True),
        measure("1 x Jungfrau, photons", sustained.photon_config(folder), "jungfrau-raw", folder, args,
                prepare=sustained.take_pedestal),
    ]  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)
    cores = os.cpu_count() or 1
    print(f"ms of one core per image, bitshuffle-LZ4 files, {args.seconds:g} s per row at {args.rate:g} Hz"
          f"{' (simulator --gso)' if args.gso else ''}; machine: {cores} cores")  # fmt: skip
    groups = " ".join(f"{g:>8}" for g in GROUPS)
    header = f"{'case':<32} {'Hz':>5} {groups} {'DAQ':>6} {'cores/kHz':>9} {'top rate':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        daq = sum(r[g] for g in GROUPS if g != "sim")
        total = daq + r["sim"]
        print(f"{r['case']:<32} {r['rate']:5.0f} " + " ".join(f"{r[g]:8.3f}" for g in GROUPS)
              + f" {daq:6.3f} {total:9.2f} {1000 * cores / total:6.0f} Hz")  # fmt: skip
    print("(top rate: the rate at which DAQ + sim would take every core; the DAQ alone would reach cores / DAQ)")


if __name__ == "__main__":
    main()
