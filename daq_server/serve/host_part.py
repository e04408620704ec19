"""Scale-out: the part of a detector that one receiver host owns (``std_daq_server --modules I,J``).

A receiver host runs the ordinary server on a *part config* derived from the full detector config:
its modules only, each keeping its UDP port (``start_udp_port + i``), placed in the bounding box of
their ``module_positions``. The coordinator (``daq_server.coordinator``) derives the same part from
the full config and a host's answered config, so nothing but the config travels between them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from daq_server.config import ConfigError, ConfigStore, DaqConfig, as_dict, validate_config
from daq_server.serve.limits import int_ranges
from detectors import describe


@dataclass(frozen=True)
class Part:
    """Modules ``first`` … ``last`` of a detector, and where their box lies in the full image."""

    first: int
    last: int
    top: int
    left: int
    height: int
    width: int

    @property
    def modules(self) -> range:
        return range(self.first, self.last + 1)

    def overlaps(self, other: Part) -> bool:
        return (
            self.top < other.top + other.height
            and other.top < self.top + self.height
            and self.left < other.left + other.width
            and other.left < self.left + self.width
        )


def parse_modules(text: str) -> list[int]:
    """``"0,1"`` or ``"2-5"`` as a sorted list of module indices; ValueError if not a list of integers."""
    try:
        ranges = int_ranges(text)
    except ValueError:
        raise ValueError(f"--modules takes module indices such as 0,1 or 0-3, not '{text}'") from None
    return sorted({m for first, last in ranges for m in range(first, last + 1)})


def plan_part(config: DaqConfig, modules: list[int]) -> Part:
    """The part of ``config`` that ``modules`` make; ConfigError if they cannot be one host's."""
    if not describe(config.detector_type).placed_by_module or not config.module_positions:
        raise ConfigError(f"a {config.detector_type} cannot be split over hosts: only modules with positions can")
    if not modules or modules[0] < 0 or modules[-1] >= config.n_modules:
        raise ConfigError(f"modules must lie within 0 … {config.n_modules - 1}, not {modules}")
    if modules != list(range(modules[0], modules[-1] + 1)):
        raise ConfigError(f"a host owns consecutive modules (its ports are consecutive), not {modules}")
    boxes = [config.module_positions[str(m)] for m in modules]
    xs = [x for x0, _, x1, _ in boxes for x in (x0, x1)]
    ys = [y for _, y0, _, y1 in boxes for y in (y0, y1)]
    return Part(modules[0], modules[-1], min(ys), min(xs), max(ys) - min(ys) + 1, max(xs) - min(xs) + 1)


def part_name(detector_name: str, part: Part) -> str:
    """The detector name a host publishes under (its Redis channels differ from the other hosts')."""
    return f"{detector_name}.modules{part.first}-{part.last}"


def part_config(config: DaqConfig, part: Part) -> dict:
    """The config a host runs: its modules only, their ports and positions inside its box."""
    full = as_dict(config)
    positions = {}
    for k, m in enumerate(part.modules):
        x0, y0, x1, y1 = full["module_positions"][str(m)]
        positions[str(k)] = [x0 - part.left, y0 - part.top, x1 - part.left, y1 - part.top]
    local = dict(
        full,
        detector_name=part_name(config.detector_name, part),
        n_modules=len(part.modules),
        start_udp_port=config.start_udp_port + part.first,
        image_pixel_height=part.height,
        image_pixel_width=part.width,
        module_positions=positions,
    )
    if isinstance(config.detector_address, list):
        local["detector_address"] = config.detector_address[part.first : part.last + 1]
    return as_dict(validate_config(local))


def part_of(config: DaqConfig, host_config: dict) -> Part:
    """Which part a host's answered config is; ConfigError if it is no part of ``config``."""
    try:
        first = int(host_config["start_udp_port"]) - config.start_udp_port
        part = plan_part(config, list(range(first, first + int(host_config["n_modules"]))))
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"its config is no part of detector {config.detector_name}: {error}") from None
    if part_config(config, part) != host_config:
        raise ConfigError(
            f"its config is not modules {part.first}-{part.last} of detector {config.detector_name} "
            "(restart it with the coordinator's config, or set the config through the coordinator)"
        )
    return part


def prepare_host_config(config_file: Path, modules_text: str, state_dir: Path) -> Path:
    """Write the part config of ``--modules`` to ``state_dir`` and return its path (the server runs on
    it, so set_config on the host never rewrites the shared full config); ConfigError on bad input."""
    try:
        modules = parse_modules(modules_text)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    config = ConfigStore(config_file).load()
    local = part_config(config, plan_part(config, modules))
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "host-part-config.json"
    path.write_text(json.dumps(local, indent=2) + "\n")
    return path
