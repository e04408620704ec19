"""Scale-out as a network: receiver hosts in Linux network namespaces joined to this one by veth pairs
(each host its own 198.18.x.y address), a coordinator on loopback serving the ordinary REST API, the
simulator sending each module to its host's address, the whole image read back through the master file.

Needs root (``ip netns add``); skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import requests
from conftest import free_tcp_port, jungfrau_config
from expected import expected_image

from daq_server.serve.tokens import machine_token_path
from sim import SimulatedDetector
from std_daq_client import StdDaqClient

HOST_PORT = 5000


def part_file(output: Path | str, index: int) -> Path:
    """A host's part file, by the documented rule: ``<stem>.part<i><suffix>`` next to the master (docs/scaleout.rst)."""
    output = Path(output)
    return output.with_name(f"{output.stem}.part{index}{output.suffix}")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Host:
    """One receiver host: a network namespace, its veth pair and the server running inside."""

    netns: str
    root_if: str
    root_address: str
    address: str
    proc: subprocess.Popen | None = None
    token: str = ""  # the bearer token its server requires (it listens on the network)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{HOST_PORT}"

    @property
    def name(self) -> str:
        return f"{self.address}:{HOST_PORT}"


def _make_hosts(n: int) -> list[Host]:
    if shutil.which("ip") is None:
        pytest.skip("scale-out test needs the `ip` command (iproute2)")
    tag = os.getpid() % 10000
    subnet = 4 * (1 + os.getpid() % 60)  # a /30 per host, apart from other runs of this test
    hosts = []
    for i in range(n):
        netns = f"sdq{tag}h{i}"
        try:
            _ip("netns", "add", netns)
        except subprocess.CalledProcessError as error:
            _remove_hosts(hosts)
            pytest.skip(f"`ip netns add` is not permitted here ({error.stderr.strip()}): run as root")
        host = Host(netns, f"sdq{tag}r{i}", f"198.18.{100 + i}.{subnet + 1}", f"198.18.{100 + i}.{subnet + 2}")
        hosts.append(host)
        host_if = f"sdq{tag}v{i}"
        _ip("link", "add", host.root_if, "type", "veth", "peer", "name", host_if)
        _ip("link", "set", host_if, "netns", netns)
        _ip("addr", "add", f"{host.root_address}/30", "dev", host.root_if)
        _ip("link", "set", host.root_if, "up")
        _ip("netns", "exec", netns, "ip", "addr", "add", f"{host.address}/30", "dev", host_if)
        _ip("netns", "exec", netns, "ip", "link", "set", host_if, "up")
        _ip("netns", "exec", netns, "ip", "link", "set", "lo", "up")
    return hosts


def _remove_hosts(hosts: list[Host]) -> None:
    for host in hosts:
        if host.proc is not None and host.proc.poll() is None:
            host.proc.send_signal(signal.SIGTERM)
            try:
                host.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                host.proc.kill()
        subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", host.root_if], capture_output=True)


HOSTS_TOKEN = "scale-out-test-token-0123456789"


def host_client(host: Host) -> StdDaqClient:
    """A client of one receiver host (they listen on the network, so they require the token)."""
    return StdDaqClient(url_base=host.url, token=host.token)


