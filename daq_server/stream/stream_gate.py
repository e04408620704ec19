"""Whether the Stream2 stream can take images now, shared by the publisher with its writers (a small
memory-mapped file beside the publisher's feed).

The publisher opens the gate while a consumer can take a message (its PUSH socket is writable) and closes
it when none can (no consumer connected, or all of them :data:`~daq_server.stream.stream2_feed.QUEUE`
messages behind). A writer looks at the gate before it builds an image message: a closed gate drops the
image at once, so an absent or saturated consumer costs no message encoding and no copy between processes.
The writers record the images they drop (this way or at their full queue) per series in the same file (one
slot per writer), which the status reads while the acquisition runs; the exact counts still come with the
writers' ``done`` marks.

Layout: int64 words, ``[open, (series id, dropped) x MAX_WRITERS]``; a writer uses slot ``index % MAX_WRITERS``
(a slot is shared only beyond :data:`MAX_WRITERS` writers, which makes the live count approximate, never the
final one).
"""

from __future__ import annotations

import mmap
import os

import numpy as np

MAX_WRITERS = 64
_WORDS = 1 + 2 * MAX_WRITERS


class StreamGate:
    """The gate file at ``path``: created (closed) by the publisher, attached by each writer."""

    def __init__(self, path: str, create: bool = False):
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, _WORDS * 8)
            self._map = mmap.mmap(fd, _WORDS * 8, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._words = np.ndarray((_WORDS,), np.int64, self._map)
        self.path = path

    @property
    def open(self) -> bool:
        """Can a consumer take an image message now?"""
        return bool(self._words[0])

    def set_open(self, value: bool) -> None:
        """The publisher's side: open or close the gate."""
        self._words[0] = int(value)

    def record_dropped(self, index: int, series_id: int, dropped: int) -> None:
        """A writer's side: writer ``index`` dropped ``dropped`` images of ``series_id`` so far (at the gate
        or at its full queue)."""
        slot = 1 + 2 * (index % MAX_WRITERS)
        self._words[slot + 1] = dropped
        self._words[slot] = series_id

    def dropped(self, series_id: int) -> int:
        """Images of ``series_id`` the writers dropped so far, as far as they recorded them."""
        slots = self._words[1:].reshape(MAX_WRITERS, 2)
        return int(slots[slots[:, 0] == series_id, 1].sum())

    def close(self) -> None:
        del self._words  # the only view of the mapping
        self._map.close()
