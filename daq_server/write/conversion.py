"""A converting acquisition in the writer: its tables built from the files a ``ConversionSpec`` names, and
what the output file says about the conversion.

Reading the gain maps and the pedestal and building the tables takes a moment per module, so the
writer process keeps the last one it built and uses it again while the files are unchanged (their
path, size and modification time).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from daq_server.pipeline.jungfrau_conversion import (
    NO_DATA,
    ROUNDING,
    SATURATED,
    ConversionSpec,
    JungfrauConversion,
    image_gains,
)
from daq_server.write.pedestal_file import read_pedestal_file
from daq_server.write.pixel_mask import GAP_PIXEL
from detectors.gain_maps import read_gain_maps


@dataclass(frozen=True)
class OpenConversion:
    """The tables of one spec, the pixels the pedestal flagged (NXmx bits, no gap bit) and the file record."""

    conversion: JungfrauConversion
    flags: np.ndarray
    record: dict


_cache: tuple[tuple, OpenConversion] | None = None
_cache_lock = threading.Lock()


def _file_key(path: str) -> tuple:
    info = os.stat(path)
    return path, info.st_size, info.st_mtime_ns


def open_conversion(spec: ConversionSpec, config: dict, shape: tuple[int, int]) -> OpenConversion:
    """The conversion of ``spec`` for images of ``shape``; ValueError (or OSError) naming what does not fit."""
    global _cache
    key = (spec, tuple(_file_key(p) for p in (*spec.gain_maps, spec.pedestal_file)), shape, config["n_modules"])
    with _cache_lock:
        if _cache is not None and _cache[0] == key:
            return _cache[1]
        gain_maps = read_gain_maps(list(spec.gain_maps), config)
        pedestal = read_pedestal_file(spec.pedestal_file)
        if pedestal.shape != tuple(shape):
            raise ValueError(
                f"the pedestal {spec.pedestal_source} is of {pedestal.shape[1]} x {pedestal.shape[0]} images, "
                f"these are {shape[1]} x {shape[0]}: take a new pedestal"
            )
        flags = pedestal.mask & ~np.uint32(GAP_PIXEL)
        conversion = JungfrauConversion(
            image_gains(config, gain_maps), pedestal.mean, flags != 0, spec.output, spec.photon_energy_kev
        )
        record = {
            "output": spec.output,
            "photon_energy_kev": spec.photon_energy_kev,
            "rounding": ROUNDING if spec.output == "photons" else "",
            "no_data_value": NO_DATA if spec.output == "photons" else "NaN",
            "saturated_value": SATURATED if spec.output == "photons" else "+inf",
            "pedestal_file": spec.pedestal_source,
            "pedestal_sha256": pedestal.sha256,
            "pedestal_gain_stage_frames": list(pedestal.gain_stage_frames),
            "gain_map_files": list(gain_maps.files),
            "gain_map_sha256": list(gain_maps.sha256),
            "flagged_pixels": int(np.count_nonzero(flags)),
        }
        opened = OpenConversion(conversion, flags, record)
        _cache = (key, opened)
        return opened
