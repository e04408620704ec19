"""Per-image results in the image pipeline: ROI sums, a radial profile and a spot count (docs/results.rst).

The native stage (``csrc/pipeline/image_results.c``) runs on the pipeline's threads after the Jungfrau
conversion and before compression; it only accumulates. Everything that depends on the geometry is
computed here once per acquisition, with numpy:

* ``bin_of``, each pixel's radial bin (q in 1/nm or 2θ in degrees at the pixel's centre, equal bins from the
  smallest to the largest value of the pixels left in), or "outside", or "masked" (left out of every result);
* ``roi_runs``, each ROI as runs of consecutive pixels of a row (masked pixels already left out).

Per image, pixels without data (every bit set for unsigned images: lost packets, the conversion's no-data
value; NaN for keV) are left out too: the profile is the mean of each bin's remaining pixels (NaN for a bin
without one), an ROI sum the sum of its remaining pixels, the spot count the number of 4-connected groups of
at least ``min_pixels`` remaining pixels above ``threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from daq_server.pipeline._pipeline import ffi, lib

PIXEL_TYPES = {
    np.dtype(np.uint8): lib.IR_U8,
    np.dtype(np.uint16): lib.IR_U16,
    np.dtype(np.uint32): lib.IR_U32,
    np.dtype(np.float32): lib.IR_F32,
}
UNITS = {"q": ("q", "1/nm"), "2theta": ("two_theta", "deg")}
"""Config unit -> (axis name, axis units) of the radial profile."""


@dataclass(frozen=True)
class RadialGeometry:
    """A flat detector facing the beam: the beam centre in pixels (from the outer corner of pixel (0, 0)),
    pixel sizes and distance in m, wavelength in angstrom."""

    beam_x: float
    beam_y: float
    pixel_x: float
    pixel_y: float
    distance: float
    wavelength: float


def radial_positions(shape: tuple[int, int], geometry: RadialGeometry, unit: str) -> np.ndarray:
    """q (1/nm) or 2θ (deg) at the centre of every pixel (float64, ``shape``)."""
    g = geometry
    x = (np.arange(shape[1]) + 0.5 - g.beam_x) * g.pixel_x
    y = (np.arange(shape[0]) + 0.5 - g.beam_y) * g.pixel_y
    two_theta = np.arctan2(np.hypot(x[np.newaxis, :], y[:, np.newaxis]), g.distance)
    if unit == "2theta":
        return np.degrees(two_theta)
    return 4 * math.pi / (g.wavelength / 10) * np.sin(two_theta / 2)


def radial_bins(positions: np.ndarray, excluded: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin of every pixel, or ``n_bins``: outside; the ``n_bins + 1`` edges): equal bins from the smallest to the
    largest position of the pixels not ``excluded``, the largest one inside the last bin."""
    kept = positions[~excluded]
    low, high = (float(kept.min()), float(kept.max())) if kept.size else (0.0, 1.0)
    high = high + max(abs(high), 1.0) * 1e-9  # the largest position falls inside the last bin
    edges = np.linspace(low, high, n_bins + 1)
    bins = np.floor((positions - low) / (high - low) * n_bins).astype(np.int64)
    bins[(bins < 0) | (bins >= n_bins)] = n_bins
    return bins.astype(np.uint16), edges


def roi_runs(rois: list[np.ndarray], excluded: np.ndarray) -> np.ndarray:
    """(first pixel, pixels, roi) of every run of consecutive pixels in each boolean ROI mask, ``excluded``
    pixels left out: shape (n_runs, 3), uint64."""
    height, width = excluded.shape
    runs = [np.zeros((0, 3), dtype=np.uint64)]
    for index, roi in enumerate(rois):
        padded = np.zeros((height, width + 1), dtype=np.int8)  # a 0 after each row: no run crosses a row
        padded[:, :width] = roi & ~excluded
        change = np.diff(np.concatenate(([0], padded.ravel())))
        starts, ends = np.flatnonzero(change == 1), np.flatnonzero(change == -1)
        first = starts // (width + 1) * width + starts % (width + 1)
        runs.append(np.stack([first, ends - starts, np.full(len(starts), index)], axis=1).astype(np.uint64))
    return np.concatenate(runs)


