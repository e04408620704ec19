"""The REST API refuses what it must, with a 4xx or the error envelope and no change: no token,
a foreign page, a non-JSON body, out-of-range numbers, nested or oversized bodies; control
answers however many live streams are open."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys

import pytest
import requests
from conftest import RunningDaq, free_tcp_port, jungfrau_config

from daq_server.serve.tokens import machine_token_path
from std_daq_client import StdDaqClient

TOKEN = secrets.token_hex(16)


@pytest.fixture
def guarded(tmp_path):
    """A server that requires a bearer token."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    running = RunningDaq(tmp_path, jungfrau_config(1), extra_args=["--token-file", str(token_file)]).start()
    yield running
    running.stop()


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def config(daq, headers=None) -> dict:
    return requests.get(daq.url + "/daq/config", headers=headers or {}, timeout=10).json()["config"]


def test_without_the_token_nothing_is_answered_or_changed(guarded):
    before = config(guarded, auth())
    for method, path, body in [
        ("post", "/daq/config", {"detector_name": "NOAUTH"}),
        ("post", "/writer/write_async", {"output_file": str(guarded.data_root / "f.h5"), "n_images": 1}),
        ("post", "/simulation/start", {}),
        ("get", "/daq/config", None),
        ("get", "/writer/status", None),
    ]:
        for headers in ({}, auth("wrong" + TOKEN), {"Authorization": TOKEN}):
            answer = requests.request(method, guarded.url + path, json=body, headers=headers, timeout=10)
            assert answer.status_code == 401, (path, headers)
            assert answer.json()["status"] == "error" and "Bearer" in answer.json()["message"]
    assert config(guarded, auth()) == before
    assert list(guarded.data_root.iterdir()) == []
    simulator = requests.get(guarded.url + "/simulation/status", headers=auth(), timeout=10).json()["simulator"]
    assert simulator["state"] == "STOPPED"


