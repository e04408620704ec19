"""The Stream2 image stream's rate with a consumer decoding it, beside the receive rate of the same run.

    python benchmarks/streams.py                  # 20 s per row
    python benchmarks/streams.py --seconds 5      # a quick look

Each row starts ``std_daq_server`` with ``--stream-address`` and ``std_daq_sim`` (one Eiger module, 16 bit,
``photons`` content, flat out) as separate processes on loopback, one acquisition writing to ``--dir``, and a
consumer process: a PULL socket decoding every message with cbor2 and (compressed rows) DECTRIS's
``dectris-compression``, as an analysis process would. Rows: without and with compression, each with the
consumer; the compressed one also without any consumer (everything dropped, nothing lost in the file), and the
sustained Eiger row without a stream for comparison. Prints one table beside the loopback ceiling of the same
run; nothing asserts.
"""

from __future__ import annotations

import argparse
import json
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
import sustained

from sim import configs

EIGER_PACKET = sustained.EIGER_PACKET


def consume(address: str) -> None:
    """The consumer process: decode messages until an ``end``; print what it took as JSON."""
    import cbor2
    import zmq
    from dectris.compression import decompress

    typed = {64: "u1", 69: "<u2", 70: "<u4", 85: "<f4"}

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


def row(label: str, folder: Path, seconds: float, compression: str, stream: bool, consumer: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="row_", dir=folder))
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
    sim = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "--config", str(server.config_file), "--rate", "0", "--n-images", "0",
         "--content", "photons", "--seed", "1"], stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    received, t0 = [], time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        received.append(server.client.get_stats()["detector"]["bytes_per_second"])
    sim.send_signal(signal.SIGINT)
    sent = json.loads(sim.communicate(timeout=60)[0])["frames_sent"]
    t1 = time.monotonic()
    while time.monotonic() - t1 < 600:  # until the writer caught up with what was received
        done = server.client.get_status()["acquisition"]["stats"]["n_write_completed"]
        time.sleep(1.0)
        if server.client.get_status()["acquisition"]["stats"]["n_write_completed"] == done:
            break
    server.client.stop_writer()  # ends the acquisition: file closed, the stream's end message queued
    with h5py.File(output, "r") as f:
        written = len(f["entry/data/image_id"])
        dropped = int(f["entry"].attrs.get("stream_images_dropped", 0))
    took = json.loads(reader.communicate(timeout=120)[0].splitlines()[-1]) if reader is not None else None
    server.stop()
    shutil.rmtree(work, ignore_errors=True)
    result = {"case": label, "compression": compression, "sent": sent, "lost": sent - written, "written": written,
              "received": float(np.mean(received[1:] or received)) / 1e9, "dropped": dropped if stream else None,
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
    parser.add_argument("--consume", help=argparse.SUPPRESS)  # the consumer process
    args = parser.parse_args()
    if args.consume:
        consume(args.consume)
        return
    folder = Path(tempfile.mkdtemp(prefix="std_daq_streams_", dir=args.dir))
    ceiling = sustained.ceiling(EIGER_PACKET, 2)
    s = args.seconds
    rows = [
        row("Eiger 16 bit, no stream", folder, s, "bitshuffle-lz4", stream=False, consumer=False),
        row("Eiger 16 bit, stream + consumer", folder, s, "bitshuffle-lz4", stream=True, consumer=True),
        row("Eiger 16 bit, stream, no consumer", folder, s, "bitshuffle-lz4", stream=True, consumer=False),
        row("Eiger 16 bit, stream + consumer", folder, s, "none", stream=True, consumer=True),
    ]
    shutil.rmtree(folder, ignore_errors=True)
    print(f"{s:g} s per row, Eiger 16 bit photons flat out; loopback ceiling {ceiling:.2f} GB/s at {EIGER_PACKET} B")
    header = (f"{'case':<34} {'compression':>14} {'sent':>7} {'lost':>5} {'recv GB/s':>9} {'streamed':>8} "
              f"{'dropped':>7} {'images/s':>8} {'stream GB/s':>11} {'wire GB/s':>9}")  # fmt: skip
    print(header)
    print("-" * len(header))

    def show(value, fmt):
        return "" if value is None else format(value, fmt)

    for r in rows:
        print(f"{r['case']:<34} {r['compression']:>14} {r['sent']:>7} {r['lost']:>5} {r['received']:9.2f} "
              f"{show(r['stream_images'], 'd'):>8} {show(r['dropped'], 'd'):>7} {show(r['images_s'], '.0f'):>8} "
              f"{show(r['stream_gbs'], '.2f'):>11} {show(r['wire_gbs'], '.3f'):>9}")  # fmt: skip
    print("(lost: images sent by the simulator that the file lacks; streamed/dropped: images the consumer decoded /")
    print(" the stream dropped; stream GB/s: decoded image bytes per second at the consumer, wire GB/s: CBOR bytes)")


if __name__ == "__main__":
    main()
