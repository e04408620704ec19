"""The acquisition log: one record per acquisition that produced a file, kept on disk.

Stored as JSON lines (append-only, one fsync'd line per record), so it survives restarts
and a crash can at worst lose the record being written, never older ones. A record that
cannot be written (full or read-only state folder) is kept in memory and reported in the
server log; the acquisition it describes is not lost to ``last``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

_log = logging.getLogger("daq_server.acquire.acquisition_log")


class AcquisitionLog:
    def __init__(self, path: str | os.PathLike, on_append: Callable[[dict], None] | None = None):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._on_append = on_append or (lambda record: None)
        self._unsaved: list[dict] = []  # records the disk refused, newest last

    def append(self, record: dict) -> None:
        """Add a record; never raises (a failed write keeps the record in memory)."""
        line = json.dumps(record) + "\n"
        with self._lock:
            try:
                self._write(line)
            except OSError as error:
                _log.error("cannot write the acquisition log %s: %s", self.path, error)
                self._unsaved.append(record)
        self._on_append(record)

    def _write(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # no half line left behind
                raise
        finally:
            os.close(fd)

    def last(self, n: int) -> list[dict]:
        """The last ``n`` records, newest first (a damaged line is skipped)."""
        if n <= 0:
            return []
        with self._lock:
            try:
                lines = self.path.read_text().splitlines()
            except OSError:  # no log yet (or an unreadable one): what is in memory
                lines = []
            records = list(reversed(self._unsaved[-n:]))
        if len(records) >= n:
            return records[:n]
        for line in reversed(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
            if len(records) == n:
                break
        return records
