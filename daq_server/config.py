"""The DAQ config: validation (pydantic + the receiver's own geometry check) and persistence.

A config change is merged into the current config, validated whole, and only then applied
and written back to the config file; an invalid config never replaces the current one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from daq_server.nexus_layout import CONFIG_FIELDS as NEXUS_CONFIG_FIELDS
from daq_server.receiver import MAX_MODULES, check_geometry, detector_format

BSREAD_BIT_DEPTHS = (8, 16, 32)


class ConfigError(ValueError):
    """A config that cannot be applied; the message says why, for the user."""


class DaqConfig(BaseModel):
    """The detector config of the seed README (``get_config`` / ``set_config``)."""

    model_config = ConfigDict(extra="forbid", strict=False)

    detector_name: str
    detector_type: Literal["eiger", "jungfrau", "gigafrost", "bsread"]
    bit_depth: int
    image_pixel_height: int
    image_pixel_width: int
    n_modules: int
    start_udp_port: int
    writer_user_id: int = 0
    module_positions: dict[str, tuple[int, int, int, int]]
    bsread_address: str | None = None
    """bsread only: the ZMQ address of the image stream, e.g. ``tcp://host:9999`` (SUB)."""
    bsread_channel: str | None = None
    """bsread only: the channel that holds the image (default: the first 2-d channel)."""
    nexus: dict[str, str | float] | None = None
    """Optional NXmx facts about the detector for the files, e.g. ``{"sensor_thickness": 320}`` (keys and
    units: ``daq_server.nexus_layout.CONFIG_FIELDS``)."""

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

    @field_validator("bit_depth", "image_pixel_height", "image_pixel_width", "n_modules")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be a positive integer")
        return value

    @field_validator("n_modules")
    @classmethod
    def _not_too_many(cls, value: int) -> int:
        if value > MAX_MODULES:
            raise ValueError(f"at most {MAX_MODULES} modules are supported")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DaqConfig:
        if not 1024 <= self.start_udp_port <= 65535 - self.n_modules + 1:
            raise ValueError(
                f"start_udp_port {self.start_udp_port}: ports start_udp_port … start_udp_port + n_modules - 1 "
                "must lie within 1024 … 65535"
            )
        expected = {str(i) for i in range(self.n_modules)}
        if self.detector_type == "bsread":
            return self._check_bsread()
        if self.bsread_address or self.bsread_channel:
            raise ValueError("bsread_address and bsread_channel are for detector_type bsread only")
        if self.detector_type == "gigafrost":
            if self.module_positions:
                raise ValueError("a gigafrost places its 8 streams by quadrant and link: module_positions must be {}")
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
        return self

    def _check_bsread(self) -> DaqConfig:
        if not self.bsread_address or "://" not in self.bsread_address:
            raise ValueError("a bsread source needs bsread_address, a ZMQ address such as tcp://host:9999")
        if self.n_modules != 1 or self.module_positions:
            raise ValueError("a bsread stream carries whole images: n_modules must be 1 and module_positions {}")
        if self.bit_depth not in BSREAD_BIT_DEPTHS:
            raise ValueError(f"bit_depth {self.bit_depth} is not supported for bsread (use 8, 16 or 32)")
        return self


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "config"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
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
    if merged["detector_type"] != "bsread":  # leaving bsread: its stream settings go with it
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
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(as_dict(config), handle, indent=2)
            handle.write("\n")
        os.replace(tmp, self.path)
