"""The writer's side of the Stream2 image stream: each image written goes, as a Stream2 ``image`` message,
to the server's publisher (:mod:`daq_server.stream.stream2_publisher`), without ever waiting for it.

A writer (a writer process, or the server's own) connects a ZeroMQ DEALER socket to the publisher's feed
(an ``ipc://`` address) and sends each image message without blocking. An image is dropped here and counted
when the publisher's gate (:mod:`daq_server.stream.stream_gate`) says no consumer can take it now, before
its message is built, or when the publisher's queue for this writer is full (:data:`QUEUE` messages). At the
end (before the file closes) the writer sends a ``done`` mark after its last image and the publisher answers
with the images of this writer it dropped itself, so that the file records every image the stream lost.

Internal frames (DEALER -> ROUTER): ``[b"image", header, message]`` and ``[b"done", header]``, ``header``
being :data:`HEADER` (series id, part index); the answer to ``done`` is ``[counts]`` (:data:`COUNTS`:
sent, dropped by the publisher).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import zmq

from daq_server.stream.stream2_messages import cbor_value, image_message
from daq_server.stream.stream_gate import StreamGate

QUEUE = 32
"""Messages queued at most on each side of a socket of the stream (a few tens of MB for 1 MB images)."""
HEADER = struct.Struct("<qi")
COUNTS = struct.Struct("<qq")
DONE_TIMEOUT_S = 2.0
"""How long a writer waits for the publisher to take its ``done`` mark and answer."""


@dataclass(frozen=True)
class StreamSpec:
    """What a writer needs to put its images on the stream (part of the write target it is given)."""

    feed_address: str
    """The publisher's feed (``ipc://…``)."""
    series_id: int
    series_unique_id: str
    series_time: float
    """Unix time of the series' start (the ``arm_date``); image times are relative to it."""
    exposure: float = 0.0
    """Seconds of each image's exposure (the request's ``count_time``, 0 when not given)."""
    gate_path: str = ""
    """The publisher's gate file (:mod:`daq_server.stream.stream_gate`); none: every image is sent."""


class Stream2Feed:
    """One writer's images onto the stream: part ``index`` of ``count`` writers (image k of this writer is
    image ``index + k * count`` of the acquisition)."""

    def __init__(self, spec: StreamSpec, shape: tuple[int, int], dtype: str, index: int = 0, count: int = 1):
        self.spec = spec
        self._shape, self._dtype = tuple(shape), np.dtype(dtype)
        self._index, self._count = index, count
        self._k = 0
        self.sent = 0
        self.dropped = 0
        self._header = HEADER.pack(spec.series_id, index)
        self._socket = zmq.Context.instance().socket(zmq.DEALER)
        self._socket.setsockopt(zmq.SNDHWM, QUEUE)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(spec.feed_address)
        self._gate: StreamGate | None = None
        if spec.gate_path:
            try:
                self._gate = StreamGate(spec.gate_path)
            except OSError:  # e.g. the publisher is closing: every image goes to it and is counted there
                pass

    def send(self, frame_number: int, receive_time: float, data, compressed: bool, results: dict | None = None) -> None:
        """The next image of this writer: ``data`` its pixels (an array or buffer), or (``compressed``) the
        bitshuffle+LZ4 chunk written into the file; ``results`` (per-image results) go along when given."""
        image_id = self._index + self._k * self._count
        self._k += 1
        if self._gate is not None and not self._gate.open:  # no consumer can take it: not even built
            self._drop()
            return
        if isinstance(data, np.ndarray):  # in the stream's (little-endian) type, e.g. a big-endian bsread image
            data = np.ascontiguousarray(data, dtype=self._dtype)
        extra = {"results": cbor_value(results)} if results else None
        message = image_message(self.spec.series_id, self.spec.series_unique_id, self.spec.series_time, image_id,
                                frame_number, receive_time, self.spec.exposure,
                                (self._shape, self._dtype, data, compressed), extra)  # fmt: skip
        try:
            self._socket.send_multipart([b"image", self._header, message], flags=zmq.NOBLOCK, copy=False)
            self.sent += 1
        except zmq.Again:
            self._drop()

    def _drop(self) -> None:
        """One image more dropped here, recorded in the gate for the live status."""
        self.dropped += 1
        if self._gate is not None:
            self._gate.record_dropped(self._index, self.spec.series_id, self.dropped)

    def finish(self) -> dict[str, int]:
        """After the last image: the images this writer put on the stream and those the stream dropped
        (here or in the publisher). Without an answer in time every image sent counts as dropped."""
        dropped_there = None
        try:
            if self._socket.poll(int(DONE_TIMEOUT_S * 1000), zmq.POLLOUT):
                self._socket.send_multipart([b"done", self._header], flags=zmq.NOBLOCK)
                if self._socket.poll(int(DONE_TIMEOUT_S * 1000), zmq.POLLIN):
                    _, dropped_there = COUNTS.unpack(self._socket.recv())
        except zmq.ZMQError:
            pass
        finally:
            self._socket.close(linger=0)
            if self._gate is not None:
                self._gate.close()
        dropped = self.dropped + (self.sent if dropped_there is None else dropped_there)
        return {"stream_images_sent": self._k - dropped, "stream_images_dropped": dropped}
