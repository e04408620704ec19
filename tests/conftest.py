"""Real parts only: the server runs as a subprocess on a free loopback port, the simulator
sends real UDP, files are read back with h5py."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from daq_server.receive.udp_receiver import Receiver
from sim import SimulatedDetector
from sim import configs as example_configs
from std_daq_client import StdDaqClient

MIN_FREE_GB = 5.0
"""Below this much free disk in the temp folder the suite cannot write its files: say so up front."""


def pytest_report_header(config: pytest.Config) -> str:
    """Free disk space of the temp folder: the tests write real HDF5 files there (several GB per run)."""
    free_gb = shutil.disk_usage(tempfile.gettempdir()).free / 1e9
    line = f"free disk in {tempfile.gettempdir()}: {free_gb:.1f} GB"
    if free_gb < MIN_FREE_GB:
        line += f" -- LESS THAN {MIN_FREE_GB:.0f} GB: tests that write files will fail with 'No space left on device'"
    return line


@pytest.fixture(autouse=True, scope="session")
def suite_config_home(tmp_path_factory) -> None:
    """A server on a network address without --token-file creates this user's machine token
    (daq_server/serve/tokens.py): the suite's servers keep theirs in a folder of the run, not in a home."""
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config"))


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_ports(n: int) -> int:
    """First of ``n`` consecutive free UDP ports on loopback."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            start = probe.getsockname()[1]
        if start + n > 65535:
            continue
        sockets = []
        try:
            for port in range(start, start + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no block of free UDP ports")


def jungfrau_config(n_modules: int = 2, name: str = "JF-test") -> dict:
    """n Jungfrau modules stacked vertically, every odd module mirrored (as a real JF is)."""
    return example_configs.jungfrau_config(n_modules, free_udp_ports(n_modules), name)


RING_MB = 128  # the test servers' ring buffer: 64 images of a 2-module Jungfrau, over half a second at 100 Hz


@dataclass
class RunningDaq:
    """A std_daq_server subprocess and what a test needs to talk to it."""

    workdir: Path
    config: dict
    port: int = field(default_factory=free_tcp_port)
    proc: subprocess.Popen | None = None
    extra_args: list[str] = field(default_factory=list)
    max_file_bytes: int | None = None  # RLIMIT_FSIZE of the server: a disk that fills up
    wrapper: list[str] = field(default_factory=list)  # a command that runs the server (e.g. setpriv)
    new_session: bool = False  # the server leads its own session (as under systemd or setsid)
    program: list[str] = field(default_factory=lambda: [sys.executable, "-m", "daq_server.serve.cli"])
    cwd: Path | None = None  # the server's working folder (default: the test's)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_root(self) -> Path:
        return self.workdir / "data"

    @property
    def config_file(self) -> Path:
        return self.workdir / "config.json"

    @property
    def client(self) -> StdDaqClient:
        return StdDaqClient(self.url)

    def start(self, write_config: bool = True) -> RunningDaq:
        self.data_root.mkdir(parents=True, exist_ok=True)
        if write_config:
            self.config_file.write_text(json.dumps(self.config))
        cmd = [
            *self.wrapper, *self.program, "--config", str(self.config_file),
            "--port", str(self.port),
            "--data-root", str(self.data_root), "--udp-address", "127.0.0.1", "--ring-mb", str(RING_MB),
            *self.extra_args,
        ]  # fmt: skip
        self.log = open(self.workdir / "server.log", "a")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=self._limits,
                                     cwd=self.cwd)  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.workdir / 'server.log').read_text()}")
            try:
                requests.get(self.url + "/writer/status", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("server did not come up")

    def _limits(self) -> None:
        if self.new_session:
            os.setsid()
        if self.max_file_bytes is not None:  # writes past it fail with EFBIG, as on a full disk
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.max_file_bytes, self.max_file_bytes))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the server and wait for it; a SIGTERM must end it cleanly (exit status 0)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            code = self.proc.wait(timeout=20)
            if sig == signal.SIGTERM:
                log = (self.workdir / "server.log").read_text()
                assert code == 0, f"SIGTERM ended the server with status {code}: {log[-2000:]}"
        self.log.close()

    def simulator(self, **kwargs) -> SimulatedDetector:
        kwargs.setdefault("rate_hz", 100)
        return SimulatedDetector(self.config, **kwargs)

    def acquire(
        self, file_name: str, n_images: int, request: dict | None = None, **simulator_options
    ) -> tuple[dict, Path]:
        """write_sync of ``n_images`` into the data root while a simulator sends: (final status, file);
        ``request``: more fields of the write request."""
        detector = self.simulator(**simulator_options)
        detector.start()
        try:
            output = self.data_root / file_name
            body = {**(request or {}), "output_file": str(output), "n_images": n_images}
            return self.client.start_writer_sync(body), output
        finally:
            detector.stop()


@pytest.fixture
def daq(tmp_path):
    """A running server for a 2-module Jungfrau, nothing sending yet."""
    running = RunningDaq(tmp_path, jungfrau_config()).start()
    yield running
    running.stop()


@pytest.fixture
def daq1(tmp_path):
    """A running server for a 1-module Jungfrau, nothing sending yet."""
    running = RunningDaq(tmp_path, jungfrau_config(1)).start()
    yield running
    running.stop()


@pytest.fixture
def eiger(tmp_path):
    """A running server for one 16-bit Eiger module (4 ports, 2-pixel gaps between them), nothing sending yet."""
    running = RunningDaq(tmp_path, example_configs.eiger_config(16, free_udp_ports(4), "EG-test")).start()
    yield running
    running.stop()


@pytest.fixture
def sending(daq):
    """The server plus a simulator sending 100 images/s until the test ends."""
    detector = daq.simulator(first_frame=19001)
    detector.start()
    yield daq
    detector.stop()


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server of our own on a free port (installed by scripts/system-packages.sh)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: run `make install` (scripts/system-packages.sh)")
    port = free_tcp_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    client = redis.Redis.from_url(url)
    wait_for(lambda: _pings(client), timeout=10)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.ConnectionError:
        return False


@pytest.fixture
def RE():
    """A bluesky RunEngine (the ophyd tests)."""
    from bluesky import RunEngine

    return RunEngine({})


@pytest.fixture
def documents(RE):
    """Every (name, document) the RunEngine emits."""
    collected: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: collected.append((name, doc)))
    return collected


def make_daq(daq, **kwargs):
    """An ophyd StdDaq device for a RunningDaq, writing into its data root."""
    from ophyd_stddaq import StdDaq

    kwargs.setdefault("wait_timeout", 60)  # a guard only: a broken device fails instead of hanging
    kwargs.setdefault("asset_documents", "resource")  # the Resource/Datum option; StreamResource: test_ophyd_stream.py
    return StdDaq(daq.url, name="daq", directory=str(daq.data_root), **kwargs)


def collect_images(receiver: Receiver, n: int, timeout: float = 10.0) -> list[tuple]:
    """(frame, n_missing, copy of the image) of the next n images."""
    images, deadline = [], time.monotonic() + timeout
    while len(images) < n and time.monotonic() < deadline:
        with receiver.images() as image:
            if image is not None:
                images.append((image.frame_number, image.n_missing_packets, image.data.copy()))
    return images


def child_pids(pid: int) -> list[int]:
    """The child processes of ``pid`` (of any of its threads)."""
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            children += [int(child) for child in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return children


def writer_pids(daq: RunningDaq) -> list[int]:
    """The server's writer processes (children running daq_server.write.writer_loop)."""
    pids = child_pids(daq.proc.pid)
    return sorted(pid for pid in pids if b"daq_server.write.writer_loop" in open(f"/proc/{pid}/cmdline", "rb").read())


