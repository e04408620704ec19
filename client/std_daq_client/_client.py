"""REST client for the std-daq server."""

from __future__ import annotations

import os
import time
from typing import Any

import requests

from ._exceptions import ServerUnreachable, StdDaqAdminException

_CONNECT_TIMEOUT = 3.0
TOKEN_ENV_VAR = "STD_DAQ_TOKEN"
_MAX_TEXT_IN_ERROR = 200


def _one_line(text: str, limit: int = _MAX_TEXT_IN_ERROR) -> str:
    """Collapse whitespace so the text fits on one line, and truncate it to ``limit`` characters."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "..."
    return text


def _describe_request_error(exc: requests.RequestException, read_timeout: float | None) -> str:
    """Short human-readable reason for a failed request (e.g. "Connection refused")."""
    if isinstance(exc, requests.ConnectTimeout):
        return f"connection timed out after {_CONNECT_TIMEOUT:g} s"
    if isinstance(exc, requests.ReadTimeout):
        return f"no answer within {read_timeout:g} s" if read_timeout is not None else "read timed out"
    # requests wraps the OS error several levels deep; the innermost one is the useful part.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return _one_line(str(exc)) or type(exc).__name__


class StdDaqClient:
    """Client for the std-daq REST API.

    Every call returns the payload of the server's answer (a dict, or a list for :meth:`get_logs`).
    State or logic problems reported by the server raise :class:`StdDaqAdminException`; everything else
    (server unreachable, timeout, non-200 HTTP answer, malformed answer) raises :class:`RuntimeError`
    (:class:`ServerUnreachable`, a subclass, when no answer came at all).

    ``token``: sent as ``Authorization: Bearer <token>`` with every request, for a server that requires one;
    ``None`` takes it from the environment variable ``STD_DAQ_TOKEN`` if that is set.
    """

    def __init__(
        self, url_base: str = "http://localhost:5000", timeout: float = 10.0, token: str | None = None
    ) -> None:
        self.url_base = url_base.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        if token is None:
            token = os.environ.get(TOKEN_ENV_VAR) or None
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url_base={self.url_base!r}, timeout={self.timeout!r})"

    # ------------------------------------------------------------------ writer

    def get_status(self) -> dict[str, Any]:
        """Return the DAQ status object (writer state and the current or last acquisition)."""
        return self._request("GET", "/writer/status", "writer")

    def start_writer_async(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a write and return the DAQ status right after the request was accepted.

        ``request`` holds ``output_file`` (absolute path), ``n_images`` and optionally ``run_id``.
        """
        return self._request("POST", "/writer/write_async", "writer", body=request)

    def start_writer_sync(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a write, block until the acquisition has ended, and return the final DAQ status.

        ``request`` is the same as for :meth:`start_writer_async`. There is no read timeout.
        """
        return self._request("POST", "/writer/write_sync", "writer", body=request, no_read_timeout=True)

    def stop_writer(self, n_images: int | None = None) -> dict[str, Any]:
        """Stop the running write (always allowed, resets UNKNOWN to READY); return the DAQ status.

        ``n_images``: the plan that ran the acquisition ended after this many images; once the file holds
        exactly them the acquisition ends "Completed." (its ``n_images`` becomes N), else "Interrupted.".
        """
        body = {} if n_images is None else {"n_images": n_images}
        return self._request("POST", "/writer/stop", "writer", body=body)

    # --------------------------------------------------------------------- daq

    def get_config(self) -> dict[str, Any]:
        """Return the current DAQ config."""
        return self._request("GET", "/daq/config", "config")

    def set_config(self, daq_config: dict[str, Any]) -> dict[str, Any]:
        """Merge ``daq_config`` (partial or full) into the DAQ config; return the config now applied."""
        return self._request("POST", "/daq/config", "config", body=daq_config)

    def get_logs(self, n_last_logs: int) -> list[dict[str, Any]]:
        """Return the last ``n_last_logs`` acquisition records that produced a file, newest first."""
        n = self._non_negative_int(n_last_logs, "n_last_logs")
        return self._request("GET", f"/daq/logs/{n}", "logs")

    def get_stats(self) -> dict[str, Any]:
        """Return the data flow statistics (detector and writer throughput and frequency, 1 s aggregates)."""
        return self._request("GET", "/daq/stats", "stats")

    def get_deployment_status(self) -> dict[str, Any]:
        """Return the deployment status of the last config change (config_id, servers, stats, status)."""
        return self._request("GET", "/daq/deployment", "deployment")

    def wait_for_server(self, timeout: float) -> dict[str, Any]:
        """Wait up to ``timeout`` seconds until the server answers (e.g. just after it was started).

        Returns the DAQ status; raises :class:`ServerUnreachable` if there was no answer in time. Any
        other failure (e.g. HTTP 401 for a missing token) is raised at once.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get_status()
            except ServerUnreachable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def _non_negative_int(value: Any, name: str) -> int:
        """Convert ``value`` to an int >= 0, or raise StdDaqAdminException."""
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise StdDaqAdminException(f"{name} must be a non-negative integer, got {value!r}.")
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise StdDaqAdminException(f"{name} must be a non-negative integer, got {value!r}.") from None
        if n < 0:
            raise StdDaqAdminException(f"{name} must be a non-negative integer, got {value!r}.")
        return n

    def _request(
        self,
        method: str,
        path: str,
        payload_key: str,
        body: dict[str, Any] | None = None,
        no_read_timeout: bool = False,
    ) -> Any:
        """Send one request and return ``answer[payload_key]``, mapping every failure to an exception."""
        url = self.url_base + path
        read = None if no_read_timeout else self.timeout
        try:
            response = self._session.request(method, url, json=body, timeout=(_CONNECT_TIMEOUT, read))
        except requests.RequestException as exc:
            reason = _describe_request_error(exc, read)
            raise ServerUnreachable(f"Cannot reach the std-daq server at {self.url_base}: {reason}") from exc

        try:
            answer = response.json()
        except ValueError:  # includes requests.JSONDecodeError
            answer = None

        if response.status_code != 200:
            if isinstance(answer, dict) and answer.get("message"):
                detail = _one_line(str(answer["message"]))
            else:
                detail = _one_line(response.text) or response.reason or "no message"
            raise RuntimeError(f"std-daq server {method} {url} answered HTTP {response.status_code}: {detail}")

        if not isinstance(answer, dict):
            got = _one_line(response.text) or "an empty body"
            raise RuntimeError(f"malformed answer from {method} {url}: expected a JSON object, got {got!r}")
        if answer.get("status") != "ok":
            message = answer.get("message")
            if not message:
                message = f"server reported status {answer.get('status')!r} without a message"
            raise StdDaqAdminException(str(message))
        if payload_key not in answer:
            raise RuntimeError(f"malformed answer from {method} {url}: missing key {payload_key!r}")
        return answer[payload_key]
