"""A receiver host's part of a detector (``std_daq_server --modules``), and its refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import jungfrau_config

from daq_server.config import ConfigError, validate_config
from daq_server.serve.host_part import parse_modules, part_config, part_of, plan_part
from sim import SimulatedDetector


def test_parse_modules():
    assert parse_modules("0,1") == [0, 1]
    assert parse_modules("2-4") == [2, 3, 4]
    with pytest.raises(ValueError, match="module indices"):
        parse_modules("a")


def test_a_part_keeps_its_ports_and_the_box_of_its_positions():
    config = validate_config(jungfrau_config(4, name="JF4"))
    part = plan_part(config, [2, 3])
    assert (part.top, part.left, part.height, part.width) == (1024, 0, 1024, 1024)
    local = part_config(config, part)
    assert local["start_udp_port"] == config.start_udp_port + 2 and local["n_modules"] == 2
    assert local["image_pixel_height"] == 1024 and local["detector_name"] == "JF4.modules2-3"
    full = config.module_positions
    for k, m in enumerate((2, 3)):  # shifted by the box's top, mirroring kept
        x0, y0, x1, y1 = full[str(m)]
        assert local["module_positions"][str(k)] == [x0, y0 - 1024, x1, y1 - 1024]
    assert part_of(config, local) == part


def test_parts_that_cannot_be_are_refused():
    config = validate_config(jungfrau_config(4, name="JF4"))
    with pytest.raises(ConfigError, match="consecutive"):
        plan_part(config, [0, 2])
    with pytest.raises(ConfigError, match="within"):
        plan_part(config, [3, 4])
    other = dict(part_config(config, plan_part(config, [0])), bit_depth=8)
    with pytest.raises(ConfigError, match="not modules 0-0"):
        part_of(config, other)


def test_server_with_modules_outside_the_config_exits_with_the_reason(tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(jungfrau_config(2)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "daq_server.serve.cli",
            "--config",
            str(config_file),
            "--modules",
            "5",
            "--check-config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "modules must lie within 0 … 1" in result.stderr
    assert json.loads(config_file.read_text())["n_modules"] == 2


def test_simulator_wants_one_address_per_module():
    config = jungfrau_config(2)
    with pytest.raises(ValueError, match="1 addresses given, the config has 2 modules"):
        SimulatedDetector(config, module_hosts=["127.0.0.1"])
    with pytest.raises(ValueError, match="not an IPv4 address"):
        SimulatedDetector(config, module_hosts=["127.0.0.1", "nowhere"])