def rectangle(shape: tuple[int, int], x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """The boolean mask of the rectangle [x0, x1) x [y0, y1)."""
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


class ImageResults:
    """The tables of one acquisition's results and the native stage that uses them.

    Parameters
    ----------
    shape, dtype:
        Of the images the stage sees (after the conversion).
    excluded:
        Pixels left out of every result (the NXmx pixel mask's nonzero pixels: gaps, dead, noisy).
    radial:
        (geometry, unit "q" or "2theta", bins) of the radial profile, or None.
    rois:
        name -> boolean mask of each ROI (see :func:`rectangle`).
    spots:
        (threshold, min_pixels) of the spot count, or None.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        dtype: np.dtype,
        excluded: np.ndarray,
        radial: tuple[RadialGeometry, str, int] | None = None,
        rois: dict[str, np.ndarray] | None = None,
        spots: tuple[float, int] | None = None,
    ):
        dtype = np.dtype(dtype)
        if radial is not None and not 1 <= radial[2] <= lib.IR_MAX_BINS:
            raise ValueError(f"a radial profile has 1 to {lib.IR_MAX_BINS} bins, not {radial[2]}")
        if dtype not in PIXEL_TYPES:
            raise ValueError(f"results are computed on images of {', '.join(map(str, PIXEL_TYPES))}, not {dtype}")
        self.shape, self.dtype = (int(shape[0]), int(shape[1])), dtype
        excluded = np.asarray(excluded, bool)
        self.roi_names = list(rois or {})
        self.radial = radial
        self.spots = spots
        n_bins = radial[2] if radial is not None else 0
        bin_of = np.full(self.shape, n_bins, dtype=np.uint16)  # outside the profile's range
        self.axis: np.ndarray | None = None
        """The centres of the radial bins (their ``edges``: ``n_bins + 1``)."""
        self.edges: np.ndarray | None = None
        self.bin_pixels: np.ndarray | None = None
        if radial is not None:
            geometry, unit, n_bins = radial
            bin_of, edges = radial_bins(radial_positions(self.shape, geometry, unit), excluded, n_bins)
            self.edges, self.axis = edges, (edges[:-1] + edges[1:]) / 2
            self.bin_pixels = np.bincount(bin_of[~excluded & (bin_of < n_bins)], minlength=n_bins)
        bin_of[excluded] = n_bins + 1  # masked: left out of every result
        self._bin_of = np.ascontiguousarray(bin_of)
        self._runs = np.ascontiguousarray(roi_runs([rois[name] for name in self.roi_names], excluded))
        self.tables = ffi.new("ir_tables *")
        t = self.tables
        t.height, t.width = self.shape
        t.pixel_type = PIXEL_TYPES[dtype]
        t.bin_of = ffi.from_buffer("uint16_t[]", self._bin_of)
        t.n_bins = n_bins
        t.roi_runs = ffi.from_buffer("uint64_t[]", self._runs)
        t.n_runs = len(self._runs)
        t.n_rois = len(self.roi_names)
        t.spots = int(spots is not None)
        t.threshold, t.min_pixels = spots if spots is not None else (0.0, 1)
        self.n_values = int(lib.ir_n_values(t))
        self._scratch = None

    def unpack(self, values) -> dict:
        """The results of one image from the stage's ``n_values`` doubles: ``radial_profile`` (float64 array
        of the bins' means), ``roi_sums`` (name -> float), ``spot_count`` (int, -1 if not computed); only
        those configured."""
        values = np.frombuffer(values, dtype=np.float64, count=self.n_values)
        n_bins = int(self.tables.n_bins)
        out: dict = {}
        if self.radial is not None:
            out["radial_profile"] = values[:n_bins].copy()
        if self.roi_names:
            out["roi_sums"] = {name: float(values[n_bins + k]) for k, name in enumerate(self.roi_names)}
        if self.spots is not None:
            count = values[n_bins + len(self.roi_names)]
            out["spot_count"] = int(count) if math.isfinite(count) else -1
        return out

    def compute(self, image: np.ndarray) -> dict:
        """The stage on one image in this thread (tests, benchmarks); the pipeline runs it on its own."""
        if image.shape != self.shape or image.dtype != self.dtype or not image.flags.c_contiguous:
            raise ValueError(f"the stage takes C-contiguous {self.dtype} images of {self.shape}")
        if self._scratch is None:
            self._scratch = ffi.gc(lib.ir_scratch_new(self.tables), lib.ir_scratch_free)
        out = np.empty(self.n_values, dtype=np.float64)
        lib.ir_compute(self.tables, ffi.from_buffer(image), ffi.from_buffer("double[]", out), self._scratch)
        return self.unpack(out)
