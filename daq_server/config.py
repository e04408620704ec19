"""The DAQ config: validation (pydantic + the receiver's own geometry check) and persistence.

A config change is merged into the current config, validated whole, and only then applied
and written back to the config file; an invalid config never replaces the current one.
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from daq_server.receive.udp_receiver import MAX_MODULES, check_geometry
from detectors import DETECTOR_TYPES, STREAM_BIT_DEPTHS, describe, detector_format, has_gain_stages, stream_dtype
from detectors.gain_maps import GainMapError, read_gain_maps

MAX_USER_ID = 2**31 - 1
MAX_IMAGE_SIDE = 1 << 16
MAX_TEXT = 256
Coordinate = Annotated[int, Field(ge=-MAX_IMAGE_SIDE, le=MAX_IMAGE_SIDE)]
Address = Annotated[str, Field(max_length=64)]

NEXUS_CONFIG_FIELDS: dict[str, tuple[type, str]] = {
    "x_pixel_size": (float, "um"),
    "y_pixel_size": (float, "um"),
    "sensor_material": (str, ""),
    "sensor_thickness": (float, "um"),
    "saturation_value": (int, ""),
    "source_name": (str, ""),
    "instrument_name": (str, ""),
    "incident_wavelength": (float, "angstrom"),
    "detector_distance": (float, "mm"),
    "beam_center_x": (float, "pixel"),
    "beam_center_y": (float, "pixel"),
    "sample_name": (str, ""),
    "two_theta": (float, "deg"),
}
"""Optional NXmx facts of the detector config: name -> (type, unit of the value). The detector's own facts, and
beamline defaults (wavelength, distance, beam centre, sample name) that a write request's values override."""


ROI_NAME = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
MAX_ROIS = 64


class RadialProfileConfig(BaseModel):
    """The radial profile of every image: ``bins`` equal bins in q (1/nm) or 2θ (deg)."""

    model_config = ConfigDict(extra="forbid")
    bins: Annotated[int, Field(ge=1, le=65_534)] = 200
    unit: Literal["q", "2theta"] = "q"


class SpotsConfig(BaseModel):
    """The spot count of every image: 4-connected pixels above ``threshold``, at least ``min_pixels`` of them."""

    model_config = ConfigDict(extra="forbid")
    threshold: Annotated[float, Field(allow_inf_nan=False)]
    min_pixels: Annotated[int, Field(ge=1, le=1 << 24)] = 1


class ResultsConfig(BaseModel):
    """Per-image results computed in the image pipeline (docs/results.rst); each part optional."""

    model_config = ConfigDict(extra="forbid")
    radial_profile: RadialProfileConfig | None = None
    rois: (
        Annotated[
            dict[
                Annotated[str, Field(pattern=ROI_NAME)],
                tuple[Coordinate, Coordinate, Coordinate, Coordinate] | Annotated[str, Field(max_length=4096)],
            ],
            Field(max_length=MAX_ROIS),
        ]
        | None
    ) = None
    """name -> a rectangle ``[x0, y0, x1, y1]`` (pixels, ends exclusive) or the absolute path of a ``.npy``
    mask of the image's shape (nonzero: in the ROI)."""
    spots: SpotsConfig | None = None
    max_delay_s: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] | None = 0.2
    """An image that reaches the image pipeline more than this many seconds after its first packet (the DAQ
    has fallen behind) goes without results, so that receiving never waits for them: images first. Counted
    (``images_without_results``); None: every image gets its results, whatever it costs."""


def roi_mask_file(path: str, shape: tuple[int, int]) -> np.ndarray:
    """The boolean ROI mask in the ``.npy`` file ``path``; ValueError saying why it does not fit."""
    if not os.path.isabs(path) or not path.endswith(".npy"):
        raise ValueError(f"an ROI mask is the absolute path of a .npy file, not {path!r}")
    try:
        mask = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"the ROI mask {path} cannot be read: {error}") from None
    if mask.shape != tuple(shape):
        raise ValueError(f"the ROI mask {path} is {mask.shape}, the images are {tuple(shape)}")
    return mask != 0


