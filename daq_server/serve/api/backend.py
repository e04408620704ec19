"""What the REST layer needs of the DAQ behind it: the protocol that both the server's
:class:`~daq_server.serve.service.DaqService` and the scale-out coordinator meet.

The resource modules ``writer``, ``config``, ``stats``, ``logs`` and ``deployment`` ask only for this, so they
serve either one unchanged; the server-only resources (gate, live, page, simulation) ask for the service.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class StatsSource(Protocol):
    def current(self) -> dict:
        """Detector and writer throughput of the last second."""
        ...


class LogSource(Protocol):
    def last(self, n: int) -> list[dict]:
        """The last ``n`` acquisitions that produced a file, newest first."""
        ...


@runtime_checkable
class DaqBackend(Protocol):
    """One DAQ as the REST API sees it (state and logic problems raise ``AdminError``)."""

    stats: StatsSource
    log: LogSource

    def status(self) -> dict:
        """The DAQ status object: writer state and the current or last acquisition."""
        ...

    def write_async(self, body: object) -> dict:
        """Start an acquisition for a write request body; the status right after."""
        ...

    def write_sync(self, body: object) -> dict:
        """Start an acquisition and answer when it has ended."""
        ...

    def stop_writer(self, body: object = None) -> dict:
        """Stop the running acquisition (always allowed); the status after."""
        ...

    def get_config(self) -> dict:
        """The detector config."""
        ...

    def apply_config(self, changes: dict) -> tuple[dict, str]:
        """Merge, validate and apply config changes; the new config and what the change did."""
        ...

    def deployment(self) -> dict:
        """How the last config change was applied."""
        ...
