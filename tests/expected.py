"""Test oracle: the image the DAQ must write for a frame, built independently of the C
receiver from the simulator's pixel formula and the config's module_positions."""

from __future__ import annotations

import numpy as np

from sim import module_geometry, module_pixels
from sim.bsread_source import bsread_image

MISSING = 0xFFFF  # the value of a lost packet's pixels (16 bit)
ROWS_PER_PACKET = 4  # Jungfrau: 8192 bytes = 4 rows of 1024 pixels

DTYPES = {4: np.uint8, 8: np.uint8, 16: np.uint16, 32: np.uint32}


def gigafrost_coordinates(config: dict, module: int) -> tuple[np.ndarray, np.ndarray]:
    """Stream m = quadrant m // 2 (SW, SE, NW, NE) and link m % 2; links interleave rows."""
    height, width = config["image_pixel_height"], config["image_pixel_width"]
    quadrant, link = divmod(module, 2)
    r = np.arange(height // 4)
    rows = height // 2 + link + 2 * r if quadrant in (0, 1) else height // 2 - 1 - link - 2 * r
    cols = np.arange(width // 2) + (0 if quadrant in (0, 2) else width // 2)
    return rows, cols


def module_coordinates(config: dict, module: int) -> tuple[np.ndarray, np.ndarray]:
    """Image rows and columns of every module row and column (chip gaps, mirroring)."""
    if config["detector_type"] == "gigafrost":
        return gigafrost_coordinates(config, module)
    width, height = module_geometry(config)
    sx, sy, ex, ey = config["module_positions"][str(module)]

    def axis(start: int, end: int, size: int) -> np.ndarray:
        chips = size // 256
        gap = (abs(end - start) + 1 - size) // max(chips - 1, 1)
        direction = 1 if end >= start else -1
        index = np.arange(size)
        return start + direction * (index + (index // 256) * gap)

    return axis(sy, ey, height), axis(sx, ex, width)


def expected_image(config: dict, frame: int, **content) -> np.ndarray:
    """The image of ``frame``; ``content`` are module_pixels' content, seed and flux (default: the ramp)."""
    if config["detector_type"] == "bsread":
        return bsread_image(frame, config)
    shape = (config["image_pixel_height"], config["image_pixel_width"])
    image = np.zeros(shape, dtype=DTYPES[config["bit_depth"]])
    for m in range(config["n_modules"]):
        rows, cols = module_coordinates(config, m)
        image[np.ix_(rows, cols)] = module_pixels(frame, m, config, **content)
    return image


def missing_packets_seen(config, frame, image) -> int:
    """Check every packet's pixels are either what was sent or the missing value; count missing."""
    expected = expected_image(config, frame)
    n_missing = 0
    for m in range(config["n_modules"]):
        rows, cols = module_coordinates(config, m)
        for p in range(len(rows) // ROWS_PER_PACKET):
            block = np.ix_(rows[p * ROWS_PER_PACKET : (p + 1) * ROWS_PER_PACKET], cols)
            if (image[block] == MISSING).all() and not (expected[block] == MISSING).all():
                n_missing += 1
            else:
                assert np.array_equal(image[block], expected[block]), f"frame {frame} module {m} packet {p}"
    return n_missing
