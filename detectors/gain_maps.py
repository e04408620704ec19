"""Gain maps of gain-switching detectors (Jungfrau): per module and gain stage, every pixel's gain in ADU/keV.

Two file forms are read (docs/jungfrau.rst says where each comes from):

* PSI's binary form, one file per module (``gainMaps_M<nnn>_<date>.bin`` from PSI's detector group):
  consecutive maps of rows x columns float64 (little-endian), in the order G0, G1, G2, HG0, HG1, HG2;
  files of 3 maps (older ones) to 6 are accepted and the first three used (no high-gain mode here).
* The HDF5 form of PSI's ``jungfrau_utils``: dataset ``gains`` of shape (3 to 6, n_modules x rows,
  columns), the modules stacked in module order, stage first.

The factors are used as stored, signs included (in gain 1 and 2 the ADC value falls as charge collects;
the simulator's maps are negative there). A map that cannot be used (wrong size, NaN or infinite values,
zero gains, a gain 0 that is not positive) is refused with a :class:`GainMapError` that says where.

Part of ``detectors`` (the calibration files of a detector type) so that the config's validation, the
conversion and the writer all read them the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

import detectors

HDF5_DATASET = "gains"
"""The dataset of the HDF5 form."""
MAX_MAPS = 6
"""Maps a PSI file may hold (G0, G1, G2, HG0, HG1, HG2); the first three are used."""


class GainMapError(ValueError):
    """Gain maps that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class GainMaps:
    """Every module's gains: ``gains[module, stage, row, column]`` in ADU/keV, and where they came from."""

    gains: np.ndarray
    files: tuple[str, ...]
    sha256: tuple[str, ...]

    @property
    def n_modules(self) -> int:
        return int(self.gains.shape[0])

    def describe(self) -> dict:
        """Path and sha256 of each file (for the output file and the status)."""
        return {"files": list(self.files), "sha256": list(self.sha256)}


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _module_shape(config: dict) -> tuple[int, int]:
    fmt = detectors.config_format(config)
    if not fmt.has_gain_stages:
        raise GainMapError(f"detector_type {config['detector_type']} has no gain stages: gain maps do not apply")
    return fmt.module_height, fmt.module_width


def read_psi_binary(path: Path | str, rows: int, cols: int) -> np.ndarray:
    """One module's (3, rows, cols) gains from PSI's binary file; GainMapError if its size does not fit."""
    path = Path(path)
    map_bytes = rows * cols * 8
    try:
        size = path.stat().st_size
    except OSError as error:
        raise GainMapError(f"gain map file {path}: {error.strerror}") from None
    if size % map_bytes or not 3 <= size // map_bytes <= MAX_MAPS:
        raise GainMapError(
            f"gain map file {path}: {size} bytes is not 3 to {MAX_MAPS} maps of {rows} x {cols} float64 "
            f"({map_bytes} bytes each): not a PSI gain map of this module size"
        )
    try:
        return np.fromfile(path, dtype="<f8", count=3 * rows * cols).reshape(3, rows, cols)
    except OSError as error:
        raise GainMapError(f"gain map file {path}: {error}") from None


def read_hdf5(path: Path | str, n_modules: int, rows: int, cols: int) -> np.ndarray:
    """Every module's (n_modules, 3, rows, cols) gains from the HDF5 form; GainMapError if it does not fit."""
    try:
        with h5py.File(path, "r") as f:
            dataset = f.get(HDF5_DATASET)
            if not isinstance(dataset, h5py.Dataset):
                raise GainMapError(f"gain map file {path}: no dataset '{HDF5_DATASET}'")
            shape = dataset.shape
            expected = f"(3 to {MAX_MAPS}, {n_modules * rows}, {cols})"
            if len(shape) != 3 or not 3 <= shape[0] <= MAX_MAPS or shape[1:] != (n_modules * rows, cols):
                raise GainMapError(
                    f"gain map file {path}: dataset '{HDF5_DATASET}' has shape {shape}, expected {expected} "
                    f"for {n_modules} module(s) of {rows} x {cols}"
                )
            stacked = dataset[:3].astype(np.float64)
    except OSError as error:
        raise GainMapError(f"gain map file {path}: {error}") from None
    return stacked.reshape(3, n_modules, rows, cols).transpose(1, 0, 2, 3).copy()


def check_gains(gains: np.ndarray, where: list[str]) -> None:
    """GainMapError unless every gain is finite and non-zero and gain 0 positive (``where[m]`` names
    module m's file)."""
    names = ("G0", "G1", "G2")
    for m, module in enumerate(gains):
        for stage, values in enumerate(module):
            for problem, bad in (
                ("not a finite number", ~np.isfinite(values)),
                ("zero", values == 0),
                ("not positive", values <= 0 if stage == 0 else np.zeros_like(values, dtype=bool)),
            ):
                if bad.any():
                    row, col = (int(v) for v in np.argwhere(bad)[0])
                    raise GainMapError(
                        f"gain map {where[m]}: {int(bad.sum())} gains of module {m} {names[stage]} are {problem} "
                        f"(first at row {row}, column {col})"
                    )


def read_gain_maps(source: str | list[str], config: dict) -> GainMaps:
    """The gain maps a config names: one HDF5 file, or PSI binary files (one per module, in module order;
    a single name for a one-module detector). GainMapError with the reason if they cannot be used."""
    rows, cols = _module_shape(config)
    n_modules = int(config["n_modules"])
    names = [source] if isinstance(source, str) else list(source)
    if not names:
        raise GainMapError("no gain map file named")
    binary = [Path(name).suffix == ".bin" for name in names]
    if any(binary):
        if not all(binary) or len(names) != n_modules:
            raise GainMapError(
                f"PSI binary gain maps come one .bin file per module: name {n_modules} (in module order), "
                f"not {len(names)}"
            )
        gains = np.stack([read_psi_binary(name, rows, cols) for name in names])
        where = names
    else:
        if len(names) != 1:
            raise GainMapError("HDF5 gain maps come in one file for all modules")
        gains = read_hdf5(names[0], n_modules, rows, cols)
        where = names * n_modules
    check_gains(gains, where)
    return GainMaps(gains, tuple(str(Path(n).resolve()) for n in names), tuple(file_sha256(n) for n in names))
