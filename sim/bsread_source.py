"""A simulated bsread source: the image of each pulse published on a ZeroMQ PUB socket.

Messages follow PSI's bsread layout: JSON main header (htype bsr_m-1.1, pulse_id,
global_timestamp, md5 hash of the data header), JSON data header (one uint8/16/32 image
channel, shape [width, height]), the image bytes and a 16-byte timestamp (sec, ns).
Pixel p (row-major) of pulse f is ``(p + 101 f)`` masked to bit_depth, like a module 0.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time

import numpy as np
import zmq

import detectors
from sim._sender import ffi, lib

IMAGE_CHANNEL = "SIM:IMAGE"


def bsread_image(frame: int, config: dict) -> np.ndarray:
    """The image the source publishes for pulse ``frame``."""
    shape = (int(config["image_pixel_height"]), int(config["image_pixel_width"]))
    bit_depth = int(config["bit_depth"])
    out = np.empty(shape, dtype=detectors.stream_dtype("bsread", bit_depth))
    lib.sim_module_pixels(frame, 0, bit_depth, out.size, ffi.from_buffer(out))
    return out


def run_bsread_source(
    config: dict, rate_hz: float, n_images: int, first_frame: int, stop: threading.Event, counters: dict
) -> None:
    """Publish until n_images are sent (0: until ``stop`` is set)."""
    bit_depth = int(config["bit_depth"])
    detectors.stream_dtype("bsread", bit_depth)  # ValueError for a depth bsread does not carry
    data_header = json.dumps(
        {
            "htype": "bsr_d-1.1",
            "channels": [
                {
                    "name": config.get("bsread_channel") or IMAGE_CHANNEL,
                    "type": f"uint{bit_depth}",
                    "shape": [int(config["image_pixel_width"]), int(config["image_pixel_height"])],
                    "encoding": "little",
                    "compression": "none",
                }
            ],
        }
    ).encode()
    header_hash = hashlib.md5(data_header).hexdigest()
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    socket.setsockopt(zmq.SNDHWM, 100)
    try:
        socket.bind(config["bsread_address"])
        time.sleep(0.3)  # let subscribers connect before the first pulse
        start = time.monotonic()
        i = 0
        while not stop.is_set() and (n_images == 0 or i < n_images):
            if rate_hz > 0:
                time.sleep(max(0.0, start + i / rate_hz - time.monotonic()))
            pulse_id = first_frame + i
            now = time.time()
            sec, ns = int(now), int((now % 1) * 1e9)
            main = {
                "htype": "bsr_m-1.1",
                "pulse_id": pulse_id,
                "global_timestamp": {"sec": sec, "ns": ns},
                "hash": header_hash,
            }
            image = bsread_image(pulse_id, config)
            socket.send_multipart([json.dumps(main).encode(), data_header, image, struct.pack("<qq", sec, ns)])
            counters["frames_sent"] = counters.get("frames_sent", 0) + 1
            counters["packets_sent"] = counters["frames_sent"]
            counters["bytes_sent"] = counters.get("bytes_sent", 0) + image.nbytes
            i += 1
        time.sleep(0.1)  # let the last messages leave
    finally:
        socket.close(linger=1000)
        context.term()
