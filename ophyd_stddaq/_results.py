"""The DAQ's per-image results (config ``"results"``: ROI sums, radial profile, spot count) as readings.

Data keys, for an ophyd-async device named ``det``: ``det-<roi>_sum`` for each ROI (hinted: tables and plots
of step scans), ``det-radial_profile`` (1-D, one value per bin; the bins' centres are in the file,
``/entry/results/radial_profile/q`` or ``two_theta``) and ``det-spot_count``; the ophyd (v1) device names them
as its other readings, ``det_<roi>_sum``, ``det_radial_profile``, ``det_spot_count``.

* In step scans (one event per image) the values come from the DAQ status: ``acquisition.stats.last_image``
  carries the ``results`` of the last image written; an event takes them only when that is the event's image,
  else NaN (spot count -1), like the image statistics (``_statistics``).
* In fly scans of the ophyd-async detector (N images per ``prepare``) the same keys are StreamResources of the
  file's datasets (``/entry/results/...``), read by tiled / databroker with the images.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

RESULTS_GROUP = "/entry/results"
PROFILE_DATASET = RESULTS_GROUP + "/radial_profile/intensity"
ROI_DATASET = RESULTS_GROUP + "/roi_sums/{}"
SPOT_DATASET = RESULTS_GROUP + "/spot_count/spot_count"
METADATA_CHUNK = 4096
PROFILE_CHUNK = 1024


class ResultKeys:
    """The results a DAQ config asks for (its ``results``, possibly None), as the data keys of device ``name``
    (``separator``: ``-`` for ophyd-async, ``_`` for ophyd v1)."""

    def __init__(self, name: str, spec: dict[str, Any] | None, separator: str = "-") -> None:
        self.name = name
        self.separator = separator
        spec = spec or {}
        self.rois: list[str] = list(spec.get("rois") or {})
        profile = spec.get("radial_profile")
        self.n_bins: int | None = int(profile.get("bins", 200)) if profile else None
        self.unit: str = profile.get("unit", "q") if profile else ""
        self.spots = spec.get("spots") is not None

    def __bool__(self) -> bool:
        return bool(self.rois) or self.n_bins is not None or self.spots

    def roi_key(self, roi: str) -> str:
        return f"{self.name}{self.separator}{roi}_sum"

    @property
    def profile_key(self) -> str:
        return f"{self.name}{self.separator}radial_profile"

    @property
    def spot_key(self) -> str:
        return f"{self.name}{self.separator}spot_count"

    @property
    def hinted(self) -> list[str]:
        """The ROI sums: what a step scan's table and plots show."""
        return [self.roi_key(roi) for roi in self.rois]

    def describe(self, source: str) -> dict[str, dict[str, Any]]:
        """Data keys (event-model DataKey dicts) of the readings taken from the status at ``source``."""
        keys: dict[str, dict[str, Any]] = {}
        for roi in self.rois:
            keys[self.roi_key(roi)] = {"source": f"{source}/roi_sums/{roi}", "dtype": "number", "shape": [],
                                       "dtype_numpy": "<f8"}  # fmt: skip
        if self.n_bins is not None:
            keys[self.profile_key] = {"source": f"{source}/radial_profile ({self.unit} bins)", "dtype": "array",
                                      "shape": [self.n_bins], "dtype_numpy": "<f8"}  # fmt: skip
        if self.spots:
            keys[self.spot_key] = {"source": f"{source}/spot_count", "dtype": "integer", "shape": [],
                                   "dtype_numpy": "<i8"}  # fmt: skip
        return keys

    def values(self, acquisition: dict[str, Any] | None, index: int) -> dict[str, Any]:
        """Reading values of image ``index`` (0-based) from a DAQ acquisition object: NaN (spot count -1) when
        its ``stats.last_image`` is missing, another image, or without results."""
        stats = (acquisition or {}).get("stats")
        last = stats.get("last_image") if isinstance(stats, dict) else None
        ok = isinstance(last, dict) and last.get("index") == index and index >= 0
        results = (last.get("results") if ok else None) or {}
        sums = results.get("roi_sums") or {}
        out: dict[str, Any] = {self.roi_key(roi): _number(sums.get(roi)) for roi in self.rois}
        if self.n_bins is not None:
            profile = results.get("radial_profile")
            values = [_number(v) for v in profile] if isinstance(profile, list) else [math.nan] * self.n_bins
            out[self.profile_key] = np.array(values, dtype=np.float64)
        if self.spots:
            count = results.get("spot_count")
            out[self.spot_key] = int(count) if isinstance(count, int) else -1
        return out

    def stream_resources(self, n_images: int) -> list[dict[str, Any]]:
        """The file's results datasets as StreamResource arguments (``data_key``, ``shape``, ``chunk_shape``,
        ``dtype_numpy``, ``parameters``) for an acquisition of ``n_images``."""
        chunk = max(1, min(n_images, METADATA_CHUNK))
        resources = [
            {"data_key": self.roi_key(roi), "shape": (), "chunk_shape": (chunk,), "dtype_numpy": "<f8",
             "parameters": {"dataset": ROI_DATASET.format(roi)}}
            for roi in self.rois
        ]  # fmt: skip
        if self.n_bins is not None:
            resources.append({"data_key": self.profile_key, "shape": (self.n_bins,),
                              "chunk_shape": (min(chunk, PROFILE_CHUNK), self.n_bins), "dtype_numpy": "<f8",
                              "parameters": {"dataset": PROFILE_DATASET}})  # fmt: skip
        if self.spots:
            resources.append({"data_key": self.spot_key, "shape": (), "chunk_shape": (chunk,), "dtype_numpy": "<i4",
                              "parameters": {"dataset": SPOT_DATASET}})  # fmt: skip
        return resources


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


class ResultReadings:
    """Mixin of the ophyd (v1) device: the results of each step-scan event's image as readings (see module).

    The device calls :meth:`_stage_results` with the DAQ config when it stages and :meth:`_put_results` with
    the acquisition object when an event's image is written."""

    _result_keys: ResultKeys | None = None
    _result_values: dict[str, Any] | None = None

    def _stage_results(self, config: dict[str, Any]) -> None:
        self._result_keys = ResultKeys(self.name, config.get("results"), "_")
        self._result_values = self._result_keys.values(None, -1)

    def _put_results(self, acquisition: dict[str, Any] | None, index: int) -> None:
        if self._result_keys:
            self._result_values = self._result_keys.values(acquisition, index)

    def _results_source(self) -> str:
        return f"{self.url_base}/writer/status:acquisition/stats/last_image/results"

    def describe(self) -> dict[str, dict[str, Any]]:
        keys = super().describe()
        if self._result_keys:
            keys.update(self._result_keys.describe(self._results_source()))
        return keys

    def read(self) -> dict[str, dict[str, Any]]:
        readings = super().read()
        if self._result_keys and self._result_values is not None:
            now = time.time()
            readings.update({key: {"value": value, "timestamp": now} for key, value in self._result_values.items()})
        return readings

    @property
    def hints(self) -> dict[str, Any]:
        hints = dict(super().hints)
        if self._result_keys:
            hints["fields"] = [*hints.get("fields", []), *self._result_keys.hinted]
        return hints
