"""The latest image as a colour PNG for the web page: linear or logarithmic scale, a perceptual colour map.

The scale spans the 1st to the 99.9th percentile of the (strided) preview, so that a few hot pixels or the
all-bits-set pixels of lost packets do not flatten the rest of the picture.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

SCALES = ("linear", "log")

# Anchor colours of the viridis colour map (dark blue -> green -> yellow), interpolated to 256 entries.
_ANCHORS = ["440154", "482878", "3e4989", "31688e", "26828e", "1f9e89", "35b779", "6ece58", "b5de2b", "fde725"]


def _colour_table() -> np.ndarray:
    anchors = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in _ANCHORS], dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(anchors))
    steps = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(steps, positions, anchors[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


COLOURS = _colour_table()


@dataclass(frozen=True)
class RenderedImage:
    png: bytes
    low: float
    """Pixel value at the bottom of the colour scale."""
    high: float
    """Pixel value at the top of the colour scale."""


def render(pixels: np.ndarray | None, scale: str) -> RenderedImage:
    """Colour PNG of ``pixels`` (a black square when there is no image yet)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, not {scale!r}")
    if pixels is None or pixels.size == 0:
        return RenderedImage(_png(np.zeros((64, 64, 3), dtype=np.uint8)), 0.0, 0.0)
    values = np.asarray(pixels, dtype=np.float64)
    low, high = (float(v) for v in np.percentile(values, (1, 99.9)))
    clipped = np.clip(values, low, high)
    if scale == "log":
        mapped, top = np.log1p(clipped - low), np.log1p(high - low)
    else:
        mapped, top = clipped - low, high - low
    index = (mapped * (255.0 / top)).astype(np.uint8) if top > 0 else np.zeros(values.shape, dtype=np.uint8)
    return RenderedImage(_png(COLOURS[index]), low, high)


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()
