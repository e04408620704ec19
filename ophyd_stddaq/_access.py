"""Client access: the only way the ophyd device reaches the DAQ (through ``std_daq_client``)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import requests

from std_daq_client import StdDaqAdminException, StdDaqClient
from std_daq_client.acquisitions import WriterState, find_acquisition

from ._statistics import REQUEST_FIELD

_log = logging.getLogger("ophyd_stddaq")

OPEN_ENDED_IMAGES = 1_000_000
"""``n_images`` of an acquisition whose length the plan does not say (a step scan's number of triggers):
it is stopped when the plan ends, and the file holds the images written until then."""

OPTIONAL_FIELDS = (REQUEST_FIELD, "run")
"""Write-request fields an older DAQ may not know: sent again without them (the file then lacks them)."""


class DaqAccess:
    """A :class:`~std_daq_client.StdDaqClient` with a short-lived cache and the ownership rules of the device.

    Calls are serialised by a lock, so the device and its Status callbacks can share one instance.
    Background threads that poll get their own client from :meth:`new_client`.

    Parameters
    ----------
    url_base:
        Base URL of the DAQ's REST API, e.g. ``"http://localhost:5000"``.
    client_timeout:
        Read timeout of each REST call in seconds.
    token:
        Bearer token for a server that requires one (passed to the client only when given).
    """

    def __init__(self, url_base: str, client_timeout: float = 10.0, token: str | None = None) -> None:
        self.url_base = url_base.rstrip("/")
        self.client_timeout = client_timeout
        self.token = token
        self.client = self.new_client()
        self._lock = threading.RLock()
        self._config: tuple[float, dict[str, Any]] | None = None
        self._status: tuple[float, dict[str, Any]] | None = None

    def new_client(self) -> StdDaqClient:
        """A new client for the same server (one per thread that polls)."""
        extra = {} if self.token is None else {"token": self.token}
        return StdDaqClient(url_base=self.url_base, timeout=self.client_timeout, **extra)

    # ---------------------------------------------------------------- reading

    def _cached(self, slot: str, max_age: float, fetch) -> dict[str, Any]:
        """The value kept in ``slot`` if younger than ``max_age`` seconds, else a fresh ``fetch()``."""
        with self._lock:
            kept = getattr(self, slot)
            if kept is not None and time.monotonic() - kept[0] <= max_age:
                return kept[1]
            value = fetch()
            setattr(self, slot, (time.monotonic(), value))
            return value

    def status(self, max_age: float = 0.0) -> dict[str, Any]:
        """The DAQ status object; a cached one if it is younger than ``max_age`` seconds."""
        return self._cached("_status", max_age, self.client.get_status)

    def remember_status(self, status: dict[str, Any]) -> None:
        """Store a status seen elsewhere (by the status monitor), so the cache stays fresh."""
        with self._lock:
            self._status = (time.monotonic(), status)

    def config(self, max_age: float = 0.0) -> dict[str, Any]:
        """The DAQ config; a cached one if it is younger than ``max_age`` seconds."""
        return self._cached("_config", max_age, self.client.get_config)

    # ---------------------------------------------------------------- changing

    def set_config(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Merge ``fields`` into the DAQ config; return the config now applied (the server validates)."""
        with self._lock:
            self._config = None
            config = self.client.set_config(fields)
            self._config = (time.monotonic(), config)
            return config

    def start_writer(self, output_file: str, n_images: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send ``start_writer_async`` (``extra``: optional request fields such as NXmx values); the server
        refuses (StdDaqAdminException) unless it is READY.

        A DAQ too old to know ``image_statistics`` refuses it as an unknown field (and creates nothing):
        the request is then sent again without it, and the events' statistics are NaN."""
        with self._lock:
            self._status = None
            request = {**(extra or {}), "output_file": output_file, "n_images": n_images}
            while True:
                try:
                    status = self.client.start_writer_async(request)
                    break
                except StdDaqAdminException as error:
                    unknown = [name for name in OPTIONAL_FIELDS if name in request and _unknown_field(error, name)]
                    if not unknown:
                        raise
                    _log.warning("the DAQ at %s does not know %s: %s", self.url_base, unknown[0], error)
                    del request[unknown[0]]
            self._status = (time.monotonic(), status)
            return status

    def stop_if_ours(self, output_file: str, n_images: int | None = None) -> dict[str, Any] | None:
        """Stop the writer if, and only if, it is busy with our acquisition; return the status after it.

        ``n_images``: the plan ended after this many images (the acquisition is "Completed." with them).

        "Busy" is WRITING, or UNKNOWN after a server restart that interrupted our acquisition (stop resets
        it to READY). Somebody else's acquisition is never stopped. Returns ``None`` if nothing was done.
        """
        with self._lock:
            status = self.client.get_status()
            self._status = (time.monotonic(), status)
            ours = status["acquisition"]["info"].get("output_file") == output_file
            if not ours or status["state"] not in WriterState.BUSY:
                return None
            status = self.client.stop_writer(n_images) if n_images is not None else self.client.stop_writer()
            self._status = (time.monotonic(), status)
            return status

    def _post(self, path: str, body: dict[str, Any], read_timeout: float) -> dict[str, Any]:
        """POST a JSON body outside the client's routes; the answer's envelope checked as the client does."""
        headers = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        try:
            answer = requests.post(f"{self.url_base}{path}", json=body, headers=headers, timeout=(3.0, read_timeout))
            answer.raise_for_status()
            reply = answer.json()
        except (requests.RequestException, ValueError) as error:
            raise RuntimeError(f"POST {path} at {self.url_base} failed: {error}") from None
        if reply.get("status") != "ok":
            raise StdDaqAdminException(reply.get("message") or f"POST {path} was refused")
        return reply

    def trigger_writer(self, n_images: int = 1) -> dict[str, Any]:
        """``POST /writer/trigger``: a gated acquisition writes the next ``n_images`` images taken from now."""
        return self._post("/writer/trigger", {"n_images": n_images}, self.client_timeout)["writer"]

    def simulator_waits_for_triggers(self) -> bool:
        """Is the server's simulated detector armed for software triggers (``trigger_mode`` software)?"""
        headers = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        try:
            answer = requests.get(f"{self.url_base}/simulation/status", headers=headers, timeout=(3.0, 10.0))
            return answer.json().get("simulator", {}).get("state") == "ARMED"
        except (requests.RequestException, ValueError, AttributeError):
            return False  # a server without a simulator, or an old one: a real detector sends by itself

    def simulator_settings(self, frame_period: float, exposure_time: float) -> dict[str, Any] | None:
        """``POST /simulation/settings`` when the server's simulated detector runs or is armed (its frame period
        and exposure, as a controller sets a real detector's); None when there is none or it is stopped."""
        headers = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        try:
            answer = requests.get(f"{self.url_base}/simulation/status", headers=headers, timeout=(3.0, 10.0))
            state = answer.json().get("simulator", {}).get("state")
        except (requests.RequestException, ValueError, AttributeError):
            return None  # a server without a simulator
        if state not in ("RUNNING", "ARMED"):
            return None
        body = {"frame_period": frame_period, "exposure_time": exposure_time}
        return self._post("/simulation/settings", body, self.client_timeout)["simulator"]

    def software_trigger(self, n_images: int = 1, rate_hz: float | None = None) -> list[int]:
        """``POST /simulation/trigger``: the server's simulated detector sends ``n_images`` frames now, at
        ``rate_hz`` (default: its frame period's rate, else 100 Hz); the answer comes when they are sent.

        Returns the frame numbers sent; StdDaqAdminException with the server's message if it refuses.
        """
        body: dict[str, Any] = {"n_images": n_images}
        if rate_hz is not None:
            body["rate_hz"] = rate_hz
        reply = self._post("/simulation/trigger", body, self.client_timeout + n_images / (rate_hz or 1.0))
        return list(reply["simulator"]["frame_numbers"])

    # ------------------------------------------------------------- acquisitions

    def acquisition(self, output_file: str) -> dict[str, Any] | None:
        """The acquisition object of ``output_file`` now (``std_daq_client.acquisitions.find_acquisition``)."""
        with self._lock:
            status = self.client.get_status()
            self._status = (time.monotonic(), status)
            return find_acquisition(self.client, output_file, status)


def _unknown_field(error: StdDaqAdminException, field: str) -> bool:
    """Did the DAQ refuse a request because it does not know ``field``?"""
    message = str(error)
    return field in message and "unknown" in message.lower()
