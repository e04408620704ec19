"""Raw gain-switching pixels (Jungfrau) to photon counts or keV, natively, one image at a time.

energy = (ADC - pedestal[stage]) / gain[stage] per pixel (``csrc/pipeline/jungfrau_conversion.c``), the
stage being the word's gain code (00 gain 0, 01 gain 1, 11 gain 2). Outputs:

* ``photons`` (uint16): n = floor(E / E_photon + 0.5) for E > 0, else 0 (rounded half up, negatives to 0:
  the rule of PSI's JFConverter); :data:`NO_DATA` (65535) where there is no valid value (a lost packet's
  pixel, the invalid gain code 10, a pixel flagged by the pedestal, no pedestal for the pixel's stage),
  :data:`SATURATED` (65534) for gain 2 at the ADC floor or a count of 65534 or more;
* ``keV`` (float32): E, NaN for no valid value, +inf for saturated.

Gap pixels (no module) stay 0. The tables are made once per acquisition from the gain maps (module
pixels, placed into the image like the receiver places modules) and the pedestal (image pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import detectors
from daq_server.pipeline._pipeline import ffi, lib
from detectors.gain_maps import GainMaps

OUTPUTS = {"photons": lib.JC_OUTPUT_PHOTONS, "keV": lib.JC_OUTPUT_KEV}
"""The conversions a config may ask for (``jungfrau_conversion``)."""
DTYPES = {"photons": np.dtype(np.uint16), "keV": np.dtype(np.float32)}
NO_DATA: int = lib.JC_PHOTONS_NO_DATA
SATURATED: int = lib.JC_PHOTONS_SATURATED
HC_KEV_ANGSTROM = 12.398419843320026
"""h c in keV x angstrom (CODATA 2018): E [keV] = HC_KEV_ANGSTROM / wavelength [angstrom]."""


ROUNDING = "n = floor(E / E_photon + 0.5) for E > 0, else 0 (half up, negatives to 0)"
"""The photon rounding rule, as the files state it."""


@dataclass(frozen=True)
class ConversionSpec:
    """What an acquisition's conversion is made of; small and picklable (it travels to the writer
    process, which builds the tables from the files)."""

    output: str
    """``photons`` or ``keV``."""
    photon_energy_kev: float | None
    gain_maps: tuple[str, ...]
    """The gain map files the config names."""
    pedestal_file: str
    """The pedestal in use (the server's copy in its state folder)."""
    pedestal_source: str
    """The file the pedestal acquisition wrote (named in the output files)."""
    pedestal_sha256: str = ""

    @property
    def dtype(self) -> np.dtype:
        return DTYPES[self.output]

    def describe(self) -> dict:
        """For the acquisition's status and log entry."""
        return {
            "output": self.output,
            "photon_energy_kev": self.photon_energy_kev,
            "pedestal_file": self.pedestal_source,
            "pedestal_sha256": self.pedestal_sha256,
            "gain_maps": list(self.gain_maps),
        }


def image_gains(config: dict, gain_maps: GainMaps) -> np.ndarray:
    """(3, height, width) float32 gains in image pixels; 0 where no module lies (gaps)."""
    if gain_maps.n_modules != int(config["n_modules"]):
        raise ValueError(f"the gain maps hold {gain_maps.n_modules} modules, the config {config['n_modules']}")
    shape = (int(config["image_pixel_height"]), int(config["image_pixel_width"]))
    gains = np.zeros((3, *shape), dtype=np.float32)
    for module in range(gain_maps.n_modules):
        rows, cols = detectors.module_placement(config, module)
        gains[:, rows[:, None], cols[None, :]] = gain_maps.gains[module]
    return gains


class JungfrauConversion:
    """Tables for one acquisition; :meth:`convert` may run in several threads at once (also from C)."""

    def __init__(
        self,
        gains: np.ndarray,
        pedestal: np.ndarray,
        flagged: np.ndarray,
        output: str,
        photon_energy_kev: float | None = None,
    ):
        """``gains`` and ``pedestal``: (3, height, width) ADU/keV and ADU in image pixels (gains 0: gap);
        ``flagged``: bool (height, width), pixels always given no data; ``photon_energy_kev`` for photons."""
        if output not in OUTPUTS:
            raise ValueError(f"conversion must be one of {', '.join(OUTPUTS)}, not {output!r}")
        if gains.shape != pedestal.shape or gains.shape[0] != 3 or flagged.shape != gains.shape[1:]:
            raise ValueError(f"gains {gains.shape}, pedestal {pedestal.shape} and flags {flagged.shape} do not match")
        if output == "photons" and not (photon_energy_kev and photon_energy_kev > 0):
            raise ValueError("photon counts need the photon energy")
        self.output = output
        self.shape = tuple(int(n) for n in gains.shape[1:])
        self.photon_energy_kev = float(photon_energy_kev) if output == "photons" else None
        self._gains = np.ascontiguousarray(gains, dtype=np.float32)
        self._pedestal = np.ascontiguousarray(pedestal, dtype=np.float32)
        self._flagged = np.flatnonzero(flagged).astype(np.uint64)
        err = ffi.new("char[256]")
        self.tables = lib.jc_create(
            self._gains[0].size,
            OUTPUTS[output],
            ffi.from_buffer("float[]", self._pedestal),
            ffi.from_buffer("float[]", self._gains),
            self.photon_energy_kev or 0.0,
            ffi.from_buffer("uint64_t[]", self._flagged),
            self._flagged.size,
            err,
            len(err),
        )
        if self.tables == ffi.NULL:
            raise ValueError(ffi.string(err).decode())

    @property
    def dtype(self) -> np.dtype:
        return DTYPES[self.output]

    @property
    def unit(self) -> str:
        return self.output

    @property
    def image_bytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    def convert(self, raw: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, int]]:
        """Convert one raw image (uint16, C-contiguous, the table shape); returns the image and its counts:
        pixels per gain stage, no-data and saturated pixels."""
        if raw.shape != self.shape or raw.dtype != np.uint16 or not raw.flags.c_contiguous:
            raise ValueError(f"a raw image is a C-contiguous uint16 {self.shape} array, not {raw.dtype} {raw.shape}")
        if out is None:
            out = np.empty(self.shape, dtype=self.dtype)
        elif out.shape != self.shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"the output must be a C-contiguous {self.dtype} {self.shape} array")
        counts = ffi.new("jc_counts *")
        lib.jc_convert(self.tables, ffi.from_buffer("uint16_t[]", raw), ffi.from_buffer(out), counts)
        return out, counts_dict(counts)

    def close(self) -> None:
        if self.tables is not None and self.tables != ffi.NULL:
            lib.jc_destroy(self.tables)
        self.tables = None

    def __del__(self) -> None:
        if getattr(self, "tables", None) is not None:
            self.close()


def counts_dict(counts) -> dict[str, int]:
    """A ``jc_counts`` as a dict (pixels in gain 0, 1, 2; no data; saturated)."""
    return {
        "gain0_pixels": int(counts.stage_pixels[0]),
        "gain1_pixels": int(counts.stage_pixels[1]),
        "gain2_pixels": int(counts.stage_pixels[2]),
        "no_data_pixels": int(counts.no_data),
        "saturated_pixels": int(counts.saturated),
    }


def photon_energy_kev(incident_wavelength: float | None = None, photon_energy: float | None = None) -> float | None:
    """The photon energy in keV from a wavelength in angstrom or an energy in keV (None if neither)."""
    if photon_energy is not None:
        return float(photon_energy)
    if incident_wavelength is not None:
        return HC_KEV_ANGSTROM / float(incident_wavelength)
    return None