class ConfigError(ValueError):
    """A config that cannot be applied; the message says why, for the user."""


class DaqConfig(BaseModel):
    """The detector config of the seed README (``get_config`` / ``set_config``)."""

    model_config = ConfigDict(extra="forbid", strict=False)

    detector_name: Annotated[str, Field(max_length=MAX_TEXT)]
    detector_type: Annotated[str, Field(max_length=MAX_TEXT)]
    bit_depth: Annotated[int, Field(ge=1, le=32)]
    image_pixel_height: Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)]
    image_pixel_width: Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)]
    n_modules: Annotated[int, Field(ge=1, le=MAX_MODULES)]
    start_udp_port: Annotated[int, Field(ge=1024, le=65535)]
    writer_user_id: Annotated[int, Field(ge=0, le=MAX_USER_ID)] = 0
    """Files are created as this user (0: as the server)."""
    module_positions: Annotated[
        dict[str, tuple[Coordinate, Coordinate, Coordinate, Coordinate]], Field(max_length=MAX_MODULES)
    ]
    bsread_address: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    """bsread only: the ZMQ address of the image stream, e.g. ``tcp://host:9999`` (SUB)."""
    bsread_channel: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    """bsread only: the channel that holds the image (default: the first 2-d channel)."""
    detector_address: Address | Annotated[list[Address], Field(max_length=MAX_MODULES)] | None = None
    """IPv4 source address of the detector's packets (one for all modules, or one per module);
    packets from anywhere else are dropped and counted foreign. Default: any source."""
    receiver_address: Address | None = None
    """IPv4 address the receiver binds its UDP ports to (default: the server's --udp-address)."""

    @field_validator("receiver_address")
    @classmethod
    def _bind_address(cls, value: str | None) -> str | None:
        return None if value is None else _ipv4(value)

    @field_validator("detector_address")
    @classmethod
    def _source_addresses(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is None or isinstance(value, str):
            return None if value is None else _ipv4(value)
        return [_ipv4(item) for item in value]

    @field_validator("detector_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in DETECTOR_TYPES:
            raise ValueError(f"must be one of {', '.join(DETECTOR_TYPES)}, not '{value}'")
        return value

    jungfrau_gain_maps: (
        Annotated[str, Field(max_length=4096)]
        | Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=MAX_MODULES)]
        | None
    ) = None
    """Gain-switching detectors: the gain maps (absolute paths): one HDF5 file, or PSI's binary files, one
    per module in module order (``detectors.gain_maps``, docs/jungfrau.rst)."""
    jungfrau_conversion: Literal["photons", "keV"] | None = None
    """Gain-switching detectors: write images converted to photon counts (uint16) or keV (float32) instead
    of raw words (needs ``jungfrau_gain_maps`` and a pedestal); raw when absent."""

    @field_validator("jungfrau_gain_maps")
    @classmethod
    def _absolute_paths(cls, value: str | list[str] | None) -> str | list[str] | None:
        for path in [value] if isinstance(value, str) else value or []:
            if not os.path.isabs(path):
                raise ValueError(f"must be absolute paths, not '{path}'")
        return value

    results: ResultsConfig | None = None
    """Per-image ROI sums, radial profile and spot count (docs/results.rst)."""

    @model_validator(mode="after")
    def _results_fit(self) -> DaqConfig:
        shape = (self.image_pixel_height, self.image_pixel_width)
        for name, roi in ((self.results.rois or {}) if self.results else {}).items():
            if isinstance(roi, str):
                try:
                    roi_mask_file(roi, shape)
                except ValueError as error:
                    raise ValueError(f"results.rois.{name}: {error}") from None
            elif not (0 <= roi[0] < roi[2] <= shape[1] and 0 <= roi[1] < roi[3] <= shape[0]):
                raise ValueError(
                    f"results.rois.{name}: [x0, y0, x1, y1] = {list(roi)} must have 0 <= x0 < x1 <= {shape[1]} "
                    f"and 0 <= y0 < y1 <= {shape[0]} (ends exclusive)"
                )
        return self

    nexus: Annotated[dict[str, str | float], Field(max_length=32)] | None = None
    """Optional NXmx facts about the detector for the files, e.g. ``{"sensor_thickness": 320}`` (keys and
    units: :data:`NEXUS_CONFIG_FIELDS`)."""

    @field_validator("nexus")
    @classmethod
    def _nexus_fields(cls, value: dict | None) -> dict | None:
        if value is None:
            return None
        checked = {}
        for key, item in value.items():
            if key not in NEXUS_CONFIG_FIELDS:
                raise ValueError(f"unknown key {key!r}; known: {', '.join(sorted(NEXUS_CONFIG_FIELDS))}")
            kind = NEXUS_CONFIG_FIELDS[key][0]
            if kind is str and not isinstance(item, str) or kind is not str and isinstance(item, str | bool):
                raise ValueError(f"{key} must be a {kind.__name__}, not {item!r}")
            checked[key] = kind(item)
        return checked

    @field_validator("detector_name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError("must be non-empty and use only letters, digits, '-', '_' and '.'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DaqConfig:
        if not 1024 <= self.start_udp_port <= 65535 - self.n_modules + 1:
            raise ValueError(
                f"start_udp_port {self.start_udp_port}: ports start_udp_port … start_udp_port + n_modules - 1 "
                "must lie within 1024 … 65535"
            )
        expected = {str(i) for i in range(self.n_modules)}
        if self.detector_type in STREAM_BIT_DEPTHS:
            return self._check_bsread()
        if isinstance(self.detector_address, list) and len(self.detector_address) != self.n_modules:
            raise ValueError(
                f"detector_address lists {len(self.detector_address)} addresses; give one for all modules "
                f"or exactly one per module ({self.n_modules})"
            )
        if self.bsread_address or self.bsread_channel:
            raise ValueError("bsread_address and bsread_channel are for detector_type bsread only")
        if not describe(self.detector_type).placed_by_module:
            if self.module_positions:
                raise ValueError(
                    f"a {self.detector_type} places its streams by its own rule (quadrant and link): "
                    "module_positions must be {}"
                )
        elif set(self.module_positions) != expected:
            raise ValueError(
                f"module_positions must have exactly the keys 0 … {self.n_modules - 1} "
                f"(n_modules = {self.n_modules}), got {sorted(self.module_positions, key=str)}"
            )
        try:
            detector_format(self.detector_type, self.bit_depth, self.image_pixel_width, self.image_pixel_height)
            check_geometry(self.model_dump())
        except ValueError as error:
            raise ValueError(str(error)) from None
        return self._check_conversion()

    def _check_conversion(self) -> DaqConfig:
        """The conversion keys only for gain-switching detectors, with gain maps that fit the modules."""
        config = self.model_dump()
        keys = [k for k in ("jungfrau_gain_maps", "jungfrau_conversion") if config[k]]
        if not keys:
            return self
        if not has_gain_stages(config):
            raise ValueError(
                f"{', '.join(keys)}: only for detectors with gain-switching pixels (jungfrau), not {self.detector_type}"
            )
        if self.jungfrau_conversion and not self.jungfrau_gain_maps:
            raise ValueError("jungfrau_conversion needs jungfrau_gain_maps (the gain maps to convert with)")
        if self.jungfrau_gain_maps:
            try:
                read_gain_maps(self.jungfrau_gain_maps, config)
            except GainMapError as error:
                raise ValueError(f"jungfrau_gain_maps: {error}") from None
        return self

    def _check_bsread(self) -> DaqConfig:
        if not self.bsread_address or "://" not in self.bsread_address:
            raise ValueError("a bsread source needs bsread_address, a ZMQ address such as tcp://host:9999")
        if self.detector_address or self.receiver_address:
            raise ValueError("detector_address and receiver_address are for UDP detectors; bsread uses bsread_address")
        if self.n_modules != 1 or self.module_positions:
            raise ValueError("a bsread stream carries whole images: n_modules must be 1 and module_positions {}")
        stream_dtype(self.detector_type, self.bit_depth)
        return self


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"'{value}' is not an IPv4 address") from None


