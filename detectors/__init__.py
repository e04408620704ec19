"""The one Python description of each detector type, shared by server, simulator, bsread and benchmark.

UDP detector types (Jungfrau, Eiger, GigaFrost) are described once, in C, in
``csrc/detectors/detector_formats.h`` (packet layout, pixel codec, placement); this package reads that
description through cffi (``detectors._formats``) instead of repeating it. What only Python needs is here:
the sensor (pixel size, material, thickness), how a type's images are placed (:class:`DetectorType`) and
where a module's chips lie (:func:`chip_runs`). bsread streams carry whole images, so only their bit depths
and placement are described. The rest of the project asks this package; it never names a type itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors._formats import ffi, lib

UDP_TYPES: tuple[str, ...] = tuple(ffi.string(lib.det_kind_name(kind)).decode() for kind in range(lib.N_DET_KINDS))
"""Detector types whose UDP packet streams the receiver assembles and the simulator sends."""

STREAM_BIT_DEPTHS = {"bsread": (8, 16, 32)}
"""Detector types that stream whole images (ZeroMQ), with the bit depths they carry."""

DETECTOR_TYPES: tuple[str, ...] = UDP_TYPES + tuple(STREAM_BIT_DEPTHS)
"""Every ``detector_type`` a config may name."""

MAX_MODULES: int = lib.MAX_MODULES
"""Modules (UDP streams) one receiver assembles."""

CHIP_PIXELS: int = lib.CHIP_PIXELS
"""Side of one readout chip in pixels (a module is a grid of them)."""
GAIN_STAGES: int = lib.GAIN_STAGES
"""Gain stages of a gain-switching pixel (Jungfrau): 0 (most sensitive), 1 and 2."""
GAIN_CODE_SHIFT: int = lib.GAIN_CODE_SHIFT
"""A raw word's gain code is its bits from here up (two bits: 00 gain 0, 01 gain 1, 11 gain 2, 10 invalid)."""
GAIN_ADC_MASK: int = lib.GAIN_ADC_MASK
"""A raw word's ADC value is its bits under this mask (14 bits)."""
GAIN_CODE_INVALID: int = lib.GAIN_CODE_INVALID
"""The gain code no working pixel sends (binary 10)."""
GAIN_CODES: tuple[int, ...] = (0, 1, 3)
"""The gain code of gain stage 0, 1 and 2."""

_IMAGE_DTYPES = {1: np.uint8, 2: np.uint16, 4: np.uint32}

MODULES, STREAMS, WHOLE_IMAGES = "modules", "streams", "whole images"
"""How a type's images are placed: each module by its ``module_positions`` (and split over hosts by them);
by the type's own fixed rule for its streams (``module_positions`` must be {}); or whole images that need no
placement."""


@dataclass(frozen=True)
class DetectorType:
    """What the files and the config rules need to know of a detector type beyond its packets."""

    name: str
    placement: str
    pixel_size_um: float | None = None
    """Pixel pitch, when the config does not give one."""
    sensor_material: str | None = None
    sensor_thickness_um: float | None = None

    @property
    def placed_by_module(self) -> bool:
        """Modules placed by ``module_positions``: they can be split over receiver hosts."""
        return self.placement == MODULES

    @property
    def streams_whole_images(self) -> bool:
        """Images arrive whole (ZeroMQ), not as UDP packets of modules."""
        return self.placement == WHOLE_IMAGES


_TYPES = {
    "jungfrau": DetectorType("jungfrau", MODULES, 75.0, "Si", 320.0),
    "eiger": DetectorType("eiger", MODULES, 75.0, "Si", 450.0),
    "gigafrost": DetectorType("gigafrost", STREAMS, 11.0),
    "bsread": DetectorType("bsread", WHOLE_IMAGES),
}


def describe(detector_type: str) -> DetectorType:
    """The description of ``detector_type``; ValueError for an unknown one."""
    try:
        return _TYPES[detector_type]
    except KeyError:
        raise ValueError(f"unknown detector_type '{detector_type}' (known: {', '.join(DETECTOR_TYPES)})") from None


