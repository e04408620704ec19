"""The pedestal of gain-switching pixels (Jungfrau), computed natively from dark frames.

:class:`PedestalAccumulator` adds complete dark frames (in native code, ``csrc/pipeline/jungfrau_pedestal.c``):
each frame counts for the gain stage most of its pixels report, so frames of the detector's pedestal
mode (gain 0, forced gain 1, forced gain 2) sort themselves. :meth:`PedestalAccumulator.result` gives a
:class:`Pedestal`: per stage and pixel the mean and RMS in ADU, and a pixel mask (NXmx bits) of the pixels
whose pedestal cannot be trusted (:func:`flag_pixels`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from daq_server.pipeline._pipeline import ffi, lib

STAGES = 3
MAX_FRAMES: int = lib.JP_MAX_FRAMES
"""Dark frames one pedestal takes at most."""

DEAD_PIXEL = 2
"""NXmx pixel_mask bit 1 (value 2): dead; here a pixel whose pedestal is out of range or that does not
report the frame's gain stage in most frames of a stage."""
NOISY_PIXEL = 16
"""NXmx pixel_mask bit 4 (value 16): noisy; here a pixel whose RMS in some stage is above the limit."""


@dataclass(frozen=True)
class FlagLimits:
    """When a pixel's pedestal is not trusted (defaults: see docs/jungfrau.rst)."""

    pedestal_min: float = 100.0
    """ADU; a mean below it (in any stage with frames) flags the pixel dead."""
    pedestal_max: float = 16000.0
    """ADU; a mean above it flags the pixel dead."""
    rms_max: float = 100.0
    """ADU; an RMS above it (in any stage) flags the pixel noisy (PSI's JFConverter used 100 ADU in gain 0)."""
    right_gain_fraction: float = 0.5
    """A pixel that reports the frame's stage in fewer of that stage's frames than this is dead."""


@dataclass(frozen=True)
class Pedestal:
    """Per stage and pixel of the image: mean and RMS (ADU, NaN where never seen), frames counted; the mask."""

    mean: np.ndarray
    """(3, height, width) float32."""
    rms: np.ndarray
    """(3, height, width) float32."""
    count: np.ndarray
    """(3, height, width) uint32: frames of that stage in which the pixel reported it."""
    frames: tuple[int, int, int]
    """Frames added per stage."""
    mask: np.ndarray
    """(height, width) uint32, NXmx bits DEAD_PIXEL and NOISY_PIXEL (gap pixels left 0)."""
    limits: FlagLimits = field(default_factory=FlagLimits)

    @property
    def n_flagged(self) -> int:
        return int(np.count_nonzero(self.mask))


def flag_pixels(
    mean: np.ndarray,
    rms: np.ndarray,
    count: np.ndarray,
    frames: tuple[int, ...],
    sensor: np.ndarray,
    limits: FlagLimits = FlagLimits(),
) -> np.ndarray:
    """The NXmx mask of the pedestal's untrusted pixels among ``sensor`` (the non-gap pixels).

    Only stages that have frames are judged: without forced-gain frames there is no pedestal of gain 1
    or 2 at all (the conversion then gives such pixels no data), which is no fault of a pixel.
    """
    mask = np.zeros(mean.shape[1:], dtype=np.uint32)
    with np.errstate(invalid="ignore"):
        for stage in range(STAGES):
            if not frames[stage]:
                continue
            wrong_gain = count[stage] < limits.right_gain_fraction * frames[stage]
            out_of_range = (mean[stage] < limits.pedestal_min) | (mean[stage] > limits.pedestal_max)
            mask[(wrong_gain | out_of_range) & sensor] |= DEAD_PIXEL
            mask[(rms[stage] > limits.rms_max) & sensor] |= NOISY_PIXEL
    return mask


class PedestalAccumulator:
    """Adds dark frames of ``shape`` (raw uint16 words) natively; ``result`` gives the :class:`Pedestal`."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = (int(shape[0]), int(shape[1]))
        err = ffi.new("char[256]")
        self._acc = lib.jp_create(self.shape[0] * self.shape[1], err, len(err))
        if self._acc == ffi.NULL:
            raise MemoryError(ffi.string(err).decode())
        self.skipped = 0
        """Frames not used: incomplete (lost packets), without a valid stage, or beyond MAX_FRAMES."""

    def add(self, frame: np.ndarray, complete: bool = True) -> int:
        """Add one dark frame; returns its stage, or -1 if it was skipped (``complete`` False: it lost packets)."""
        if frame.shape != self.shape or frame.dtype != np.uint16 or not frame.flags.c_contiguous:
            raise ValueError(
                f"a pedestal frame is a C-contiguous uint16 {self.shape} image, not {frame.dtype} {frame.shape}"
            )
        stage = lib.jp_add(self._acc, ffi.from_buffer("uint16_t[]", frame)) if complete else -1
        self.skipped += stage < 0
        return int(stage)

    @property
    def frames(self) -> tuple[int, int, int]:
        out = ffi.new("uint64_t[3]")
        lib.jp_frames(self._acc, out)
        return (int(out[0]), int(out[1]), int(out[2]))

    def result(self, sensor: np.ndarray | None = None, limits: FlagLimits = FlagLimits()) -> Pedestal:
        """The pedestal so far; ``sensor`` (bool, image shape) marks the pixels to judge (default: all)."""
        mean = np.empty((STAGES, *self.shape), dtype=np.float32)
        rms = np.empty_like(mean)
        count = np.empty(mean.shape, dtype=np.uint32)
        lib.jp_result(
            self._acc, ffi.from_buffer("float[]", mean), ffi.from_buffer("float[]", rms),
            ffi.from_buffer("uint32_t[]", count),
        )  # fmt: skip
        frames = self.frames
        sensor = np.ones(self.shape, dtype=bool) if sensor is None else sensor
        mask = flag_pixels(mean, rms, count, frames, sensor, limits)
        return Pedestal(mean, rms, count, frames, mask, limits)

    def close(self) -> None:
        if self._acc is not None:
            lib.jp_destroy(self._acc)
            self._acc = None

    def __del__(self) -> None:
        if getattr(self, "_acc", None) is not None:
            self.close()
