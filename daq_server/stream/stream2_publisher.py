"""The server's side of the Stream2 image stream: one ZeroMQ PUSH socket at ``--stream-address``.

Consumers connect PULL sockets; ZeroMQ hands each message to one of them, round-robin, so N consumers
share the images (fan-out over processes and hosts). The writers (:mod:`daq_server.stream.stream2_feed`)
send their image messages to this publisher's feed, a ROUTER socket on an ``ipc://`` address; one thread
here forwards them to the PUSH socket **without blocking**: when no consumer is connected or all of them
are :data:`~daq_server.stream.stream2_feed.QUEUE` messages behind, the message is dropped and counted for
its series and writer. Receiving and writing never wait for a consumer. The same thread keeps the gate
(:mod:`daq_server.stream.stream_gate`) open only while a consumer can take a message, so that the writers
drop images nobody can take before building their messages (they count those themselves).

``start`` and ``end`` come from the writer driver through a bounded Python queue; the same thread sends
them, waiting up to :data:`CONTROL_TIMEOUT_S` for a consumer to take them, and counts those it lost.
A ``start`` is always sent before the series' images (the driver queues it before any image is written;
the thread takes queued ``start``/``end`` messages before each image), the ``end`` after the writers'
``done`` marks, hence after all of the series' images.
"""

from __future__ import annotations

import logging
import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass, field

import zmq

from daq_server.stream.stream2_feed import COUNTS, HEADER, QUEUE
from daq_server.stream.stream_gate import StreamGate

_log = logging.getLogger("daq_server.stream.stream2_publisher")
CONTROL_TIMEOUT_S = 1.0
"""How long a ``start`` or ``end`` message waits for a consumer before it counts as lost."""
KEPT_SERIES = 16
"""Series whose counts are kept (the running one and the last few)."""


@dataclass
class SeriesCounts:
    """What the stream did with one series."""

    forwarded: int = 0
    dropped: dict[int, int] = field(default_factory=dict)
    """Images dropped here, per writer (part index)."""
    start_sent: bool | None = None
    end_sent: bool | None = None


class Stream2Publisher:
    """The PUSH socket bound at ``address`` (e.g. ``tcp://0.0.0.0:31001``) and its forwarding thread."""

    def __init__(self, address: str, queue_length: int = QUEUE):
        self.address = address
        context = zmq.Context.instance()
        self._push = context.socket(zmq.PUSH)
        self._push.setsockopt(zmq.SNDHWM, queue_length)
        self._push.setsockopt(zmq.LINGER, 0)
        self._feed = context.socket(zmq.ROUTER)
        self._feed.setsockopt(zmq.RCVHWM, queue_length)
        self._feed.setsockopt(zmq.LINGER, 0)
        self._folder = tempfile.mkdtemp(prefix="std_daq_stream.")
        try:
            self._push.bind(address)
            self.feed_address = f"ipc://{self._folder}/feed"
            self._feed.bind(self.feed_address)
        except zmq.ZMQError as error:
            self._close_sockets()
            raise ValueError(f"cannot bind the stream at {address}: {error}") from None
        self.gate = StreamGate(f"{self._folder}/gate", create=True)
        self._control: queue.Queue = queue.Queue(maxsize=64)
        self._series: dict[int, SeriesCounts] = {}
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="stream2-publisher", daemon=True)
        self._thread.start()

    # ---- the writer driver's side ---------------------------------------------------------------
    def begin(self, series_id: int, start: bytes) -> None:
        """Queue the ``start`` message of a new series (before any of its images is written)."""
        with self._lock:
            self._series[series_id] = SeriesCounts()
            for old in list(self._series)[:-KEPT_SERIES]:
                del self._series[old]
        self._put(("start", series_id, start))

    def end(self, series_id: int, end: bytes) -> None:
        """Queue the ``end`` message (after the writers' ``done`` marks were answered)."""
        self._put(("end", series_id, end))

    def counts(self, series_id: int) -> SeriesCounts:
        """A copy of what the stream did with ``series_id`` so far."""
        with self._lock:
            counts = self._series.get(series_id, SeriesCounts())
            return SeriesCounts(counts.forwarded, dict(counts.dropped), counts.start_sent, counts.end_sent)

    def _put(self, item: tuple) -> None:
        try:
            self._control.put(item, timeout=CONTROL_TIMEOUT_S)
        except queue.Full:
            _log.warning("the stream's control queue is full: the %s message of series %d is lost", *item[:2])

    def close(self) -> None:
        """Send what is queued (waiting at most the control timeout each), stop the thread, unbind."""
        self._running = False
        self._thread.join(timeout=10)
        self._close_sockets()
        self.gate.close()

    def _close_sockets(self) -> None:
        self._push.close(linger=0)
        self._feed.close(linger=0)
        shutil.rmtree(self._folder, ignore_errors=True)

    # ---- the thread ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._feed, zmq.POLLIN)
        while self._running or not self._control.empty():
            self._take_control()
            self.gate.set_open(bool(self._push.get(zmq.EVENTS) & zmq.POLLOUT))
            if not poller.poll(20):
                continue
            for _ in range(QUEUE):
                try:
                    frames = self._feed.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._take_control()
                self._handle(frames)

    def _take_control(self) -> None:
        while True:
            try:
                kind, series_id, message = self._control.get_nowait()
            except queue.Empty:
                return
            sent = self._push.poll(int(CONTROL_TIMEOUT_S * 1000), zmq.POLLOUT) != 0
            if sent:
                try:
                    self._push.send(message, flags=zmq.NOBLOCK)
                except zmq.Again:
                    sent = False
            if not sent:
                _log.warning("no stream consumer took the %s message of series %d in %g s", kind, series_id,
                             CONTROL_TIMEOUT_S)  # fmt: skip
            with self._lock:
                counts = self._series.setdefault(series_id, SeriesCounts())
                if kind == "start":
                    counts.start_sent = sent
                else:
                    counts.end_sent = sent

    def _handle(self, frames: list) -> None:
        identity, kind, header = frames[0], frames[1].bytes, frames[2].bytes
        series_id, part = HEADER.unpack(header)
        with self._lock:
            counts = self._series.setdefault(series_id, SeriesCounts())
        if kind == b"image":
            try:
                self._push.send(frames[3], flags=zmq.NOBLOCK, copy=False)
                forwarded = True
            except zmq.Again:
                forwarded = False
                self.gate.set_open(False)
            with self._lock:
                if forwarded:
                    counts.forwarded += 1
                else:
                    counts.dropped[part] = counts.dropped.get(part, 0) + 1
        elif kind == b"done":
            with self._lock:
                dropped = counts.dropped.get(part, 0)
            self._feed.send_multipart([identity, COUNTS.pack(counts.forwarded, dropped)], flags=zmq.NOBLOCK)
