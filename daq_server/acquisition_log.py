"""The acquisition log: one record per acquisition that produced a file, kept on disk.

Stored as JSON lines (append-only, one fsync'd line per record), so it survives restarts
and a crash can at worst lose the record being written, never older ones.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path


class AcquisitionLog:
    def __init__(self, path: str | os.PathLike, on_append: Callable[[dict], None] | None = None):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._on_append = on_append or (lambda record: None)

    def append(self, record: dict) -> None:
        line = json.dumps(record) + "\n"
        with self._lock, open(self.path, "a") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self._on_append(record)

    def last(self, n: int) -> list[dict]:
        """The last ``n`` records, newest first (a damaged line is skipped)."""
        if n <= 0 or not self.path.exists():
            return []
        with self._lock:
            lines = self.path.read_text().splitlines()
        records = []
        for line in reversed(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
            if len(records) == n:
                break
        return records
