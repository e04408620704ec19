"""The simulated Jungfrau module's calibration: what its gain maps and pedestals are (the truth a test
compares against), and its gain maps written in the two forms the server reads.

Deterministic from the seed (``csrc/sim/sim_jungfrau.c``): the same seed gives the same maps here,
in ``--content jungfrau-raw`` and in ``--content jungfrau-pedestal``. Formats: docs/jungfrau.rst.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import detectors
from sim._sender import ffi, lib

PEDESTAL_CYCLE: int = lib.SIM_JF_PEDESTAL_CYCLE
"""Frames of one pedestal-mode cycle (200 in gain 0, 50 forced gain 1, 50 forced gain 2)."""
PIXEL_DEAD: int = lib.SIM_JF_PIXEL_DEAD
PIXEL_NOISY: int = lib.SIM_JF_PIXEL_NOISY
PSI_MAPS = ("G0", "G1", "G2", "HG0", "HG1", "HG2")
"""The gain maps of PSI's binary gain-map file of one module, in file order."""


@dataclass(frozen=True)
class ModuleCalibration:
    """One simulated module's truth, in module pixels (rows, columns)."""

    gains: np.ndarray
    """(3, rows, cols) ADU per keV of gain 0, 1, 2."""
    pedestals: np.ndarray
    """(3, rows, cols) ADU of gain 0, 1, 2."""
    states: np.ndarray
    """(rows, cols): 0 working, PIXEL_DEAD, PIXEL_NOISY."""


def _module_shape(config: dict) -> tuple[int, int]:
    fmt = detectors.config_format(config)
    if not fmt.has_gain_stages:
        raise ValueError(f"detector_type {config['detector_type']} has no gain stages: no gain maps to write")
    return fmt.module_height, fmt.module_width


def module_calibration(config: dict, module: int, seed: int) -> ModuleCalibration:
    """The gains, pedestals and bad pixels the simulator gives ``module`` under ``seed``."""
    rows, cols = _module_shape(config)
    stages = detectors.GAIN_STAGES
    gains = np.empty((stages, rows, cols), dtype=np.float64)
    pedestals = np.empty_like(gains)
    states = np.empty((rows, cols), dtype=np.uint8)
    lib.sim_jf_module_calibration(
        seed,
        module,
        cols,
        rows,
        ffi.from_buffer("double[]", gains),
        ffi.from_buffer("double[]", pedestals),
        ffi.from_buffer("uint8_t[]", states),
    )
    return ModuleCalibration(gains, pedestals, states)


def pedestal_stage(frame: int) -> int:
    """The gain stage pedestal-mode frame number ``frame`` is taken in (0, 1 or 2)."""
    return int(lib.sim_jf_pedestal_stage(frame))


def gain_map_files(path: Path, n_modules: int) -> list[Path]:
    """Where ``write_gain_maps`` puts PSI binary maps: ``path`` itself for one module, else one file per
    module with ``_m<index>`` before the suffix."""
    if n_modules == 1:
        return [path]
    return [path.with_name(f"{path.stem}_m{m}{path.suffix}") for m in range(n_modules)]


def write_gain_maps(path: Path | str, config: dict, seed: int) -> list[Path]:
    """Write every module's gain maps under ``seed``; returns the files written.

    ``.bin``: PSI's binary form, one file per module (see :func:`gain_map_files`): six maps of
    rows x columns float64 (little-endian) in the order G0, G1, G2, HG0, HG1, HG2; the simulator has
    no high-gain mode, so HG0..HG2 are NaN. Any other name: the HDF5 form (dataset ``gains`` of shape
    (3, n_modules x rows, columns), modules stacked in module order, the layout of PSI's jungfrau_utils),
    made from binary files by the server's tool ``python -m daq_server.write.gain_map_file`` (the
    server's one home of HDF5 writing; the simulator never imports the server, it runs the tool).
    """
    path = Path(path)
    n_modules = int(config["n_modules"])
    if path.suffix == ".bin":
        files = gain_map_files(path, n_modules)
        for module, file in enumerate(files):
            gains = module_calibration(config, module, seed).gains
            np.concatenate([gains, np.full_like(gains, np.nan)]).astype("<f8").tofile(file)
        return files
    if importlib.util.find_spec("daq_server") is None:
        raise ValueError("the HDF5 form is written by the server's tool (install the server), or name a .bin file")
    rows, cols = _module_shape(config)
    with tempfile.TemporaryDirectory(prefix="std_daq_sim-") as folder:
        files = write_gain_maps(Path(folder) / "maps.bin", config, seed)
        command = [sys.executable, "-m", "daq_server.write.gain_map_file", "--output", str(path), "--rows", str(rows),
                   "--cols", str(cols), "--source", f"std_daq_sim seed {seed}", *map(str, files)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise ValueError(lines[-1] if lines else f"the gain map tool failed (exit {result.returncode})")
    return [path]
