"""Live preview of the latest image for ``/daq/live`` (a browser shows it as MJPEG).

The consumer thread offers every image; at most ``max_rate_hz`` times a second a small
8-bit copy is made (strided down to at most ``max_size`` pixels a side, scaled between the
1st and 99.9th percentile). Everything else about the image path is untouched.
"""

from __future__ import annotations

import io
import threading
import time

import numpy as np
from PIL import Image

from daq_server.receive.image_source import ReceivedImage


class LivePreview:
    def __init__(self, max_rate_hz: float = 5.0, max_size: int = 512):
        self._interval = 1.0 / max_rate_hz
        self._max_size = max_size
        self._last_offer = 0.0
        self._preview: np.ndarray = np.zeros((64, 64), dtype=np.uint8)
        self._small: np.ndarray | None = None  # the strided copy before scaling, for the page's colour scales
        self._frame_number: int | None = None
        self._changed = threading.Condition()

    def offer(self, image: ReceivedImage) -> None:
        """Called for every received image; cheap unless a new preview is due."""
        now = time.monotonic()
        if now - self._last_offer < self._interval:
            return
        self._last_offer = now
        step = max(1, -(-max(image.data.shape) // self._max_size))
        small = image.data[::step, ::step].astype(np.float32)
        low, high = np.percentile(small, (1, 99.9))
        scaled = np.clip((small - low) * (255.0 / max(high - low, 1.0)), 0, 255).astype(np.uint8)
        with self._changed:
            self._preview, self._small, self._frame_number = scaled, small, image.frame_number
            self._changed.notify_all()

    def latest(self) -> tuple[int | None, np.ndarray | None]:
        """Frame number and strided (unscaled, float32) copy of the latest preview; (None, None) before any."""
        with self._changed:
            return self._frame_number, self._small

    def wait_jpeg(self, after: int | None, timeout: float) -> tuple[int | None, bytes]:
        """The latest preview as JPEG, waiting up to ``timeout`` for one newer than frame ``after``."""
        with self._changed:
            self._changed.wait_for(lambda: self._frame_number != after, timeout)
            preview, frame = self._preview, self._frame_number
        buffer = io.BytesIO()
        Image.fromarray(preview, mode="L").save(buffer, format="JPEG", quality=85)
        return frame, buffer.getvalue()