def _range_of(loc: tuple) -> str:
    """'low … high' of a bounded integer field (for messages)."""
    field = DaqConfig.model_fields.get(str(loc[0]))
    low = high = None
    for item in field.metadata if field else ():
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
    if low is None and high is None:  # a module position coordinate
        low, high = -MAX_IMAGE_SIDE, MAX_IMAGE_SIDE
    return f"{low} … {high}"


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        bounds = item.get("ctx") or {}
        if item["type"] == "greater_than_equal" and bounds.get("ge") == 1:
            message = "must be a positive integer"
        elif item["type"] in ("greater_than_equal", "less_than_equal"):
            message = f"must be within {_range_of(item['loc'])}, not {str(item.get('input'))[:40]}"
        parts.append(f"{where}: {message}" if where else message)  # "Invalid config: <whole-config problem>"
    return "Invalid config: " + "; ".join(parts)


def validate_config(raw: dict) -> DaqConfig:
    """Validate a whole config; ConfigError with every reason on failure."""
    if not isinstance(raw, dict):
        raise ConfigError("Invalid config: expected a JSON object")
    try:
        return DaqConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def merge_config(current: DaqConfig, changes: dict) -> DaqConfig:
    """The config that results from applying ``changes`` (module_positions replaced whole)."""
    if not isinstance(changes, dict):
        raise ConfigError("Invalid config: expected a JSON object with the fields to change")
    unknown = set(changes) - set(DaqConfig.model_fields)
    if unknown:
        raise ConfigError(f"Invalid config: unknown field(s) {', '.join(sorted(unknown))}")
    merged = current.model_dump()
    merged.update(changes)
    kind = merged.get("detector_type")
    if kind not in DETECTOR_TYPES or not describe(kind).streams_whole_images:  # leaving bsread: its settings go
        for field in ("bsread_address", "bsread_channel"):
            if field not in changes:
                merged[field] = None
    return validate_config(merged)


