"""Control answers under abuse: while 1,000 connections to the REST port each hold an unfinished request
(no token needed for that), ``status`` and ``stop`` still answer, on the server and on the coordinator;
connections that send nothing are closed after the idle timeout; an acquisition works afterwards."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys

import pytest
import requests
from conftest import RunningDaq, answers_http, free_tcp_port, jungfrau_config, wait_for

N_CONNECTIONS = 1000


@pytest.fixture(autouse=True)
def enough_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def hold_half_open(port: int, n: int) -> list[socket.socket]:
    held = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /writer/status HTTP/1.1\r\nHost: x\r\n")  # the blank line that ends it never comes
        held.append(s)
    return held


def control_answers(url: str) -> list[str]:
    """Status and stop, each with a client timeout of 10 s (a liveness check, not a speed one)."""
    answers = []
    for method, path in (("GET", "/writer/status"), ("POST", "/writer/stop")):
        reply = requests.request(method, url + path, json={} if method == "POST" else None, timeout=10)
        answers.append(f"{method} {path} {reply.status_code} {reply.json()['status']}")
    return answers


def test_the_server_answers_control_while_a_thousand_connections_hang(tmp_path):
    daq = RunningDaq(tmp_path, jungfrau_config(1)).start()
    held = []
    try:
        held = hold_half_open(daq.port, N_CONNECTIONS)
        for _ in range(3):
            assert control_answers(daq.url) == ["GET /writer/status 200 ok", "POST /writer/stop 200 ok"]
        # the idle ones are closed by the server after its idle timeout: the kernel sees them end
        wait_for(lambda: sum(_closed_by_peer(s) for s in held[:20]) == 20, timeout=60)
        for s in held:
            s.close()
        status, _ = daq.acquire("after.h5", 5)
        assert status["acquisition"]["message"] == "Completed."
    finally:
        for s in held:
            s.close()
        daq.stop()


def _closed_by_peer(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_the_coordinator_answers_control_while_a_thousand_connections_hang(tmp_path):
    config = jungfrau_config(1)
    host = RunningDaq(tmp_path / "host", config, extra_args=["--modules", "0"]).start()
    port = free_tcp_port()
    config_file = tmp_path / "full.json"
    config_file.write_text(host.config_file.read_text())
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "daq_server.coordinator.cli", "--config", str(config_file), "--hosts", host.url,
         "--port", str(port), "--data-root", str(host.data_root), "--state-dir", str(tmp_path / "cstate")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    held = []
    try:
        wait_for(lambda: answers_http(url), timeout=30)
        held = hold_half_open(port, N_CONNECTIONS)
        assert control_answers(url) == ["GET /writer/status 200 ok", "POST /writer/stop 200 ok"]
    finally:
        for s in held:
            s.close()
        coordinator.terminate()
        coordinator.wait(30)
        host.stop()