def chip_runs(span: int, module_pixels: int) -> list[tuple[int, int]]:
    """Where a module's chips lie along one axis of its span in the image: (start, stop) offsets from the
    span's start. A span larger than the module holds equal gaps between neighbouring chips (the receiver's
    placement rule, ``csrc/receiver/image_assembly.c``); ValueError if the span cannot hold the module."""
    chips = max(1, module_pixels // CHIP_PIXELS)
    extra = span - module_pixels
    if extra < 0 or (chips == 1 and extra) or (chips > 1 and extra % (chips - 1)):
        raise ValueError(f"a span of {span} pixels cannot hold a module of {module_pixels}")
    if chips == 1:
        return [(0, span)]
    size, gap = module_pixels // chips, extra // (chips - 1)
    return [(k * (size + gap), k * (size + gap) + size) for k in range(chips)]


def image_dtype(bit_depth: int) -> np.dtype:
    """The dtype of an assembled image pixel for a bit depth on the wire (4 -> uint8, 12 -> uint16)."""
    for size, dtype in _IMAGE_DTYPES.items():
        if bit_depth <= 8 * size:
            return np.dtype(dtype)
    raise ValueError(f"no image dtype holds {bit_depth} bit pixels")


def kind(detector_type: str) -> int:
    """The C ``DET_KIND_*`` of a UDP detector type; ValueError for another name."""
    value = lib.det_kind_by_name(detector_type.encode())
    if value < 0:
        raise ValueError(
            f"detector_type '{detector_type}' is not received from UDP (supported: {', '.join(UDP_TYPES)})"
        )
    return value


@dataclass(frozen=True)
class DetectorFormat:
    """Packet and module facts of one UDP detector type at one bit depth and image size."""

    detector_type: str
    kind: int
    wire_bit_depth: int
    packet_size: int
    packets_per_frame: int
    module_width: int
    module_height: int
    dtype: np.dtype
    gain_stages: int = 0
    """Gain-switching pixels (Jungfrau): the number of gain stages their words encode; 0 for counters."""

    @property
    def has_gain_stages(self) -> bool:
        """Raw pixels are gain code + ADC words (need pedestals and gains to mean photons)."""
        return self.gain_stages > 0

    @property
    def wire_dtype(self) -> np.dtype:
        """The dtype the simulator's module pixels are given in (4 and 12 bit unpacked)."""
        return image_dtype(self.wire_bit_depth)


def detector_format(detector_type: str, bit_depth: int, image_width: int, image_height: int) -> DetectorFormat:
    """Look up the format; ValueError for an unknown type, bit depth or impossible image size."""
    fmt = ffi.new("det_format *")
    rc = lib.det_format_lookup(kind(detector_type), int(bit_depth), int(image_width), int(image_height), fmt)
    if rc == lib.FORMAT_BAD_BIT_DEPTH:
        raise ValueError(f"bit_depth {bit_depth} is not supported by detector_type '{detector_type}'")
    if rc != lib.FORMAT_OK:
        hint = " (width a multiple of 24, height of 4)" if detector_type == "gigafrost" else ""
        raise ValueError(
            f"an image of {image_width} x {image_height} pixels is not possible for detector_type "
            f"'{detector_type}'{hint}"
        )
    return DetectorFormat(
        detector_type=detector_type,
        kind=fmt.kind,
        wire_bit_depth=fmt.bit_depth,
        packet_size=fmt.packet_size,
        packets_per_frame=fmt.packets_per_frame,
        module_width=fmt.module_width,
        module_height=fmt.module_height,
        dtype=np.dtype(_IMAGE_DTYPES[fmt.image_bytes_per_pixel]),
        gain_stages=fmt.gain_stages,
    )


def config_format(config: dict) -> DetectorFormat:
    """The format of a detector config (the JSON the server and the simulator read)."""
    return detector_format(
        config["detector_type"], config["bit_depth"], config["image_pixel_width"], config["image_pixel_height"]
    )


def stream_dtype(detector_type: str, bit_depth: int) -> np.dtype:
    """The image dtype of a streaming (bsread) detector; ValueError for a bit depth it does not carry."""
    allowed = STREAM_BIT_DEPTHS[detector_type]
    if bit_depth not in allowed:
        raise ValueError(
            f"bit_depth {bit_depth} is not supported for {detector_type} (use {', '.join(map(str, allowed))})"
        )
    return image_dtype(bit_depth)


def has_gain_stages(config: dict) -> bool:
    """Does this config's detector send gain-switching pixels (Jungfrau)? False for any other type."""
    if config.get("detector_type") not in UDP_TYPES:
        return False
    try:
        return config_format(config).has_gain_stages
    except ValueError:
        return False


def module_placement(config: dict, module: int) -> tuple[np.ndarray, np.ndarray]:
    """Image rows and columns of module ``module``'s rows and columns (a config with module_positions):
    its chips where :func:`chip_runs` puts them; a start beyond the end mirrors that axis."""
    fmt = config_format(config)
    position = (config.get("module_positions") or {}).get(str(module))
    if position is None:
        raise ValueError(f"module {module} has no module_positions entry")
    sx, sy, ex, ey = (int(v) for v in position)

    def axis(start: int, end: int, size: int) -> np.ndarray:
        offsets = np.concatenate([np.arange(a, b) for a, b in chip_runs(abs(end - start) + 1, size)])
        return start + (1 if end >= start else -1) * offsets

    return axis(sy, ey, fmt.module_height), axis(sx, ex, fmt.module_width)