def test_with_the_token_everything_works(guarded):
    answer = requests.post(guarded.url + "/daq/config", json={"detector_name": "WITHTOKEN"}, headers=auth(), timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "ok"
    assert config(guarded, auth())["detector_name"] == "WITHTOKEN"
    assert requests.get(guarded.url + "/openapi.json", timeout=10).status_code == 200  # the description is public


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token-file", "/nonexistent/token"], "cannot read the token file"),
        (["--allowed-user-ids", "5-2"], "allowed-user-ids"),
        (["--ring-mb", "512", "--memory-limit-mb", "256"], "exceeds --memory-limit-mb"),
    ],
)
def test_unsafe_or_broken_options_refuse_to_start(tmp_path, args, message):
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps(jungfrau_config(1)))
    cmd = [sys.executable, "-m", "daq_server.serve.cli", "--config", str(config_file), "--data-root", str(tmp_path)]
    result = subprocess.run(cmd + ["--port", str(free_tcp_port()), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and message in result.stderr


def test_a_network_address_without_a_token_file_requires_this_machines_token(tmp_path):
    """Given no --token-file on a network address, the server creates this user's machine token
    (mode 0600 in a 0700 folder) and requires it; a second server of the same user requires the same."""
    first = RunningDaq(tmp_path / "first", jungfrau_config(1), extra_args=["--host", "0.0.0.0"])
    second = RunningDaq(tmp_path / "second", jungfrau_config(1), extra_args=["--host", "0.0.0.0"])
    first.start()
    try:
        second.start()
        token_file = machine_token_path()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
        token = token_file.read_text().strip()
        for daq in (first, second):
            before = config(daq, auth(token))
            answer = requests.post(daq.url + "/daq/config", json={"detector_name": "NOTOKEN"}, timeout=10)
            assert answer.status_code == 401 and requests.get(daq.url + "/writer/status").status_code == 401
            assert config(daq, auth(token)) == before
            assert StdDaqClient(daq.url, token=token).get_status()["state"] == "READY"
            assert str(token_file) in (daq.workdir / "server.log").read_text(), "the log says where the token is"
    finally:
        first.stop()
        second.stop()


def test_a_network_address_where_no_token_can_be_made_refuses_to_start(tmp_path):
    """No --token-file and a config folder that cannot hold the machine token: a clear refusal."""
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps(jungfrau_config(1)))
    not_a_folder = tmp_path / "config-home"
    not_a_folder.write_text("a file, not a folder")
    cmd = [sys.executable, "-m", "daq_server.serve.cli", "--config", str(config_file), "--data-root", str(tmp_path),
           "--port", str(free_tcp_port()), "--host", "0.0.0.0"]  # fmt: skip
    env = {**os.environ, "XDG_CONFIG_HOME": str(not_a_folder)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode != 0
    assert "cannot create this machine's token" in result.stderr and "--token-file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_token_file_others_may_read_or_write_is_refused_as_ssh_refuses_a_key(tmp_path, mode):
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps(jungfrau_config(1)))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(mode)
    cmd = [sys.executable, "-m", "daq_server.serve.cli", "--config", str(config_file), "--data-root", str(tmp_path),
           "--port", str(free_tcp_port()), "--token-file", str(token_file)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0, "refused to start"
    assert f"mode {mode:04o}" in result.stderr and f"chmod 600 {token_file}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_no_auth_serves_a_non_loopback_address_when_asked_to(tmp_path):
    daq = RunningDaq(tmp_path, jungfrau_config(1), extra_args=["--host", "0.0.0.0", "--no-auth"]).start()
    try:
        assert daq.client.get_status()["state"] == "READY"
    finally:
        daq.stop()


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain", "Origin": "http://evil.example"},
        {"Content-Type": "application/json", "Origin": "http://evil.example"},
        {"Content-Type": "application/json", "Origin": "null"},
        {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data; boundary=x"},
    ],
)
def test_a_foreign_page_or_a_non_json_body_changes_nothing(daq, headers):
    before = config(daq)
    answer = requests.post(daq.url + "/daq/config", data=json.dumps({"detector_name": "EVIL"}), headers=headers)
    assert answer.status_code in (403, 415) and answer.json()["status"] == "error"
    assert config(daq) == before


@pytest.mark.parametrize("host", ["evil.example", "attacker.example:80", "[not-an-ip"])
def test_a_foreign_host_name_is_refused_without_a_token(daq, host):
    """DNS rebinding: a page whose name now points at this server is same-origin to the browser."""
    before = config(daq)
    headers = {"Host": host, "Origin": f"http://{host}"}
    answer = requests.post(daq.url + "/daq/config", json={"detector_name": "REBOUND"}, headers=headers, timeout=10)
    assert answer.status_code in (400, 403) and answer.json()["status"] == "error"
    assert requests.get(daq.url + "/daq/config", headers={"Host": host}, timeout=10).status_code in (400, 403)
    assert config(daq) == before
    local = requests.get(daq.url + "/daq/config", headers={"Host": f"localhost:{daq.port}"}, timeout=10)
    assert local.status_code == 200


def test_own_origin_and_allowed_origins_are_accepted(tmp_path):
    daq = RunningDaq(tmp_path, jungfrau_config(1), extra_args=["--allowed-origin", "https://daq.example.org"]).start()
    try:
        for origin, name in ((daq.url, "SAME"), ("https://daq.example.org", "ALLOWED")):
            answer = requests.post(daq.url + "/daq/config", json={"detector_name": name}, headers={"Origin": origin})
            assert answer.json()["status"] == "ok", answer.json()
        assert config(daq)["detector_name"] == "ALLOWED"
    finally:
        daq.stop()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"writer_user_id": 4294967296}, "writer_user_id"),
        ({"writer_user_id": -1}, "writer_user_id"),
        ({"writer_user_id": 10**30}, "writer_user_id"),
        ({"start_udp_port": 2**31}, "start_udp_port"),
        ({"image_pixel_height": 200_000}, "image_pixel_height"),
        ({"bit_depth": 2**40}, "bit_depth"),
        ({"module_positions": {"0": [0, 0, 2**63, 511]}}, "module_positions"),
        ({"detector_name": "x" * 1000}, "detector_name"),
        # a valid geometry whose receiver would need far more memory than the server allows
        ({"image_pixel_height": 60000, "image_pixel_width": 60000}, "memory limit"),
    ],  # fmt: skip
)
def test_out_of_range_config_is_refused_before_anything_is_applied(daq, change, message):
    before = config(daq)
    answer = requests.post(daq.url + "/daq/config", json=change, timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "error"
    assert message in answer.json()["message"]
    assert config(daq) == before


def test_allowed_user_ids_limit_writer_user_id(tmp_path):
    daq = RunningDaq(tmp_path, jungfrau_config(1), extra_args=["--allowed-user-ids", "0,1000-65535"]).start()
    try:
        assert requests.post(daq.url + "/daq/config", json={"writer_user_id": 1500}).json()["status"] == "ok"
        refused = requests.post(daq.url + "/daq/config", json={"writer_user_id": 999}).json()
        assert refused["status"] == "error" and "not allowed by this server" in refused["message"]
        assert config(daq)["writer_user_id"] == 1500
    finally:
        daq.stop()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"n_images": 2**31}, "n_images must be at most"),
        ({"n_images": 10**30}, "n_images must be at most"),
        ({"n_images": 1, "run_id": 2**64}, "run_id must be at most"),
        ({"n_images": 1, "run_id": "1" * 5000}, "run_id must be an integer"),
        ({"n_images": 1, "output_file": ["a"]}, "output_file"),
    ],
)
def test_out_of_range_write_requests_are_refused(daq, body, message):
    body = {"output_file": str(daq.data_root / "f.h5"), **body}
    answer = requests.post(daq.url + "/writer/write_async", json=body, timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "error"
    assert message in answer.json()["message"]
    assert list(daq.data_root.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("[" * 100_000 + "]" * 100_000, 400),
        ('{"a":' * 50 + "1" + "}" * 50, 400),
        ('{"detector_name": "' + "x" * (2 << 20) + '"}', 413),
        ("{not json", 400),
        (b"\xff\xfe", 400),
    ],
)
def test_malformed_bodies_get_a_4xx(daq, data, code):
    before = config(daq)
    for path in ("/daq/config", "/writer/write_async", "/simulation/start"):
        answer = requests.post(daq.url + path, data=data, headers={"Content-Type": "application/json"}, timeout=30)
        assert answer.status_code == code and answer.json()["status"] == "error"
    assert config(daq) == before