def _wait_http(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited: {log.read_text()[-2000:]}")
        try:
            requests.get(url + "/writer/status", timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer: {log.read_text()[-2000:]}")


@dataclass
class ScaleOut:
    config: dict
    data: Path
    hosts: list[Host]
    coordinator: subprocess.Popen
    url: str
    redis_port: int | None = None

    @property
    def client(self) -> StdDaqClient:
        return StdDaqClient(url_base=self.url)

    def simulator(self, n_images: int, rate_hz: float = 100) -> SimulatedDetector:
        return SimulatedDetector(self.config, rate_hz=rate_hz, n_images=n_images, module_hosts=self._module_hosts())

    def _module_hosts(self) -> list[str]:
        per_host = self.config["n_modules"] // len(self.hosts)
        return [self.hosts[m // per_host].address for m in range(self.config["n_modules"])]


def _start_redis(tmp_path: Path, hosts: list[Host]) -> tuple[subprocess.Popen, int]:
    """A redis-server on loopback and on the root end of every veth pair (the hosts reach it there)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: run `make install` (scripts/system-packages.sh)")
    port = free_tcp_port()
    bind = ["127.0.0.1", *[h.root_address for h in hosts]]
    options = ["--save", "", "--appendonly", "no", "--dir", str(tmp_path), "--protected-mode", "no"]
    proc = subprocess.Popen([server, "--port", str(port), "--bind", *bind, *options], stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


def _scaleout(tmp_path: Path, with_redis: bool):
    """A 2-module Jungfrau over 2 receiver hosts (one module each) and a coordinator."""
    hosts = _make_hosts(2)
    coordinator = redis_server = None
    try:
        config = jungfrau_config(2, name="JF-scale")
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(config))
        data = tmp_path / "data"
        data.mkdir()
        redis_port = None
        if with_redis:
            redis_server, redis_port = _start_redis(tmp_path, hosts)
        # The hosts listen on the network, so they require a token: with Redis, the operator's token file
        # given to hosts and coordinator; without, none given (as the acceptance check starts them): the
        # hosts require this machine's token and the coordinator finds it on its own.
        token_file = tmp_path / "token"
        token_file.write_text(HOSTS_TOKEN + "\n")
        token_file.chmod(0o600)
        host_token_args = ["--token-file", str(token_file)] if with_redis else []
        server = [sys.executable, "-m", "daq_server.serve.cli", "--config", str(config_file), "--data-root", str(data),
                  *host_token_args]  # fmt: skip
        for i, host in enumerate(hosts):
            log = tmp_path / f"host{i}.log"
            cmd = ["ip", "netns", "exec", host.netns, *server, "--modules", str(i), "--host", host.address,
                   "--port", str(HOST_PORT), "--udp-address", host.address, "--ring-mb", "48",
                   "--state-dir", str(tmp_path / f"state{i}")]  # fmt: skip
            if redis_port:
                cmd += ["--redis-url", f"redis://{host.root_address}:{redis_port}/0"]
            host.proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
            _wait_http(host.url, host.proc, log)
            host.token = HOSTS_TOKEN if with_redis else machine_token_path().read_text().strip()
        port = free_tcp_port()
        log = tmp_path / "coordinator.log"
        cmd = [sys.executable, "-m", "daq_server.coordinator.cli", "--config", str(config_file), "--port", str(port),
               "--data-root", str(data), "--hosts", ",".join(h.url for h in hosts),
               *(["--hosts-token-file", str(token_file)] if with_redis else [])]  # fmt: skip
        if redis_port:
            cmd += ["--redis-url", f"redis://127.0.0.1:{redis_port}/0"]
        coordinator = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        _wait_http(url, coordinator, log)
        yield ScaleOut(config, data, hosts, coordinator, url, redis_port)
    finally:
        if coordinator is not None and coordinator.poll() is None:
            coordinator.terminate()
            coordinator.wait(timeout=20)
        _remove_hosts(hosts)
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(timeout=10)


@pytest.fixture
def scaleout(tmp_path):
    yield from _scaleout(tmp_path, with_redis=False)


@pytest.fixture
def scaleout_redis(tmp_path):
    yield from _scaleout(tmp_path, with_redis=True)


def _wait_ended(client: StdDaqClient, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_status()
        if status["state"] != "WRITING" and status["acquisition"]["state"] in ("FINISHED", "FAILED"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"acquisition not ended: {status}")


def _send_until_ended(scaleout: ScaleOut, n_images: int = 300) -> dict:
    """The simulator sends while the coordinator's acquisition runs; its final status."""
    detector = scaleout.simulator(n_images=n_images)
    detector.start()
    try:
        return _wait_ended(scaleout.client)
    finally:
        detector.stop()


def test_master_file_shows_the_whole_image_as_sent(scaleout):
    client = scaleout.client
    output = scaleout.data / "run1.h5"
    client.start_writer_async({"output_file": str(output), "n_images": 40})
    assert client.get_status()["state"] == "WRITING"
    acquisition = _send_until_ended(scaleout)["acquisition"]
    assert acquisition["state"] == "FINISHED", acquisition["message"]
    assert acquisition["message"] == "Completed."
    assert acquisition["stats"]["n_write_completed"] == 40
    for i in range(2):  # each host wrote its own part: one module, 512 x 1024 (ended a few frames later)
        with h5py.File(part_file(output, i)) as part:
            assert part["/entry/data/data"].shape[0] >= 40 and part["/entry/data/data"].shape[1:] == (512, 1024)
    with h5py.File(output) as master:
        data = master["/entry/data/data"]
        assert data.is_virtual
        assert data.shape == (40, 1024, 1024)
        ids = master["/entry/data/image_id"][:]
        assert len(set(ids.tolist())) == 40
        assert master["/entry/data/is_good_frame"][:].all()
        assert (master["/entry/data/n_missing_packets"][:] == 0).all()
        for k, frame in enumerate(ids):
            assert np.array_equal(data[k], expected_image(scaleout.config, int(frame))), f"image {k}"
    log = client.get_logs(1)[0]
    assert log["info"]["output_file"] == str(output) and set(log["hosts"]) == {h.name for h in scaleout.hosts}


def test_bad_requests_reach_no_host_and_leave_no_file(scaleout):
    client = scaleout.client
    with pytest.raises(Exception, match="data root"):
        client.start_writer_async({"output_file": "/elsewhere/x.h5", "n_images": 5})
    (scaleout.data / "taken.part1.h5").write_bytes(b"")
    with pytest.raises(Exception, match="part file"):
        client.start_writer_async({"output_file": str(scaleout.data / "taken.h5"), "n_images": 5})
    assert sorted(p.name for p in scaleout.data.iterdir()) == ["taken.part1.h5"]
    for host in scaleout.hosts:
        assert host_client(host).get_status()["state"] == "READY"


@contextlib.contextmanager
def _ten_images_written(scaleout, output: Path):
    """An open-ended acquisition into ``output`` with the detector sending, once 10 images are written."""
    client = scaleout.client
    client.start_writer_async({"output_file": str(output), "n_images": 10_000})
    detector = scaleout.simulator(n_images=0)
    detector.start()
    try:
        deadline = time.monotonic() + 30
        while client.get_status()["acquisition"]["stats"]["n_write_completed"] < 10:
            assert time.monotonic() < deadline, client.get_status()
            time.sleep(0.1)
        yield
    finally:
        detector.stop()


def test_stop_reaches_every_host(scaleout):
    client = scaleout.client
    output = scaleout.data / "stopped.h5"
    with _ten_images_written(scaleout, output):
        status = client.stop_writer()
    assert status["state"] == "READY"
    assert status["acquisition"]["message"] == "Interrupted."
    for host in scaleout.hosts:
        assert host_client(host).get_status()["acquisition"]["message"] == "Interrupted."
    with h5py.File(output) as master:
        assert master["/entry/data/data"].shape[0] == status["acquisition"]["stats"]["n_write_completed"] >= 10


def test_a_killed_host_fails_the_acquisition_by_name_and_the_other_part_stays_readable(scaleout):
    client = scaleout.client
    output = scaleout.data / "killed.h5"
    victim = scaleout.hosts[1]
    with _ten_images_written(scaleout, output):
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        status = _wait_ended(client, timeout=30)
    acquisition = status["acquisition"]
    assert acquisition["state"] == "FAILED"
    assert victim.name in acquisition["message"]
    assert status["state"] == "READY"
    with h5py.File(part_file(output, 0)) as part:  # the surviving host's part, closed by the stop
        ids = part["/entry/data/image_id"][:]
        assert len(ids) >= 10
        images = part["/entry/data/data"]
        full = expected_image(scaleout.config, int(ids[-1]))
        assert np.array_equal(images[len(ids) - 1], full[:512])


def test_with_redis_the_hosts_publish_apart_and_the_coordinator_publishes_the_joined_status(scaleout_redis):
    import redis

    from std_daq_client.redis_parsers import channel, parse_status

    pubsub = redis.Redis(port=scaleout_redis.redis_port).pubsub(ignore_subscribe_messages=True)
    names = ["JF-scale", "JF-scale.modules0-0", "JF-scale.modules1-1"]
    pubsub.subscribe(*[channel(name, "status") for name in names])
    client = scaleout_redis.client
    output = scaleout_redis.data / "redis.h5"
    client.start_writer_async({"output_file": str(output), "n_images": 20})
    status = _send_until_ended(scaleout_redis)
    assert status["acquisition"]["state"] == "FINISHED", status["acquisition"]["message"]
    seen: dict[str, list[dict]] = {name: [] for name in names}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(s and s[-1]["state"] == "READY" for s in seen.values()):
        message = pubsub.get_message(timeout=0.5)
        if message:
            seen[message["channel"].decode().split(":")[1]].append(parse_status(message))
    for name in names:  # every host on its own channel, the whole detector on the ordinary one
        assert seen[name] and seen[name][-1]["acquisition"]["state"] == "FINISHED", name
    assert seen["JF-scale"][-1]["acquisition"]["stats"]["n_write_completed"] == 20
    with h5py.File(output) as master:
        ids = master["/entry/data/image_id"][:]
        assert np.array_equal(master["/entry/data/data"][5], expected_image(scaleout_redis.config, int(ids[5])))


def test_write_sync_config_stats_and_deployment_through_the_coordinator(scaleout):
    """The detector runs before the request: the hosts start at different frames, the master joins them."""
    client = scaleout.client
    detector = scaleout.simulator(n_images=0)
    detector.start()
    try:
        status = client.start_writer_sync({"output_file": str(scaleout.data / "sync.h5"), "n_images": 15})
        stats = client.get_stats()
    finally:
        detector.stop()
    assert status["state"] == "READY" and status["acquisition"]["stats"]["n_write_completed"] == 15
    assert status["acquisition"]["message"] == "Completed."
    with h5py.File(scaleout.data / "sync.h5") as master:
        ids = master["/entry/data/image_id"][:]
        assert len(ids) == 15 and len(set(ids.tolist())) == 15
        for k in (0, 14):
            assert np.array_equal(master["/entry/data/data"][k], expected_image(scaleout.config, int(ids[k])))
    assert set(stats["hosts"]) == {h.name for h in scaleout.hosts}
    assert stats["detector"]["packets_received"] == sum(
        s["detector"]["packets_received"] for s in stats["hosts"].values()
    )
    assert stats["detector"]["packets_received"] > 0
    deployment = client.get_deployment_status()
    assert deployment["status"] == "SUCCESS" and set(deployment["servers"]) == {h.name for h in scaleout.hosts}

    config = client.set_config({"detector_name": "JF-renamed"})
    assert config["detector_name"] == "JF-renamed"
    for i, host in enumerate(scaleout.hosts):  # every host got its part of the new config
        assert host_client(host).get_config()["detector_name"] == f"JF-renamed.modules{i}-{i}"
    with pytest.raises(Exception, match="bit_depth"):
        client.set_config({"bit_depth": 7})
    assert client.get_config()["detector_name"] == "JF-renamed"


def test_a_host_that_is_down_is_named_and_nothing_starts(scaleout):
    victim = scaleout.hosts[0]
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=10)
    with pytest.raises(Exception, match=victim.name):
        scaleout.client.start_writer_async({"output_file": str(scaleout.data / "none.h5"), "n_images": 5})
    assert list(scaleout.data.iterdir()) == []
    assert host_client(scaleout.hosts[1]).get_status()["state"] == "READY"
    assert scaleout.client.get_deployment_status()["servers"][victim.name] == "FAILED"


def test_the_ophyd_device_runs_a_plan_against_the_coordinator_unchanged(scaleout, RE, documents):
    from bluesky import plans as bp
    from event_model import Filler

    from ophyd_stddaq import SPEC, StdDaq, StdDaqHDF5Handler

    det = StdDaq(scaleout.url, name="daq", directory=str(scaleout.data), wait_timeout=60, asset_documents="resource")
    det.n_images.put(5)
    detector = scaleout.simulator(n_images=0)
    detector.start()
    try:
        RE(bp.count([det], num=5))
    finally:
        detector.stop()
    assert [doc for name, doc in documents if name == "stop"][0]["exit_status"] == "success"
    with Filler({SPEC: StdDaqHDF5Handler}, inplace=False) as filler:
        filled = [filler(name, doc) for name, doc in documents]
    images = [doc["data"]["daq_image"] for name, doc in filled if name == "event"]
    assert len(images) == 5
    with h5py.File(det.last_output_file) as master:
        assert master["/entry/data/data"].is_virtual
        ids = master["/entry/data/image_id"][:]
        for k, image in enumerate(images):
            assert np.array_equal(image, expected_image(scaleout.config, int(ids[k]))), f"event {k}"
