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
a second, and a lossy image's chunk recompresses only the bands with lost pixels (:class:`MaskChunks`).
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

BAND_ROWS = 64
"""Rows of one band of a per-image mask chunk: a lost packet recompresses only the bands it touches."""

MANY_RUNS = 256
"""Above this many runs of lost pixels (about 30 lost packets) an image's mask is made in one pass."""

_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, fastest level: (0x78 * 256 + 0x01) % 31 == 0
_FINAL_BLOCK = b"\x03\x00"  # an empty final fixed-Huffman block


def missing_value(dtype: np.dtype | type) -> int | None:
    """The value of a lost packet's pixels (every bit set) for unsigned images, else None."""
    dtype = np.dtype(dtype)
    return int(np.iinfo(dtype).max) if dtype.kind == "u" else None


def _segment(values: np.ndarray, level: int = 1) -> bytes:
    """Raw deflate blocks of ``values`` ending in a full flush: byte-aligned, no reference to what came
    before, so segments can follow each other in any order inside one zlib stream."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(values) + compressor.flush(zlib.Z_FULL_FLUSH)


class MaskChunks:
    """Per-image chunks of the pixel mask as HDF5's gzip filter stores them (one zlib stream each),
    assembled from row bands of the gap mask compressed once.

    zlib itself has no call that recompresses part of a stream, so the stream is put together here
    from its documented pieces (RFC 1950/1951): a header, one full-flushed deflate segment per band (the
    gap mask's own, kept; a fresh one only for a band with lost pixels), an empty final block and the
    Adler-32 of the whole mask. An image with a few lost packets costs a few small compressions and one
    Adler-32 pass, not the compression of the whole mask.
    """

    def __init__(self, gap: np.ndarray) -> None:
        self.gap = np.ascontiguousarray(gap, dtype="<u4")
        self.band_size = BAND_ROWS * self.gap.shape[1]
        flat = self.gap.reshape(-1)
        self.bands = [flat[start : start + self.band_size] for start in range(0, flat.size, self.band_size)]
        self.segments = [_segment(band, 9) for band in self.bands]  # kept: the smallest
        self.good = self.assemble({})
        """The chunk of every image that lost nothing: the gap mask."""

    def assemble(self, changed: dict[int, np.ndarray]) -> bytes:
        """The zlib stream of the mask whose bands are the gap mask's except ``changed`` (index -> band)."""
        adler, segments = 1, []
        for k, band in enumerate(self.bands):
            band = changed.get(k, band)
            segments.append(_segment(band) if k in changed else self.segments[k])
            adler = zlib.adler32(band, adler)
        return _ZLIB_HEADER + b"".join(segments) + _FINAL_BLOCK + adler.to_bytes(4, "big")

    def with_lost(self, runs: np.ndarray) -> bytes:
        """The chunk of an image whose pixels ``runs`` ((start, stop) flat indices) were lost: the gap
        mask plus LOST_PIXEL on those that are not gap pixels."""
        if len(runs) > MANY_RUNS:  # much of the image lost: one vectorised pass and one stream are faster
            return zlib.compress(self._whole_mask(runs), 1)
        changed: dict[int, np.ndarray] = {}
        for start, stop in runs.tolist():
            while start < stop:  # a run may cross bands
                k = start // self.band_size
                end = min(stop, (k + 1) * self.band_size)
                band = changed.get(k)
                if band is None:
                    band = changed[k] = self.bands[k].copy()
                first, last = start - k * self.band_size, end - k * self.band_size
                piece = band[first:last]  # a gap pixel is never lost (the receiver leaves it 0 anyway)
                np.bitwise_or(piece, np.uint32(LOST_PIXEL), out=piece, where=self.bands[k][first:last] == 0)
                start = end
        if 2 * len(changed) > len(self.bands):  # lost packets spread over the image: one stream is faster
            return zlib.compress(np.concatenate([changed.get(k, b) for k, b in enumerate(self.bands)]), 1)
        return self.assemble(changed)

    def _whole_mask(self, runs: np.ndarray) -> np.ndarray:
        """The gap mask plus LOST_PIXEL on ``runs``, flat, in one pass (starts and stops are distinct:
        runs are separated by valid pixels)."""
        steps = np.zeros(self.gap.size + 1, dtype=np.int8)
        steps[runs[:, 0]] = 1
        steps[runs[:, 1]] = -1
        mask = self.gap.reshape(-1).copy()
        lost = np.cumsum(steps[:-1], dtype=np.int8).view(bool) & (mask == 0)  # never a gap pixel
        return np.bitwise_or(mask, np.uint32(LOST_PIXEL), out=mask, where=lost)


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

    def write_per_image(self, detector: h5py.Group, n_images: int, reserve: Callable[[int], bool]) -> bool:
        """Replace ``detector/pixel_mask`` (2D, the gap mask) by one mask per image of the ``n_images``.

        ``reserve(n_bytes)`` makes room on the disk first; when it says no, the 2D mask stays.
        The file must be open for writing, not in SWMR mode. Returns whether the mask was replaced.
        """
        lost = sorted(i for i in self.runs if i < n_images)
        gap = detector["pixel_mask"][()]
        if not lost or gap.ndim != 2:
            return False
        maker = MaskChunks(gap)
        good = maker.good
        with ThreadPoolExecutor(max_workers=2) as pool:  # zlib and numpy release the GIL
            compressed = pool.map(lambda i: maker.with_lost(self.runs[i]), lost)
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
