"""The acquisition vocabulary of the std-daq REST API, defined once: writer and acquisition states, the
messages that say how an acquisition ended, and following an acquisition until it ends.

The server, the scale-out coordinator, the ophyd devices and the ``std_cli_*`` tools all use these names, so
they cannot disagree about what a state means.

Writer state (``status["state"]``)::

    READY    a write request is accepted
    WRITING  an acquisition runs
    UNKNOWN  the server stopped during an acquisition; ``stop`` resets it to READY
    ERROR    the DAQ cannot acquire (its receiver did not start: ``status["reason"]`` says why); writes are
             refused until a config change (or a restart) brings the receiver up

Acquisition state (``status["acquisition"]["state"]``)::

    WAITING_IMAGES -> WRITING -> FLUSHING_IMAGES -> FINISHED  (message "Completed." or "Interrupted.")
                                                 -> FAILED    (message "ERROR: ...")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class WriterState:
    """The writer's states."""

    READY = "READY"
    WRITING = "WRITING"
    UNKNOWN = "UNKNOWN"
    ERROR = "ERROR"
    BUSY = (WRITING, UNKNOWN)
    """Not ready for a write request: an acquisition runs, or one was cut short by a server restart."""


class AcquisitionState:
    """The states of one acquisition."""

    WAITING_IMAGES = "WAITING_IMAGES"
    WRITING = "WRITING"
    FLUSHING_IMAGES = "FLUSHING_IMAGES"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    ACTIVE = (WAITING_IMAGES, WRITING, FLUSHING_IMAGES)
    """States of an acquisition that runs."""
    ENDED = (FINISHED, FAILED)
    """States of an acquisition that has ended (its file is closed)."""


class Message:
    """The acquisition messages clients may rely on (a FAILED acquisition's message starts with ERROR)."""

    NO_ACQUISITION = "No acquisition yet."
    WAITING = "Waiting for images."
    WRITING = "Writing images."
    COMPLETED = "Completed."
    """Every requested image was written."""
    INTERRUPTED = "Interrupted."
    """A stop ended the acquisition before every requested image was written."""
    ERROR_PREFIX = "ERROR: "


@dataclass(frozen=True)
class AcquisitionView:
    """One acquisition object of the status (or the log), read with the vocabulary above."""

    acquisition: dict[str, Any]

    @property
    def state(self) -> str:
        return str(self.acquisition.get("state", ""))

    @property
    def message(self) -> str:
        return str(self.acquisition.get("message", ""))

    @property
    def output_file(self) -> str | None:
        return (self.acquisition.get("info") or {}).get("output_file")

    @property
    def n_images(self) -> int | None:
        """Images requested."""
        value = (self.acquisition.get("info") or {}).get("n_images")
        return None if value is None else int(value)

    @property
    def n_written(self) -> int:
        return int((self.acquisition.get("stats") or {}).get("n_write_completed") or 0)

    @property
    def active(self) -> bool:
        return self.state in AcquisitionState.ACTIVE

    @property
    def ended(self) -> bool:
        return self.state in AcquisitionState.ENDED

    @property
    def failed(self) -> bool:
        return self.state == AcquisitionState.FAILED


def find_acquisition(client: Any, output_file: str, status: dict[str, Any] | None = None, log_records: int = 20):
    """The acquisition object (info, state, message, stats) that writes or wrote ``output_file``.

    Taken from ``status`` (fetched with ``client.get_status()`` if not given) when it is the current
    acquisition, else from the last ``log_records`` records of the acquisition log (an acquisition that
    ended while another one was started). ``None`` if not found."""
    if status is None:
        status = client.get_status()
    if AcquisitionView(status["acquisition"]).output_file == output_file:
        return status["acquisition"]
    for record in client.get_logs(log_records):
        if AcquisitionView(record).output_file == output_file:
            return record
    return None


class AcquisitionLost(RuntimeError):
    """The DAQ no longer reports the acquisition being followed (another one replaced it, or a restart)."""


def follow_acquisition(
    client: Any,
    output_file: str,
    on_update: Callable[[AcquisitionView], None] | None = None,
    poll_interval: float = 0.2,
) -> AcquisitionView:
    """Poll the DAQ until the acquisition writing ``output_file`` has ended; return it as it ended.

    ``on_update`` sees every poll's view (e.g. a progress bar); an exception it raises (a signal handler's,
    say) ends the following. :class:`AcquisitionLost` if the acquisition is reported nowhere any more."""
    while True:
        view = _look(client, output_file)
        if on_update is not None:
            on_update(view)
        if view.ended:
            return view
        time.sleep(poll_interval)


async def follow_acquisition_async(
    client: Any,
    output_file: str,
    on_update: Callable[[AcquisitionView], None] | None = None,
    poll_interval: float = 0.2,
    retry: Callable[[Exception], bool] | None = None,
) -> AcquisitionView:
    """:func:`follow_acquisition` for an event loop: every call to the DAQ runs in a worker thread.

    ``retry(error)`` decides whether a failed poll (the DAQ unreachable for a moment) is tried again."""
    while True:
        try:
            view = await asyncio.to_thread(_look, client, output_file)
        except AcquisitionLost:
            raise
        except Exception as error:
            if retry is None or not retry(error):
                raise
            await asyncio.sleep(max(poll_interval, 0.5))
            continue
        if on_update is not None:
            on_update(view)
        if view.ended:
            return view
        await asyncio.sleep(poll_interval)


def _look(client: Any, output_file: str) -> AcquisitionView:
    found = find_acquisition(client, output_file)
    if found is None:
        raise AcquisitionLost(f"the DAQ no longer reports the acquisition writing {output_file}")
    return AcquisitionView(found)


__all__ = [
    "AcquisitionLost",
    "AcquisitionState",
    "AcquisitionView",
    "Message",
    "WriterState",
    "find_acquisition",
    "follow_acquisition",
    "follow_acquisition_async",
]
