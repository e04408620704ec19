"""The Stream2 image stream's rate with a consumer decoding it, beside the receive rate of the same run.

    python benchmarks/streams.py                  # 20 s per row
    python benchmarks/streams.py --seconds 5      # a quick look

Each row starts ``std_daq_server`` (with ``--stream-address``) and ``std_daq_sim`` (one Eiger module, 16 bit,
``photons`` content) as separate processes on loopback, one acquisition writing to ``--dir``, and a consumer
process: a PULL socket decoding every message with cbor2 and (compressed rows) DECTRIS's
``dectris-compression``, as an analysis process would (at nice 19: on this machine it competes with the DAQ for
the CPU, at a beamline it runs on other hosts). Per compression: the rate the DAQ reaches without a stream
(images written per second, the simulator flat out), then the stream on at that rate, with the consumer and
with no consumer at all (every stream message dropped), and the stream with every per-image result on (the
sustained benchmark's ``eigerres`` settings: a 200-bin radial profile, four ROI sums, a spot count;
docs/results.rst), with no consumer and with the consumer. ``cpu_budget.py`` shows what each costs per image.
Prints one table beside the loopback ceiling of the same run; nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import sustained

from sim import configs

EIGER_PACKET = sustained.EIGER_PACKET


def consume(address: str) -> None:
    """The consumer process: decode messages until an ``end``; print what it took as JSON."""
    import cbor2
    import zmq
    from dectris.compression import decompress

    typed = {64: "u1", 69: "<u2", 70: "<u4", 85: "<f4", 86: "<f8"}

    def hook(*args):
        tag = args[0] if isinstance(args[0], cbor2.CBORTag) else args[1]
        if tag.tag == 56500:
            algorithm, elem_size, data = tag.value
            return decompress(data, algorithm, elem_size=elem_size)
        if tag.tag in typed:
            return np.frombuffer(tag.value, typed[tag.tag])
        if tag.tag == 40:
            return tag.value[1].reshape(tag.value[0])
        return tag

    os.nice(19)  # on this machine it competes with the DAQ for the CPU; on a beamline it runs elsewhere
    pull = zmq.Context().socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 32)
    pull.connect(address)
    print("ready", flush=True)
    images = image_bytes = wire_bytes = 0
    first = last = None
    while True:
        raw = pull.recv()
        message = cbor2.loads(raw, tag_hook=hook)
        if message["type"] == "image":
            first = first or time.monotonic()
            last = time.monotonic()
            images += 1
            image_bytes += message["data"]["default"].nbytes
            wire_bytes += len(raw)
        elif message["type"] == "end":
            break
    seconds = (last - first) if images > 1 else 0.0
    print(json.dumps({"images": images, "image_bytes": image_bytes, "wire_bytes": wire_bytes, "seconds": seconds}))


def sample_rate(client) -> float:
    """The detector's bytes per second, a second from now."""
    time.sleep(1.0)
    return client.get_stats()["detector"]["bytes_per_second"]


def wait_written(client, quiet_s: float = 1.0, limit_s: float = 600.0) -> None:
    """Until the writer has caught up with what was received (nothing more written for ``quiet_s``)."""
    last, deadline = -1, time.monotonic() + limit_s
    while time.monotonic() < deadline:
        done = client.get_status()["acquisition"]["stats"]["n_write_completed"]
        if done == last:
            return
        last = done
        time.sleep(quiet_s)


