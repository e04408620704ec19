"""What both devices report as configuration: the detector, the image, the files' compression, the exposure."""

from __future__ import annotations

import math
from typing import Any

DETECTOR_FIELDS: dict[str, tuple[str, str]] = {
    "detector_type": ("string", "eiger, jungfrau, gigafrost or bsread (DAQ config)."),
    "image_pixel_height": ("integer", "Image height in pixels, gaps included (DAQ config)."),
    "image_pixel_width": ("integer", "Image width in pixels, gaps included (DAQ config)."),
    "bit_depth": ("integer", "Bits per pixel as received (DAQ config)."),
    "compression": ("string", "Compression of the images in the files: none or bitshuffle-lz4 (DAQ status)."),
}
"""Configuration of the detector and its files: name -> (event-model dtype, description)."""

EXPOSURE_FIELDS: dict[str, tuple[str, str]] = {
    "count_time": ("number", "Exposure of each image in s (NXmx count_time); NaN when not set."),
    "frame_time": ("number", "Time from the start of one image to the next in s (NXmx frame_time); NaN when not set."),
}
"""The exposure the write requests carry (TriggerInfo livetime / livetime + deadtime, or the device's setting)."""

_NUMPY = {"integer": "<i8", "number": "<f8"}  # strings carry none ('|O' is not one the event model accepts)


def detector_values(config: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """The :data:`DETECTOR_FIELDS` of a DAQ config and status (compression "" when the DAQ does not say)."""
    return {
        "detector_type": str(config.get("detector_type", "")),
        "image_pixel_height": int(config.get("image_pixel_height", 0)),
        "image_pixel_width": int(config.get("image_pixel_width", 0)),
        "bit_depth": int(config.get("bit_depth", 0)),
        "compression": str(status.get("compression") or ""),
    }


def exposure_values(exposure: dict[str, float]) -> dict[str, float]:
    """The :data:`EXPOSURE_FIELDS` of a write request's exposure (NaN where it has none)."""
    return {name: float(exposure.get(name, math.nan)) for name in EXPOSURE_FIELDS}


def data_key_fields(name: str) -> tuple[str, str | None, str]:
    """(dtype, numpy dtype or None, description) of a configuration field."""
    dtype, doc = {**DETECTOR_FIELDS, **EXPOSURE_FIELDS}[name]
    return dtype, _NUMPY.get(dtype), doc
