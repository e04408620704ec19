"""Jungfrau pedestal and conversion, for both devices: ``pedestal_plan`` and what the configuration shows.

A DAQ whose config has ``jungfrau_conversion`` writes photon counts or keV, converted with the pedestal
it took last (write request ``"pedestal": true``); the devices show the conversion, the gain maps and the
pedestal in use in ``describe_configuration()`` / ``read_configuration()``. Everything comes from the
DAQ through ``std_daq_client`` (config and status).
"""

from __future__ import annotations

import json
import time
from typing import Any

from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp

from std_daq_client.acquisitions import AcquisitionState

from ._access import DaqAccess
from ._errors import StdDaqAcquisitionError
from ._signals import CONFIG_CACHE_S, STATUS_CACHE_S, _access_of, _DaqSignal

CONVERSION_FIELDS: dict[str, str] = {
    "conversion": "What the files hold: photons, keV or raw (the config's jungfrau_conversion).",
    "gain_maps": "The gain map files the DAQ converts with (JSON text; empty without).",
    "pedestal_file": "The pedestal in use: the file its pedestal acquisition wrote (empty before the first).",
    "pedestal_sha256": "sha256 of the pedestal in use.",
}
"""Configuration fields of the conversion, with their descriptions."""


def conversion_values(config: dict[str, Any], status: dict[str, Any]) -> dict[str, str]:
    """The CONVERSION_FIELDS of a DAQ config and status (strings; empty when not known)."""
    maps = config.get("jungfrau_gain_maps")
    pedestal = status.get("pedestal") or {}
    return {
        "conversion": str(config.get("jungfrau_conversion") or "raw"),
        "gain_maps": json.dumps(maps) if maps else "",
        "pedestal_file": str(pedestal.get("file") or ""),
        "pedestal_sha256": str(pedestal.get("sha256") or ""),
    }


class ConversionSignal(_DaqSignal):
    """One of :data:`CONVERSION_FIELDS` of the StdDaq device's DAQ (configuration, read-only, a string)."""

    def __init__(self, *, field: str, name: str, parent: Any = None, **kwargs: Any):
        self.field = field
        kwargs.setdefault("kind", "config")
        super().__init__(data_type="string", name=name, parent=parent, **kwargs)
        self._metadata.update(write_access=False)

    @property
    def _source(self) -> str:
        return f"{_access_of(self).url_base}/daq/config+/writer/status:{self.field}"

    def _fetch(self) -> Any:
        access = _access_of(self)
        return conversion_values(access.config(max_age=CONFIG_CACHE_S), access.status(max_age=STATUS_CACHE_S))[
            self.field
        ]


def _device_access(det: Any) -> DaqAccess:
    access = getattr(det, "_daq_access", None) or getattr(det, "access", None)
    if not isinstance(access, DaqAccess):
        raise TypeError(f"{getattr(det, 'name', det)!r} is not a std-daq device (StdDaq or StdDaqDetector)")
    return access


def _pedestal_file(det: Any) -> str:
    """A new file name from the device's own path provider, marked as a pedestal."""
    provider = getattr(det, "path_provider", None)
    if provider is not None:  # StdDaq: a callable giving a new path
        path = str(provider())
        return path[: -len(".h5")] + "_pedestal.h5" if path.endswith(".h5") else path + "_pedestal.h5"
    info = det.data_logic.path_provider(det.name)  # StdDaqDetector: an ophyd-async PathProvider
    return str(info.directory_path / f"{info.filename}_pedestal.h5")


def pedestal_plan(det: Any, n_frames: int = 1000, output_file: str | None = None, poll_interval: float = 0.2,
                  timeout: float | None = None):  # fmt: skip
    """A bluesky plan: take a Jungfrau pedestal with the DAQ of ``det`` (a StdDaq or StdDaqDetector).

    Sends a write request ``{"pedestal": true, "n_images": n_frames}`` for ``output_file`` (default: a new
    name from the device's path provider, ending in ``_pedestal.h5``) and waits until the DAQ has written
    the pedestal file and taken it into use. The detector must meanwhile send the dark frames of its
    pedestal mode (gain 0, forced gain 1, forced gain 2; with the simulator: ``--content jungfrau-pedestal``).
    Returns the DAQ's description of the pedestal now in use; raises :class:`StdDaqAcquisitionError` if the
    acquisition failed or its pedestal was not taken into use. Aborting the plan stops the acquisition.
    """
    access = _device_access(det)
    path = output_file or _pedestal_file(det)
    started = time.monotonic()

    def run():
        access.start_writer(path, int(n_frames), {"pedestal": True})
        while True:
            yield from bps.sleep(poll_interval)
            acquisition = access.acquisition(path)
            if acquisition is not None and acquisition["state"] in AcquisitionState.ENDED:
                break
            if timeout is not None and time.monotonic() - started > timeout:
                raise StdDaqAcquisitionError(f"the pedestal {path} did not end within {timeout} s")
        pedestal = access.status().get("pedestal") or {}
        if acquisition["state"] != AcquisitionState.FINISHED or pedestal.get("file") != path:
            raise StdDaqAcquisitionError(f"pedestal {path} {acquisition['state']}: {acquisition['message']}")
        return pedestal

    def stop_if_running():
        yield from bps.null()
        access.stop_if_ours(path)

    return (yield from bpp.finalize_wrapper(run(), stop_if_running()))