def nice_of(pid: int) -> int:
    """A process's nice value, from /proc (field 19 of its stat line)."""
    stat = open(f"/proc/{pid}/stat").read()
    return int(stat[stat.rindex(")") + 2 :].split()[16])


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def nxvalidate_report(path: Path | str) -> str:
    """What ``nxvalidate -e -a NXmx`` says about a file (it ends with "Total number of errors: N")."""
    nxvalidate = shutil.which("nxvalidate") or str(Path(sys.executable).parent / "nxvalidate")
    result = subprocess.run([nxvalidate, "-e", "-a", "NXmx", str(path)], capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


os.environ.setdefault("PYTHONUNBUFFERED", "1")


def write_target(path: Path, n_images: int, shape: tuple[int, int], dtype, config: dict, run_id: int = 1, **request):
    """A WriteTarget for the HDF5 writer on its own: the request validated as the server does (data root: the
    file's folder), the detector config taken as given (small test geometries need no receiver check)."""
    import numpy as np

    from daq_server.config import DaqConfig
    from daq_server.write.request import WriteTarget, parse_write_request

    n_modules = max(1, len(config.get("module_positions") or {}))
    fields = {"image_pixel_height": shape[0], "image_pixel_width": shape[1], "start_udp_port": 50000,
              "n_modules": n_modules, "writer_user_id": 0, **config}  # fmt: skip
    fields["module_positions"] = {k: tuple(v) for k, v in (config.get("module_positions") or {}).items()}
    body = {"output_file": str(path), "n_images": n_images, "run_id": run_id, **request}
    request_ = parse_write_request(body, Path(path).parent, 0)
    return WriteTarget(request_, DaqConfig.model_construct(**fields), tuple(shape), str(np.dtype(dtype)))


def answers_http(url: str) -> bool:
    """Does the server at ``url`` answer its status (for wait_for while it starts)?"""
    try:
        return requests.get(url + "/writer/status", timeout=2).status_code == 200
    except requests.RequestException:
        time.sleep(0.1)
        return False
