"""The acquisition log: one record per acquisition that produced a file, kept on disk.

Stored as JSON lines (append-only, one fsync'd line per record), so it survives restarts
and a crash can at worst lose the record being written, never older ones. A record that
cannot be written (full or read-only state folder) is kept in memory and reported in the
server log; the acquisition it describes is not lost to ``last``.

Bounded: when the file would pass :data:`MAX_BYTES` (about 30,000 records) it becomes
``acquisitions.jsonl.1`` (replacing the older one) and a new file starts, so the log keeps at least the
last :data:`MAX_BYTES` of records and at most twice that. ``last(n)`` reads the files backwards from their
end, only as far as ``n`` records reach: its cost grows with ``n``, not with the log.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

_log = logging.getLogger("daq_server.acquire.acquisition_log")

MAX_BYTES = 16 << 20
"""Size at which the log file is rotated (one older file is kept)."""
_BLOCK = 64 << 10


class AcquisitionLog:
    def __init__(self, path: str | os.PathLike, on_append: Callable[[dict], None] | None = None, max_bytes=MAX_BYTES):
        self.path = Path(path)
        self.max_bytes = max_bytes
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

    @property
    def older(self) -> Path:
        """The rotated file (the records before the current file's)."""
        return self.path.with_name(self.path.name + ".1")

    def _write(self, line: str) -> None:
        try:
            if self.path.stat().st_size + len(line) > self.max_bytes:
                os.replace(self.path, self.older)
        except FileNotFoundError:
            pass
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
            records = list(reversed(self._unsaved[-n:]))
            for path in (self.path, self.older):
                if len(records) >= n:
                    break
                for line in _lines_from_the_end(path):
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
                    if len(records) == n:
                        break
        return records[:n]


def _lines_from_the_end(path: Path):
    """The file's lines, last first, read backwards block by block (nothing if there is no such file)."""
    try:
        handle = open(path, "rb")
    except OSError:  # no log yet (or an unreadable one)
        return
    with handle:
        position = handle.seek(0, os.SEEK_END)
        rest = b""
        while position > 0:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            rest = handle.read(step) + rest
            lines = rest.split(b"\n")
            rest = lines[0]  # may continue in the block before
            for line in reversed(lines[1:]):
                if line.strip():
                    yield line.decode(errors="replace")
        if rest.strip():
            yield rest.decode(errors="replace")
