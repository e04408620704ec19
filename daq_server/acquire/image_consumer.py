"""The consumer: one thread takes every assembled image from a source and offers it to a list of sinks.

Sinks (the stats counter, the live preview, the acquisition writer) see every image in order.
An image goes back to its source when ``offer`` returned in every sink, unless a sink holds it
(:meth:`ReceivedImage.hold`), then when that sink drops it. While no image comes, each sink's
``idle`` runs about every 0.1 s (a sink with work in flight finishes it there).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from daq_server.receive.image_source import ImageSource, ReceivedImage

_log = logging.getLogger("daq_server.acquire.image_consumer")


class ImageSink(Protocol):
    def offer(self, image: ReceivedImage) -> None: ...
    def idle(self) -> None: ...


class ImageCounter:
    """Sink counting the images and bytes seen (the stats' detector side)."""

    def __init__(self) -> None:
        self.images = 0
        self.bytes = 0

    def offer(self, image: ReceivedImage) -> None:
        self.images += 1
        self.bytes += image.data.nbytes

    def idle(self) -> None:
        pass


class CallbackSink:
    """Sink calling ``callback(image)`` (e.g. the live preview's ``offer``) within the offer."""

    def __init__(self, callback: Callable[[ReceivedImage], None]):
        self._callback = callback

    def offer(self, image: ReceivedImage) -> None:
        self._callback(image)

    def idle(self) -> None:
        pass


class ImageConsumer:
    """A thread feeding ``source``'s images to ``sinks`` until :meth:`stop`."""

    def __init__(self, source: ImageSource, sinks: Sequence[ImageSink], idle_s: float = 0.1):
        self.source = source
        self._sinks = tuple(sinks)
        self._idle_s = idle_s
        self._running = threading.Event()
        self._running.set()
        self._thread = threading.Thread(target=self._loop, name="image-consumer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop taking images (the sinks keep what they hold) and wait for the thread."""
        self._running.clear()
        self._thread.join()

    def _loop(self) -> None:
        while self._running.is_set():
            image = self.source.next_image(timeout=self._idle_s)
            if image is None:
                for sink in self._sinks:
                    self._guarded(sink.idle)
                continue
            image.keep_until_dropped(lambda image=image: self.source.release(image))
            try:
                for sink in self._sinks:
                    self._guarded(sink.offer, image)
            finally:
                image.drop()

    @staticmethod
    def _guarded(call: Callable, *args) -> None:
        """A sink's own failure stops neither the other sinks nor the consumer."""
        try:
            call(*args)
        except Exception:
            _log.exception("an image sink failed")
