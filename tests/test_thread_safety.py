"""The native code under the sanitizers: ThreadSanitizer (no data race) and AddressSanitizer with
UndefinedBehaviorSanitizer (no bad memory access, no undefined behaviour), each over a C harness that
drives the code as the server does, with the same sources as the cffi modules (their build scripts):

* tests/c/receiver_race.c: the receiver taking images and counting while a simulated detector sends
  with faults, the simulator's counters read and its stop set from other threads, and the receiver
  stopped while a thread waits for an image;
* tests/c/compress_race.c: the image pipeline's threads compressing at once.

Each build and run takes a few seconds: this is the CI's sanitizer run."""

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
SANITIZERS = {
    "thread": (["-fsanitize=thread"], {"TSAN_OPTIONS": "exitcode=66 halt_on_error=0"}),
    "address+undefined": (
        ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"],
        {"ASAN_OPTIONS": "exitcode=66 detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1"},
    ),
}
HARNESSES = {
    "receiver_race": (("receiver", "sim"), ("detectors", "receiver", "sim"), ["-lm"]),
    "compress_race": (("pipeline",), ("pipeline", "detectors"), ["-llz4", "-lm"]),
}
REPORTS = ("ThreadSanitizer", "AddressSanitizer", "runtime error:")


def sources(module: str) -> list[str]:
    """The C files of one binary, as the package build compiles them."""
    return [str(path) for path in runpy.run_path(str(CSRC / "native_modules.py"))["MODULES"][module].source_paths()]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    folder = tmp_path_factory.mktemp("sanitizers")

    def built(harness: str, sanitizer: str) -> Path:
        scripts, folders, libraries = HARNESSES[harness]
        out = folder / f"{harness}-{sanitizer}"
        includes = [f"-I{CSRC / name}" for name in folders]
        command = [compiler, "-O1", "-g", "-std=gnu11", *SANITIZERS[sanitizer][0], *includes,
                   str(ROOT / "tests" / "c" / f"{harness}.c"), *(f for s in scripts for f in sources(s)),
                   "-lpthread", *libraries, "-o", str(out)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode and "san" in result.stderr.lower():
            pytest.skip(f"the compiler has no {sanitizer} sanitizer runtime: {result.stderr.strip()[-200:]}")
        assert result.returncode == 0, result.stderr
        return out

    return built


def run(program: Path, sanitizer: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **SANITIZERS[sanitizer][1])
    return subprocess.run([str(program), *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("sanitizer", SANITIZERS)
def test_receiver_and_simulator_are_clean_while_receiving_counting_stopping(build, sanitizer):
    result = run(build("receiver_race", sanitizer), sanitizer, str(free_udp_ports(2)))
    assert not any(report in result.stderr for report in REPORTS), result.stderr[-3000:]
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "restarts 1" in result.stdout, result.stdout  # the simulator started its frame numbers again once


@pytest.mark.parametrize("sanitizer", SANITIZERS)
def test_image_pipeline_is_clean_with_its_threads(build, sanitizer):
    result = run(build("compress_race", sanitizer), sanitizer)
    assert not any(report in result.stderr for report in REPORTS), result.stderr[-3000:]
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
