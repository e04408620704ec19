"""``std_cli_write_sync``: start a write, follow it to its end, stop it on SIGINT/SIGTERM.

The command never uses the blocking ``/writer/write_sync`` call: it starts the write asynchronously and
polls the status, so a signal (Ctrl-C on a terminal, SIGINT or SIGTERM from a script or a job system)
always reaches it and stops the acquisition before the command exits.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from tqdm import tqdm

from ._client import StdDaqClient
from .acquisitions import AcquisitionView, WriterState, follow_acquisition

EXIT_OK = 0
"""Every requested image was written."""
EXIT_FAILED = 3
"""The acquisition ended FAILED (its message says why); the file keeps the images written before."""
EXIT_INCOMPLETE = 4
"""The acquisition ended with fewer images than requested (stopped by another client)."""
EXIT_SIGNAL_BASE = 128
"""128 + signal number (130 for SIGINT, 143 for SIGTERM): this command stopped the acquisition on that signal."""

POLL_INTERVAL_S = 0.2
PLAIN_PROGRESS_INTERVAL_S = 1.0
STOP_TIMEOUT_S = 30.0


class _Signalled(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_signalled(signum: int, frame: object) -> None:
    raise _Signalled(signum)


def _terminal_size() -> tuple[int, int]:
    """Columns and lines of the terminal on stderr; 80 x 24 where it reports none (a bare pseudo-terminal)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except OSError:
        return 80, 24
    return size.columns or 80, size.lines or 24


class _Progress:
    """A progress bar with rate and time left on a terminal, or a plain line per second elsewhere."""

    def __init__(self, mode: str, total: int):
        self._mode, self._total = mode, total
        self._start = time.monotonic()
        self._last_line = 0.0
        self._bar = None
        if mode == "bar":
            columns, lines = _terminal_size()
            self._bar = tqdm(total=total, unit="img", file=sys.stderr, ncols=columns, nrows=lines)

    def update(self, done: int, state: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(state, refresh=False)
            self._bar.update(done - self._bar.n)
        elif self._mode == "lines" and time.monotonic() - self._last_line >= PLAIN_PROGRESS_INTERVAL_S:
            self._last_line = time.monotonic()
            meter = tqdm.format_meter(done, self._total, time.monotonic() - self._start, unit="img", ncols=0)
            print(f"{meter} {state}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _stop(client: StdDaqClient) -> dict[str, Any]:
    """Stop the acquisition and wait until the writer has left WRITING; the final status."""
    status = client.stop_writer()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while status["state"] == WriterState.WRITING and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        status = client.get_status()
    return status


def write_and_follow(client: StdDaqClient, request: dict[str, Any], progress: str) -> tuple[dict[str, Any], int]:
    """Write, follow, return (final status, exit code). ``progress``: "bar", "lines" or "none"."""
    handlers = {sig: signal.signal(sig, _raise_signalled) for sig in (signal.SIGINT, signal.SIGTERM)}
    bar: _Progress | None = None
    code: int | None = None
    try:
        try:
            status = client.start_writer_async(request)
            bar = _Progress(progress, int(request["n_images"]))
            output_file = AcquisitionView(status["acquisition"]).output_file
            follow_acquisition(
                client, output_file, lambda view: bar.update(view.n_written, view.state), POLL_INTERVAL_S
            )
            status = client.get_status()
        except _Signalled as signalled:
            for sig in handlers:
                signal.signal(sig, signal.SIG_IGN)  # one signal is enough: the stop must not be cut short
            status = _stop(client)
            code = EXIT_SIGNAL_BASE + signalled.signum
    finally:
        if bar is not None:
            bar.close()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    view = AcquisitionView(status["acquisition"])
    done, wanted = view.n_written, int(view.n_images or 0)
    print(f"{done}/{wanted} images written: {view.state} {view.message}", file=sys.stderr)
    if code is None:
        if view.failed:
            code = EXIT_FAILED
        else:
            code = EXIT_OK if done >= wanted else EXIT_INCOMPLETE
    return status, code
