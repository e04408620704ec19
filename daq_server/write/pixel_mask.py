"""The NXmx pixel mask, and the per-image mask of lost packets.

``/entry/instrument/detector/pixel_mask`` is one 2-D ``uint32`` image for the whole file (NXmx numbering):

* bit 0 (value 1, :data:`GAP_PIXEL`): a gap, no sensor behind the pixel (between modules, between chips);
* bit 1 (value 2, :data:`DEAD_PIXEL`), bit 4 (value 16, :data:`NOISY_PIXEL`): where a calibration says so
  (e.g. a Jungfrau pedestal).

Pixels without data differ from image to image, so they are kept apart, in ``/entry/data/lost_pixel_mask``
(the file layout's ``LOST_PIXEL_MASK``): ``uint8``, shape ``(n_images, height, width)``, 1 where the pixel holds
no data in that image: the packet carrying it was lost (the receiver filled it with every bit set), or, in a
Jungfrau image converted to photons or keV, the conversion found no valid value (the invalid gain code 10, no
pedestal for the pixel's gain stage: the no-data value 65535 or NaN). Only such images have a chunk there; the
others read as zeros and cost nothing. While writing, only the images with ``n_missing_packets > 0`` or
conversion no-data pixels are looked at (:meth:`LostPixels.note`), and only the runs of their missing pixels
are kept until the next flush writes their chunks, each one zlib stream assembled from row bands of zeros
compressed once, recompressing only the bands with lost pixels (:class:`MaskChunks`).
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np

GAP_PIXEL = 1
"""NXmx pixel_mask bit 0: a gap (between modules or chips: no sensor behind the pixel)."""
DEAD_PIXEL = 2
"""NXmx pixel_mask bit 1: dead, as a calibration found."""
NOISY_PIXEL = 16
"""NXmx pixel_mask bit 4: noisy, as a calibration found."""
LOST = 1
"""Value of a pixel of ``lost_pixel_mask`` whose packet was lost in that image."""

DESCRIPTION = (
    "NXmx pixel_mask bits: bit 0 (value 1) gap, no sensor behind the pixel (between modules or chips); "
    "bit 1 (value 2) dead and bit 4 (value 16) noisy, where a calibration says so. One mask for every image; "
    "pixels of lost packets, which differ per image, are in /entry/data/lost_pixel_mask."
)
"""The ``description`` attribute of the pixel mask."""
LOST_DESCRIPTION = (
    "1 where the pixel holds no data in that image: the packet carrying it was lost (every bit set), or a "
    "Jungfrau conversion found no valid value (invalid gain code 10, no pedestal for the gain stage: the "
    "no-data value 65535 or NaN; pixels pixel_mask flags may read 1 too); 0 elsewhere; images without such "
    "pixels have no chunk and read as zeros"
)

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
    """Chunks of ``lost_pixel_mask`` as HDF5's gzip filter stores them (one zlib stream each), assembled
    from row bands of zeros compressed once.

    zlib itself has no call that recompresses part of a stream, so the stream is put together here from
    its documented pieces (RFC 1950/1951): a header, one full-flushed deflate segment per band (the zero
    band's, kept; a fresh one only for a band with lost pixels), an empty final block and the Adler-32 of
    the whole mask. An image with a few lost packets costs a few small compressions and one Adler-32 pass,
    not the compression of the whole mask.
    """

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape
        self.size = shape[0] * shape[1]
        self.band_size = BAND_ROWS * shape[1]
        self.bands = [np.zeros(min(self.band_size, self.size - start), np.uint8)
                      for start in range(0, self.size, self.band_size)]  # fmt: skip
        self.segments = {len(band): _segment(band, 9) for band in self.bands}  # kept: the smallest

    def assemble(self, changed: dict[int, np.ndarray]) -> bytes:
        """The zlib stream of the mask whose bands are zeros except ``changed`` (index -> band)."""
        adler, segments = 1, []
        for k, band in enumerate(self.bands):
            band = changed.get(k, band)
            segments.append(_segment(band) if k in changed else self.segments[len(band)])
            adler = zlib.adler32(band, adler)
        return _ZLIB_HEADER + b"".join(segments) + _FINAL_BLOCK + adler.to_bytes(4, "big")

    def with_lost(self, runs: np.ndarray) -> bytes:
        """The chunk of an image whose pixels ``runs`` ((start, stop) flat indices) were lost."""
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
                band[start - k * self.band_size : end - k * self.band_size] = LOST
                start = end
        if 2 * len(changed) > len(self.bands):  # lost packets spread over the image: one stream is faster
            return zlib.compress(np.concatenate([changed.get(k, b) for k, b in enumerate(self.bands)]), 1)
        return self.assemble(changed)

    def _whole_mask(self, runs: np.ndarray) -> np.ndarray:
        """LOST on ``runs``, flat, in one pass (starts and stops are distinct: runs are separated by valid
        pixels)."""
        steps = np.zeros(self.size + 1, dtype=np.int8)
        steps[runs[:, 0]] = 1
        steps[runs[:, 1]] = -1
        return np.cumsum(steps[:-1], dtype=np.int8).view(np.uint8) * np.uint8(LOST)


class LostPixels:
    """The pixels of lost packets of the images written since the last flush, as runs of flat indices.

    Parameters
    ----------
    dtype:
        The images' dtype; only unsigned images carry the missing value.
    """

    def __init__(self, dtype: np.dtype | type) -> None:
        self.missing_value = missing_value(dtype)
        self._float = np.dtype(dtype).kind == "f"  # keV images: NaN marks a pixel without data
        self.runs: dict[int, np.ndarray] = {}
        """Image index -> (start, stop) rows of flat pixel indices holding the missing value (not yet written)."""
        self._chunks: MaskChunks | None = None

    def __bool__(self) -> bool:
        return bool(self.runs)

    def note(self, index: int, image: np.ndarray) -> np.ndarray | None:
        """Image ``index`` has pixels without data: keep where it holds the missing value (or NaN), returned
        as a boolean image for the image statistics; None when the dtype has no missing value."""
        if self._float:
            missing = np.isnan(image)
        elif self.missing_value is None:
            return None
        else:
            missing = image == self.missing_value
        steps = np.diff(missing.reshape(-1).view(np.int8), prepend=np.int8(0), append=np.int8(0))
        edges = np.flatnonzero(steps)
        if edges.size:
            self.runs[index] = edges.astype(np.int64).reshape(-1, 2)
        return missing

    def flush(self, dataset: h5py.Dataset, n_images: int) -> None:
        """Grow ``lost_pixel_mask`` to ``n_images`` and write the chunks of the images noted since the last
        flush (valid in SWMR mode: only existing datasets are written)."""
        dataset.resize(n_images, axis=0)
        if not self.runs:
            return
        if self._chunks is None:
            self._chunks = MaskChunks(tuple(dataset.shape[1:]))
        maker, lost = self._chunks, sorted(i for i in self.runs if i < n_images)
        with ThreadPoolExecutor(max_workers=2) as pool:  # zlib and numpy release the GIL
            chunks = pool.map(lambda i: maker.with_lost(self.runs[i]), lost)
            for i, chunk in zip(lost, chunks, strict=True):
                dataset.id.write_direct_chunk((i, 0, 0), chunk)
        self.runs.clear()
