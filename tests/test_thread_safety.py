"""The C receiver under ThreadSanitizer: no data race between the receive threads, the thread
that takes images and a thread that reads the counters, from start to stop (tests/c/receiver_race.c)."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import free_udp_ports

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"


def sources(build_script: str) -> list[str]:
    """The C files of one binary, from its build script."""
    build = runpy.run_path(str(CSRC / build_script))
    return [str(CSRC / build["FOLDER"] / name) for name in build["SOURCES"]]


@pytest.fixture(scope="module")
def race_check(tmp_path_factory) -> Path:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("tsan") / "receiver_race"
    includes = [f"-I{CSRC / folder}" for folder in ("detectors", "receiver", "sim")]
    command = [compiler, "-O1", "-g", "-std=gnu11", "-fsanitize=thread", *includes,
               str(ROOT / "tests" / "c" / "receiver_race.c"), *sources("build_receiver.py"),
               *sources("build_sim.py"), "-lpthread", "-lm", "-o", str(out)]  # fmt: skip
    built = subprocess.run(command, capture_output=True, text=True)
    if built.returncode and "tsan" in built.stderr.lower():
        pytest.skip(f"the compiler has no ThreadSanitizer runtime: {built.stderr.strip()[-200:]}")
    assert built.returncode == 0, built.stderr
    return out


def test_no_data_race_while_receiving_counting_and_restarting(race_check):
    env = dict(os.environ, TSAN_OPTIONS="exitcode=66 halt_on_error=0")
    run = subprocess.run(
        [str(race_check), str(free_udp_ports(2))], capture_output=True, text=True, timeout=300, env=env
    )
    assert "ThreadSanitizer" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    assert "restarts 1" in run.stdout, run.stdout  # the simulator started its frame numbers again once
