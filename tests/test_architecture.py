"""The floor plan holds: imports run only downward along the data path, the package boundaries hold, and
both DAQs behind the REST layer (the server's service and the coordinator) meet its protocol.

Read from the source (ast), no code run: a new import against the order fails here with the place it is."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS = {
    "daq_server.receive": 10,
    "daq_server.config": 20,
    "daq_server.pipeline": 30,
    "daq_server.stream": 35,
    "daq_server.write": 40,
    "daq_server.acquire": 50,
    "daq_server.serve": 60,
    "daq_server.coordinator": 70,
    "daq_server.demo": 80,
}
"""Each part of daq_server and its place on the data path (docs/architecture.rst): a module may import its
own part and the parts with a lower number, never a higher one. ``daq_server`` itself (its version) is free."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]  # "from pkg import module"
    return found


def layer(module: str) -> int | None:
    for part, place in LAYERS.items():
        if module == part or module.startswith(part + "."):
            return place
    return None


def product_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_every_part_of_daq_server_has_a_place_on_the_data_path():
    unplaced = []
    for path in product_files("daq_server"):
        name = module_name(path)
        if name != "daq_server" and layer(name) is None:
            unplaced.append(name)
    assert not unplaced, (
        f"modules outside every part of LAYERS (give them a place, and docs/architecture.rst): {unplaced}"
    )


def test_imports_run_only_downward_along_the_data_path():
    upward = []
    for path in product_files("daq_server"):
        own = layer(module_name(path))
        for line, target in imported_modules(path):
            other = layer(target)
            if own is not None and other is not None and other > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not upward, "imports against the order of docs/architecture.rst:\n" + "\n".join(sorted(set(upward)))


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("client/std_daq_client", ("daq_server", "sim", "detectors", "ophyd_stddaq")),
        ("sim", ("daq_server", "ophyd_stddaq")),
        ("ophyd_stddaq", ("daq_server", "sim", "detectors")),
        ("daq_server", ("ophyd", "ophyd_async", "bluesky", "ophyd_stddaq")),
        ("detectors", ("daq_server", "sim", "ophyd_stddaq")),
    ],
)
def test_package_boundaries(package, forbidden):
    crossing = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, target in imported_modules(path):
            if target.split(".")[0] in forbidden:
                crossing.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not crossing, "\n".join(sorted(set(crossing)))


def test_the_server_and_the_coordinator_meet_what_the_rest_layer_needs():
    from daq_server.coordinator.service import Coordinator
    from daq_server.serve.api.backend import DaqBackend
    from daq_server.serve.service import DaqService

    wanted = {name: m for name, m in vars(DaqBackend).items() if inspect.isfunction(m) and not name.startswith("_")}
    attributes = set(DaqBackend.__annotations__)
    for cls in (DaqService, Coordinator):
        assigned = {
            node.attr
            for node in ast.walk(ast.parse(inspect.getsource(cls)))
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
        }
        assert attributes <= assigned, f"{cls.__name__} lacks {attributes - assigned}"
        for name, member in wanted.items():
            mine = getattr(cls, name, None)
            assert callable(mine), f"{cls.__name__} has no {name}()"
            expected = list(inspect.signature(member).parameters)
            assert list(inspect.signature(mine).parameters)[: len(expected)] == expected, f"{cls.__name__}.{name}"
