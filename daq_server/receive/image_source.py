"""What the writer path consumes, free of cffi: an assembled image and the source it comes from.

The C UDP receiver (``daq_server.receive.udp_receiver``) and the bsread receiver both produce
:class:`ReceivedImage` objects whose ``data`` views their own buffer until released. A sink that
needs an image after its ``offer`` returns (e.g. while native threads compress it) takes a
:meth:`ReceivedImage.hold` and drops it later; the slot goes back to the source when the last
holder is done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

_holds_lock = threading.Lock()

RECEIVER_COUNTERS = (
    "packets_received",
    "packets_lost",
    "packets_foreign",
    "packets_late",
    "packets_duplicate",
    "frame_restarts",
    "images_incomplete",
    "images_dropped",
)
"""The counters every source keeps (``ImageSource.counters``): in ``get_stats()["detector"]``, in each
acquisition's log entry and file."""


@dataclass
class ReceivedImage:
    """One assembled image; ``data`` views the source's buffer and is valid until released."""

    slot: int
    frame_number: int
    n_missing_packets: int
    detector_timestamp: int
    receive_time: float
    data: np.ndarray
    _holds: int = field(default=0, repr=False, compare=False)
    _release: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def keep_until_dropped(self, release: Callable[[], None]) -> None:
        """The consumer's own hold: ``release`` runs when the last holder drops the image."""
        self._holds, self._release = 1, release

    def hold(self) -> None:
        """Keep the image (its buffer) past the current ``offer``; pair with :meth:`drop`."""
        with _holds_lock:
            self._holds += 1

    def drop(self) -> None:
        """Done with the image; the last drop gives its buffer back to the source."""
        with _holds_lock:
            self._holds -= 1
            release = self._release if self._holds == 0 else None
        if release is not None:
            release()


class ImageSource(Protocol):
    """What the writer path needs from a receiver (the C UDP one, or bsread's)."""

    shape: tuple[int, int]
    dtype: np.dtype

    def next_image(self, timeout: float = 0.1) -> ReceivedImage | None: ...
    def release(self, image: ReceivedImage) -> None: ...
    def counters(self) -> dict[str, int]:
        """Counters since the source started: RECEIVER_COUNTERS and ``bytes_received``."""
        ...

    def close(self) -> None: ...