def test_simulation_start_validates_its_json_body(daq):
    for body, message in (({"rate_hz": "fast"}, "rate_hz"), ({"n_images": -1}, "n_images"), ([1], "JSON object")):
        answer = requests.post(daq.url + "/simulation/start", json=body, timeout=10).json()
        assert answer["status"] == "error" and message in answer["message"]
    answer = requests.post(daq.url + "/simulation/start", data="NaN", headers={"Content-Type": "application/json"})
    assert answer.json()["status"] == "error"


def test_status_and_stop_answer_however_many_live_streams_are_open(daq):
    streams = []
    try:
        for _ in range(12):
            streams.append(requests.get(daq.url + "/daq/live", stream=True, timeout=10))
        codes = [s.status_code for s in streams]
        assert codes.count(200) >= 1 and codes.count(429) >= 1 and set(codes) <= {200, 429}
        assert requests.get(daq.url + "/writer/status", timeout=5).json()["writer"]["state"] == "READY"
        assert requests.post(daq.url + "/writer/stop", timeout=5).status_code == 200
    finally:
        for s in streams:
            s.close()


def test_the_ring_buffer_never_takes_more_than_ring_mb(tmp_path):
    """A config whose images need more than --ring-mb for the ring's four images is refused with the figure;
    the ring of an accepted one holds exactly what --ring-mb allows."""
    daq = RunningDaq(tmp_path, jungfrau_config(1), extra_args=["--ring-mb", "6"]).start()
    try:
        before = config(daq)
        answer = requests.post(daq.url + "/daq/config", json=jungfrau_config(2), timeout=30).json()
        assert answer["status"] == "error"
        assert "--ring-mb is 6 MiB" in answer["message"] and "at least 4 images, 8 MiB" in answer["message"]
        assert config(daq) == before
        receiver = daq.client.get_deployment_status()["receiver"]
        assert receiver["ring_images"] == 6 and receiver["ring_bytes"] <= 6 << 20
    finally:
        daq.stop()