def as_dict(config: DaqConfig) -> dict:
    """The JSON form returned by the API (module positions as lists)."""
    data = config.model_dump(exclude_none=True)  # bsread fields only where they are set
    data["module_positions"] = {k: list(v) for k, v in data["module_positions"].items()}
    return data


class ConfigStore:
    """The config file: read at start, rewritten atomically when a new config is applied."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> DaqConfig:
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"Cannot read config file {self.path}: {error}") from None
        return validate_config(raw)

    def save(self, config: DaqConfig) -> None:
        """Replace the file atomically, keeping its mode and owner; ConfigError (file untouched) on failure."""
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config-", suffix=".json")
        except OSError as error:
            raise ConfigError(f"Cannot write the config file {self.path}: {error.strerror}") from None
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(as_dict(config), handle, indent=2)
                handle.write("\n")
                handle.flush()
                try:
                    old = os.stat(self.path)
                except FileNotFoundError:
                    os.fchmod(handle.fileno(), 0o644)
                else:
                    os.fchmod(handle.fileno(), stat.S_IMODE(old.st_mode))
                    if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()) and os.geteuid() == 0:
                        os.fchown(handle.fileno(), old.st_uid, old.st_gid)
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as error:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise ConfigError(f"Cannot write the config file {self.path}: {error.strerror}") from None
