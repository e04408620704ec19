"""Live preview of the latest image for ``/daq/live`` (a browser shows it as MJPEG).

The consumer thread offers every image; at most ``max_rate_hz`` times a second a small copy is kept
(strided down to at most ``max_size`` pixels a side, in the image's own dtype: a few hundred kB,
no arithmetic). Everything that costs -- the scaling between the 1st and 99.9th percentile and the
JPEG -- is done only when someone asks for the preview, once per kept image, in the asking thread:
an acquisition nobody watches spends nothing on it.

With a preview stream (``--preview-address``, ``daq_server.stream.preview_stream``) each kept image is also
published whole, at the same rate: the page and the stream show the same images.
"""

from __future__ import annotations

import io
import threading
import time

import numpy as np
from PIL import Image

from daq_server.receive.image_source import ReceivedImage
from daq_server.stream.preview_stream import PreviewStream


class LivePreview:
    def __init__(self, max_rate_hz: float = 5.0, max_size: int = 512, stream: PreviewStream | None = None):
        self._interval = 1.0 / max_rate_hz
        self.stream = stream
        self._max_size = max_size
        self._last_offer = 0.0
        self._small: np.ndarray | None = None  # the strided copy of the latest kept image
        self._frame_number: int | None = None
        self._jpeg: tuple[int | None, bytes] | None = None  # the JPEG of the kept image, once asked for
        self._changed = threading.Condition()

    def offer(self, image: ReceivedImage) -> None:
        """Called for every received image; a strided copy at most max_rate_hz times a second."""
        now = time.monotonic()
        if now - self._last_offer < self._interval:
            return
        self._last_offer = now
        step = max(1, -(-max(image.data.shape) // self._max_size))
        small = image.data[::step, ::step].copy()  # the slot goes back to the receiver after the offer
        if self.stream is not None:
            self.stream.publish(image.data, image.frame_number, {"preview_step": step, "preview_time": time.time()})
        with self._changed:
            self._small, self._frame_number, self._jpeg = small, image.frame_number, None
            self._changed.notify_all()

    def latest(self) -> tuple[int | None, np.ndarray | None]:
        """Frame number and strided (unscaled) copy of the latest preview; (None, None) before any."""
        with self._changed:
            return self._frame_number, self._small

    def wait_jpeg(self, after: int | None, timeout: float) -> tuple[int | None, bytes]:
        """The latest preview as JPEG, waiting up to ``timeout`` for one newer than frame ``after``."""
        with self._changed:
            self._changed.wait_for(lambda: self._frame_number != after, timeout)
            frame, small, jpeg = self._frame_number, self._small, self._jpeg
        if jpeg is not None and jpeg[0] == frame:
            return jpeg
        buffer = io.BytesIO()
        Image.fromarray(_scaled(small), mode="L").save(buffer, format="JPEG", quality=85)
        encoded = (frame, buffer.getvalue())
        with self._changed:
            if self._frame_number == frame:  # several viewers share one encoding per kept image
                self._jpeg = encoded
        return encoded


def _scaled(small: np.ndarray | None) -> np.ndarray:
    """8-bit grey levels between the 1st and 99.9th percentile (a black square before any image)."""
    if small is None:
        return np.zeros((64, 64), dtype=np.uint8)
    values = small.astype(np.float32)
    low, high = np.percentile(values, (1, 99.9))
    return np.clip((values - low) * (255.0 / max(high - low, 1.0)), 0, 255).astype(np.uint8)
