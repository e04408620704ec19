"""/openapi.json describes the whole REST API, and schemathesis, generating requests from it against a
live server, finds no server error; every call the server refuses leaves the config and the writer
as they were."""

from __future__ import annotations

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
from hypothesis import HealthCheck, given, settings  # noqa: E402 - schemathesis brings hypothesis

SEED_ENDPOINTS = [
    ("get", "/writer/status"), ("get", "/daq/config"), ("get", "/daq/stats"), ("get", "/daq/logs/{n_logs}"),
    ("get", "/daq/deployment"), ("get", "/simulation/status"), ("get", "/daq/live"), ("post", "/writer/write_async"),
    ("post", "/writer/write_sync"), ("post", "/writer/stop"), ("post", "/daq/config"), ("post", "/simulation/start"),
    ("post", "/simulation/stop"),
]  # fmt: skip


def test_openapi_describes_every_endpoint(daq):
    spec = requests.get(daq.url + "/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.")
    for method, path in SEED_ENDPOINTS:
        assert method in spec["paths"][path], f"{method.upper()} {path}"
    config_schema = spec["components"]["schemas"]["DaqConfigChange"]["properties"]
    assert config_schema["writer_user_id"]["maximum"] == 2**31 - 1  # the bounds the validation uses


def snapshot(daq) -> tuple:
    config = requests.get(daq.url + "/daq/config", timeout=10).json()["config"]
    writer = requests.get(daq.url + "/writer/status", timeout=10).json()["writer"]["state"]
    simulator = requests.get(daq.url + "/simulation/status", timeout=10).json()["simulator"]["state"]
    return config, writer, simulator


def refused(response) -> bool:
    if 400 <= response.status_code < 500:
        return True
    try:
        return response.json().get("status") == "error"
    except ValueError:
        return False


def check_call(daq, case, seen: list) -> None:
    """Send one generated request: no 5xx; a refusal changes nothing."""
    seen.append(f"{case.method} {case.path}")
    before = snapshot(daq)
    try:
        response = case.call(timeout=10)
    except requests.ReadTimeout:  # a valid write_sync waits for images that never come
        response = None
    try:
        if response is not None:
            assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text}"
            if refused(response):
                assert snapshot(daq) == before, f"{case.method} {case.path} was refused but changed state"
    finally:
        requests.post(daq.url + "/writer/stop", timeout=10)
        requests.post(daq.url + "/simulation/stop", timeout=10)


def test_generated_requests_get_no_server_error_and_refusals_change_nothing(daq):
    schema = schemathesis.openapi.from_url(daq.url + "/openapi.json")
    seen: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/daq/live":  # a stream without end
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(case) -> None:
            check_call(daq, case, seen)

        run()
    assert {f"{m.upper()} {p}" for m, p in SEED_ENDPOINTS if p != "/daq/live"} <= set(seen)
    assert len(seen) > 60
