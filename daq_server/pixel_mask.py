"""The NXmx pixel mask: the gap pixels of the whole file and, per image, the pixels of lost packets.

Bits of ``/entry/instrument/detector/pixel_mask`` (NXmx numbering):

* bit 0 (value 1, :data:`GAP_PIXEL`): a gap, no module covers the pixel;
* bit 1 (value 2, :data:`LOST_PIXEL`): no valid data in this image, the packet carrying it was lost
  (the receiver filled it with the missing value, every bit set).

A file whose images lost no packet keeps one 2D ``(height, width)`` mask for every image. Otherwise the
close replaces it by a per-image ``(n_images, height, width)`` mask. While writing, only the images with
``n_missing_packets > 0`` are looked at (:meth:`LostPixels.note`), and only the runs of their missing
pixels are kept; at close the mask is written one gzip chunk per image, every good image sharing one
pre-compressed chunk of the gap mask (``write_direct_chunk``), so a file of 100k images closes in about
a second.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np

GAP_PIXEL = 1
"""NXmx pixel_mask bit 0: a gap between modules (no sensor behind the pixel)."""

LOST_PIXEL = 2
"""NXmx pixel_mask bit 1 ("dead"): no valid data in this image, the packet carrying the pixel was lost."""

DESCRIPTION = (
    "NXmx pixel_mask bits: bit 0 (value 1) gap between modules, no sensor behind the pixel; "
    "bit 1 (value 2) no valid data in this image: the packet carrying it was lost. "
    "Shape (height, width) when no image lost a packet, else one mask per image (image, height, width)."
)
"""The ``description`` attribute of the pixel mask."""

GZIP_LEVEL = 4
"""Compression level the mask datasets declare (h5py's default for gzip)."""

_GOOD_LEVEL, _LOST_LEVEL = 9, 1  # the shared chunk is made once (smallest); one per lost image (fastest)


def missing_value(dtype: np.dtype | type) -> int | None:
    """The value of a lost packet's pixels (every bit set) for unsigned images, else None."""
    dtype = np.dtype(dtype)
    return int(np.iinfo(dtype).max) if dtype.kind == "u" else None


def _chunk(mask: np.ndarray, level: int) -> bytes:
    """One mask as the gzip (deflate) filter of HDF5 stores it: a zlib stream of little-endian uint32."""
    return zlib.compress(np.ascontiguousarray(mask, dtype="<u4").tobytes(), level)


class LostPixels:
    """The pixels of lost packets of the images written so far, as runs of flat pixel indices.

    Parameters
    ----------
    dtype:
        The images' dtype; only unsigned images carry the missing value.
    """

    def __init__(self, dtype: np.dtype | type) -> None:
        self.missing_value = missing_value(dtype)
        self.runs: dict[int, np.ndarray] = {}
        """Image index -> (start, stop) rows of flat pixel indices holding the missing value."""

    def __bool__(self) -> bool:
        return bool(self.runs)

    def note(self, index: int, image: np.ndarray) -> np.ndarray | None:
        """Image ``index`` lost packets: keep where it holds the missing value (returned as a boolean
        image, for the image statistics; None when the dtype has no missing value)."""
        if self.missing_value is None:
            return None
        missing = image == self.missing_value
        steps = np.diff(missing.reshape(-1).view(np.int8), prepend=np.int8(0), append=np.int8(0))
        edges = np.flatnonzero(steps)
        if edges.size:
            self.runs[index] = edges.astype(np.int64).reshape(-1, 2)
        return missing

    def frame_mask(self, gap: np.ndarray, index: int) -> np.ndarray:
        """The mask of image ``index``: ``gap`` plus LOST_PIXEL where it lost pixels inside a module."""
        mask = np.array(gap, dtype=np.uint32)
        flat = mask.reshape(-1)
        # a few runs a lost packet: slices, not a pass per pixel; the runs never cover a gap pixel,
        # which the receiver leaves 0, never the missing value
        for start, stop in self.runs[index].tolist():
            flat[start:stop] |= LOST_PIXEL
        return mask

    def write_per_image(self, detector: h5py.Group, n_images: int, reserve: Callable[[int], bool]) -> bool:
        """Replace ``detector/pixel_mask`` (2D, the gap mask) by one mask per image of the ``n_images``.

        ``reserve(n_bytes)`` makes room on the disk first; when it says no, the 2D mask stays.
        The file must be open for writing, not in SWMR mode. Returns whether the mask was replaced.
        """
        lost = sorted(i for i in self.runs if i < n_images)
        gap = detector["pixel_mask"][()]
        if not lost or gap.ndim != 2:
            return False
        good = _chunk(gap, _GOOD_LEVEL)
        with ThreadPoolExecutor(max_workers=2) as pool:  # zlib and numpy release the GIL
            compressed = pool.map(lambda i: _chunk(self.frame_mask(gap, i), _LOST_LEVEL), lost)
            chunks = dict(zip(lost, compressed, strict=True))
        needed = (n_images - len(chunks)) * len(good) + sum(len(c) for c in chunks.values()) + 64 * n_images
        if not reserve(needed):
            return False
        del detector["pixel_mask"]
        dataset = detector.create_dataset(
            "pixel_mask",
            shape=(n_images, *gap.shape),
            dtype=np.uint32,
            chunks=(1, *gap.shape),
            compression="gzip",
            compression_opts=GZIP_LEVEL,
        )
        for i in range(n_images):
            dataset.id.write_direct_chunk((i, 0, 0), chunks.get(i, good))
        dataset.attrs["description"] = DESCRIPTION
        return True
