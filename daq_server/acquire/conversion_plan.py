"""Which conversion a write request gets (gain-switching detectors with ``jungfrau_conversion`` in the config).

* a pedestal acquisition (``"pedestal": true``) is not converted: it writes the pedestal file;
* ``"raw": true`` writes the raw words although the config asks for a conversion;
* otherwise the config's conversion (``photons`` or ``keV``) with the config's gain maps and the
  pedestal in use (``daq_server.acquire.pedestal_store``); photons need a photon energy: the request's
  ``incident_energy`` (keV) or ``incident_wavelength`` (angstrom), else the beamline's default wavelength
  in the config (``nexus.incident_wavelength``).

A request that cannot be served so is refused with :class:`ConversionRefused` (a 4xx), before any file exists.
"""

from __future__ import annotations

import detectors
from daq_server.acquire.pedestal_store import PedestalStore
from daq_server.pipeline.jungfrau_conversion import ConversionSpec, photon_energy_kev
from daq_server.write.request import WriteRequest


class ConversionRefused(ValueError):
    """The request and the conversion do not go together; the message says what to do."""


def plan_conversion(request: WriteRequest, config: dict, store: PedestalStore) -> ConversionSpec | None:
    """The conversion of ``request`` under ``config`` (None: the images are written as they come)."""
    gain_stages = detectors.has_gain_stages(config)
    if request.pedestal:
        if not gain_stages:
            raise ConversionRefused(
                f"A pedestal is for detectors with gain-switching pixels (jungfrau); this one is a "
                f"{config['detector_type']}."
            )
        return None
    output = config.get("jungfrau_conversion")
    if request.raw or not output or not gain_stages:
        return None
    pedestal = store.describe()
    if pedestal is None:
        raise ConversionRefused(
            f"The config converts to {output}, but no pedestal was taken yet: take one first (a write request with "
            '"pedestal": true while the detector sends pedestal-mode dark frames), or write raw data ("raw": true).'
        )
    shape = [int(config["image_pixel_height"]), int(config["image_pixel_width"])]
    if pedestal["shape"] != shape:
        raise ConversionRefused(
            f"The pedestal in use ({pedestal['file']}) is of {pedestal['shape'][1]} x {pedestal['shape'][0]} images, "
            f"the config's are {shape[1]} x {shape[0]}: take a new pedestal."
        )
    energy = None
    if output == "photons":
        nexus = request.nexus
        beamline = (config.get("nexus") or {}).get("incident_wavelength")
        energy = photon_energy_kev(nexus.incident_wavelength, nexus.incident_energy) or photon_energy_kev(beamline)
        if energy is None:
            raise ConversionRefused(
                "Photon counts need the photon energy: give incident_energy (keV) or incident_wavelength (angstrom) "
                "in the write request, or the beamline's default in the config (nexus.incident_wavelength)."
            )
    maps = config["jungfrau_gain_maps"]
    return ConversionSpec(
        output=output,
        photon_energy_kev=float(energy) if energy is not None else None,
        gain_maps=(maps,) if isinstance(maps, str) else tuple(maps),
        pedestal_file=str(store.path),
        pedestal_source=str(pedestal["file"]),
        pedestal_sha256=str(pedestal["sha256"]),
    )
