"""The image statistics of an event: the sum and maximum of its image, as the DAQ reports them.

The devices ask for them in the write requests of step scans (``"image_statistics": true``); the DAQ then reports the
last image written in ``acquisition.stats.last_image``. An event's values are taken from there only when
that is the event's image (its index); otherwise, and with a DAQ that does not compute them, they are NaN.
"""

from __future__ import annotations

import math
from typing import Any

STATISTICS = ("image_sum", "image_max")
"""Data key suffixes of the per-event readings (``<name>-image_sum`` …)."""

REQUEST_FIELD = "image_statistics"
"""The write request field that asks the DAQ for them."""


def statistics_of(acquisition: dict[str, Any] | None, index: int) -> dict[str, float]:
    """``{"image_sum": s, "image_max": m}`` of image ``index`` (0-based) from a DAQ acquisition object;
    NaN when its ``stats.last_image`` is missing or is another image."""
    stats = (acquisition or {}).get("stats")
    last = stats.get("last_image") if isinstance(stats, dict) else None
    if not isinstance(last, dict) or last.get("index") != index or index < 0:
        return dict.fromkeys(STATISTICS, math.nan)
    return {"image_sum": float(last["sum"]), "image_max": float(last["max"])}
