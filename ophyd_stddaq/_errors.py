"""Exceptions of the ophyd integration (the client's own exceptions pass through unchanged)."""

from __future__ import annotations

from typing import Any


class StdDaqAcquisitionError(RuntimeError):
    """An acquisition did not give the plan what it needed.

    Raised (as the exception of a failed Status, or directly) when the acquisition ended FAILED, ended
    before the images the plan waits for were written (for example "Interrupted." by a stop from another
    client), is no longer reported by the DAQ, or when a plan triggers more often than ``n_images``.
    The message contains the DAQ's own message where there is one; :attr:`acquisition` holds the DAQ's
    acquisition object (info, state, message, stats) as last seen, or ``None``.
    """

    def __init__(self, message: str, acquisition: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.acquisition = acquisition
