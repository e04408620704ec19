"""1 Hz statistics: images/s and bytes/s of the detector (receiver counters) and the writer,
plus the receiver's packet and image counters since it started.

Counters live where the events happen (the C receiver, the writer driver); this module
only samples them once a second and keeps the last one-second rates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Counters = Callable[[], tuple[int, int, int, int]]
"""Returns (detector images, detector bytes, writer images, writer bytes) since start."""


def zero_stats() -> dict:
    return {
        "detector": {"bytes_per_second": 0.0, "images_per_second": 0.0},
        "writer": {"bytes_per_second": 0.0, "images_per_second": 0.0},
    }


class StatsSampler:
    def __init__(
        self,
        counters: Counters,
        totals: Callable[[], dict[str, int]] = dict,
        interval: float = 1.0,
        on_sample: Callable[[dict], None] | None = None,
    ):
        self._counters = counters
        self._totals = totals
        self._on_sample = on_sample or (lambda stats: None)
        self._interval = interval
        self._stats = zero_stats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stats-1hz", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def current(self) -> dict:
        """The last second's rates, with the receiver's counters as they are now in ``detector``."""
        with self._lock:
            stats = {k: dict(v) for k, v in self._stats.items()}
        stats["detector"].update(self._totals())
        return stats

    def _run(self) -> None:
        previous, t0 = self._counters(), time.monotonic()
        while not self._stop.wait(self._interval - (time.monotonic() - t0) % self._interval):
            now, t1 = self._counters(), time.monotonic()
            dt = max(t1 - t0, 1e-6)
            d = [(b - a) / dt for a, b in zip(previous, now, strict=True)]
            # a receiver restart (new config) resets its counters: no negative rates
            d = [max(0.0, x) for x in d]
            with self._lock:
                self._stats = {
                    "detector": {"bytes_per_second": d[1], "images_per_second": d[0]},
                    "writer": {"bytes_per_second": d[3], "images_per_second": d[2]},
                }
            self._on_sample(self.current())
            previous, t0 = now, t1