def row(label: str, folder: Path, seconds: float, compression: str, stream: bool, consumer: bool, rate: float,
        results: bool = False) -> dict:  # fmt: skip
    """One row: server (+ stream, + every per-image result) + simulator at ``rate`` (0: flat out) for ``seconds``
    (+ the consumer process)."""
    work = Path(tempfile.mkdtemp(prefix="row_", dir=folder))
    if results:  # the sustained benchmark's eigerres settings: radial profile, four ROIs, spot count
        config = sustained.results_config(work)
    else:
        config = configs.eiger_config(16, sustained.free_port(socket.SOCK_DGRAM, 4), "bench")
    address = f"tcp://127.0.0.1:{sustained.free_port()}"
    sustained.SERVER_OPTIONS[:] = ["--stream-address", address] if stream else []
    server = sustained.Server(work, config, compression, 0)
    reader = None
    if consumer:
        reader = subprocess.Popen([sys.executable, __file__, "--consume", address], stdout=subprocess.PIPE, text=True)
        reader.stdout.readline()  # connected
        time.sleep(0.3)
    output = work / "stream.h5"
    image_bytes = config["image_pixel_width"] * config["image_pixel_height"] * 2
    server.client.start_writer_async({"output_file": str(output), "n_images": int(seconds * 20000)})
    sim = sustained.start_sim(server, rate, "photons")
    t0 = time.monotonic()
    received = [sample_rate(server.client) for _ in range(max(1, round(seconds)))]
    sent = sustained.stop_sim(sim)["frames_sent"]
    send_s = time.monotonic() - t0
    wait_written(server.client)
    counters = server.client.stop_writer()["acquisition"].get("counters", {})  # file closed, end message queued
    with h5py.File(output, "r") as f:
        written = len(f["entry/data/image_id"])
        dropped = int(f["entry"].attrs.get("stream_images_dropped", 0))
        without = int(f["entry"].attrs["images_without_results"]) if results else None
    took = json.loads(reader.communicate(timeout=120)[0].splitlines()[-1]) if reader is not None else None
    server.stop()
    shutil.rmtree(work, ignore_errors=True)
    result = {"case": label, "compression": compression, "sent": sent, "offered": f"{rate:.0f} Hz" if rate else "max",
              "rate": sent / send_s, "lost": sent - written, "written": written,
              "received": float(np.mean(received[1:] or received)) / 1e9, "dropped": dropped if stream else None,
              "rx_dropped": counters.get("images_dropped", 0), "incomplete": counters.get("images_incomplete", 0),
              "without_results": without,
              "stream_images": None, "stream_gbs": None, "wire_gbs": None, "images_s": None}  # fmt: skip
    if took and took["seconds"] > 0:
        result |= {"stream_images": took["images"], "images_s": took["images"] / took["seconds"],
                   "stream_gbs": took["image_bytes"] / took["seconds"] / 1e9,
                   "wire_gbs": took["wire_bytes"] / took["seconds"] / 1e9}  # fmt: skip
    result["image_bytes"] = image_bytes
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="sending time per row (default 20)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the files go")
    parser.add_argument("--compression", default="bitshuffle-lz4,none", help="the rows' compressions (default both)")
    parser.add_argument("--gso", action="store_true", help=sustained.GSO_HELP)
    parser.add_argument("--consume", help=argparse.SUPPRESS)  # the consumer process
    args = parser.parse_args()
    if args.consume:
        consume(args.consume)
        return
    if args.gso:
        sustained.SIM_OPTIONS.append("--gso")
    folder = Path(tempfile.mkdtemp(prefix="std_daq_streams_", dir=args.dir))
    ceiling = sustained.ceiling(EIGER_PACKET, 2)
    s = args.seconds
    rows = []
    for compression in args.compression.split(","):
        # the rate the DAQ reaches without a stream, then the stream on at that rate
        plain = row("Eiger 16 bit, no stream", folder, s, compression, stream=False, consumer=False, rate=0)
        rate = plain["rate"] * plain["written"] / max(plain["sent"], 1)  # the rate it wrote (flat out it may lose)
        rows += [
            plain,
            row("Eiger 16 bit, stream + consumer", folder, s, compression, stream=True, consumer=True, rate=rate),
            row("Eiger 16 bit, stream, no consumer", folder, s, compression, stream=True, consumer=False, rate=rate),
            row("Eiger 16 bit, stream + results, no consumer", folder, s, compression, stream=True, consumer=False,
                rate=rate, results=True),
            row("Eiger 16 bit, stream + results + consumer", folder, s, compression, stream=True, consumer=True,
                rate=rate, results=True),
        ]  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)
    print(f"{s:g} s per row, Eiger 16 bit photons; loopback ceiling {ceiling:.2f} GB/s at {EIGER_PACKET} B")
    columns = [  # title, width (negative: left-aligned), format, key
        ("case", -44, "", "case"), ("compression", 14, "", "compression"), ("offered", 8, "", "offered"),
        ("sent", 7, "d", "sent"), ("lost", 5, "d", "lost"), ("ring", 5, "d", "rx_dropped"),
        ("recv GB/s", 9, ".2f", "received"), ("no results", 10, "d", "without_results"),
        ("streamed", 8, "d", "stream_images"), ("dropped", 7, "d", "dropped"), ("images/s", 8, ".0f", "images_s"),
        ("stream GB/s", 11, ".2f", "stream_gbs"), ("wire GB/s", 9, ".3f", "wire_gbs"),
    ]  # fmt: skip

    def cells(values: list[str]) -> str:
        return " ".join(f"{v:<{-w}}" if w < 0 else f"{v:>{w}}" for v, (_, w, _, _) in zip(values, columns, strict=True))

    print(cells([title for title, _, _, _ in columns]))
    for r in rows:
        print(cells(["" if r[key] is None else format(r[key], fmt) for _, _, fmt, key in columns]))
    print("(lost: images sent by the simulator that the file lacks; ring: images the receiver dropped for want of a")
    print(" free ring slot (the writer behind); no results: images written without their results (late, the DAQ")
    print(" behind, docs/results.rst); streamed/dropped: images the consumer decoded / the stream dropped;")
    print(" stream GB/s: decoded image bytes per second at the consumer, wire GB/s: CBOR bytes per second)")


if __name__ == "__main__":
    main()
