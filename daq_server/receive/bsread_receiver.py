"""Receiver for ``detector_type: bsread``: images from a bsread ZeroMQ stream (pyzmq).

A bsread message is multipart: a JSON main header (``htype`` bsr_m-1.1, ``pulse_id``,
``global_timestamp``, ``hash`` of the data header), a JSON data header (channel names,
types, shapes ``[width, height]``, encoding), then per channel a value part and a timestamp
part. The image channel's value part becomes the image *without a copy* (a numpy view of the
ZeroMQ frame). This class offers the same interface as :class:`daq_server.receive.udp_receiver.Receiver`,
so the writer driver does not know which kind of source it reads.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque

import numpy as np
import zmq

import detectors
from daq_server.receive.image_source import ReceivedImage

_TYPES = {"uint8": 8, "uint16": 16, "uint32": 32}


class BsreadReceiver:
    def __init__(self, config: dict, n_slots: int = 64):
        self.shape = (int(config["image_pixel_height"]), int(config["image_pixel_width"]))
        self.dtype = detectors.stream_dtype(config["detector_type"], int(config["bit_depth"]))
        self.image_bytes = self.shape[0] * self.shape[1] * self.dtype.itemsize
        self.n_slots = n_slots
        self._address = config["bsread_address"]
        self._channel = config.get("bsread_channel")
        self._queue: deque[ReceivedImage] = deque()
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._header_hash: str | None = None
        self._value_part: int | None = None  # index of the image's value part, from the data header
        self._counts = dict.fromkeys(
            ("packets_received", "bytes_received", "packets_foreign", "images_dropped", "images_complete"), 0
        )
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.setsockopt(zmq.RCVHWM, n_slots)
        try:
            self._socket.connect(self._address)
        except zmq.ZMQError as error:
            self._socket.close(0)
            self._context.term()
            raise RuntimeError(f"cannot connect to the bsread stream {self._address}: {error}") from None
        self._thread = threading.Thread(target=self._run, name="bsread-receiver", daemon=True)
        self._thread.start()

    # ---- the receive thread ---------------------------------------------------------------
    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            parts = self._socket.recv_multipart(copy=False)
            self._counts["packets_received"] += 1
            self._counts["bytes_received"] += sum(len(part.buffer) for part in parts)
            image = self._parse(parts)
            if image is None:
                self._counts["packets_foreign"] += 1
                continue
            with self._ready:
                if len(self._queue) >= self.n_slots:
                    self._counts["images_dropped"] += 1  # the writer is behind: drop, count
                    continue
                self._queue.append(image)
                self._counts["images_complete"] += 1
                self._ready.notify()

    def _parse(self, parts: list) -> ReceivedImage | None:
        try:
            main = json.loads(parts[0].bytes)
            if not str(main.get("htype", "")).startswith("bsr_m") or len(parts) < 4:
                return None
            if main.get("hash") != self._header_hash:
                self._read_data_header(json.loads(parts[1].bytes), main.get("hash"))
            if self._value_part is None or self._value_part >= len(parts):
                return None
            data = np.frombuffer(parts[self._value_part].buffer, dtype=self._wire_dtype)
            if data.size != self.shape[0] * self.shape[1]:
                return None
            stamp = main.get("global_timestamp") or {}
            return ReceivedImage(
                slot=-1,
                frame_number=int(main["pulse_id"]),
                n_missing_packets=0,
                detector_timestamp=int(stamp.get("sec", 0)) * 1_000_000_000 + int(stamp.get("ns", 0)),
                receive_time=time.time(),
                data=data.reshape(self.shape),
            )
        except (ValueError, KeyError, TypeError, IndexError):
            return None

    def _read_data_header(self, header: dict, header_hash: str | None) -> None:
        """Find the image channel and check its type and shape against the config."""
        self._header_hash, self._value_part = header_hash, None
        for index, channel in enumerate(header.get("channels", [])):
            shape = channel.get("shape") or []
            wanted = channel.get("name") == self._channel if self._channel else len(shape) == 2
            if not wanted:
                continue
            width_height = [self.shape[1], self.shape[0]]
            if _TYPES.get(channel.get("type")) != self.dtype.itemsize * 8 or list(shape) != width_height:
                return  # not the image this DAQ is configured for
            order = ">" if channel.get("encoding") == "big" else "<"
            self._wire_dtype = self.dtype.newbyteorder(order)
            self._value_part = 2 + 2 * index
            return

    # ---- the Receiver interface -------------------------------------------------------------
    def next_image(self, timeout: float = 0.1) -> ReceivedImage | None:
        with self._ready:
            if not self._queue:
                self._ready.wait(timeout)
            return self._queue.popleft() if self._queue else None

    def release(self, image: ReceivedImage) -> None:
        """Nothing to give back: the image's ZeroMQ frame is freed when the last view goes."""

    def counters(self) -> dict[str, int]:
        counts = dict(self._counts)
        counts["images_incomplete"] = 0
        return counts

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close(0)
        self._context.term()
