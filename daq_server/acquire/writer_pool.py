"""The server's writer processes: :class:`WriterPool` keeps ``n`` of them
(``daq_server.acquire.writer_process``) with the current ring buffer mapped, replacing any that died, at the
priority the operator chose. An acquisition is written by them through
``daq_server.acquire.process_image_writer.ProcessImageWriter``.
"""

from __future__ import annotations

import logging
import os

from daq_server.acquire.writer_process import WriterProcess, WriterProcessError

_log = logging.getLogger("daq_server.acquire.writer_pool")


class WriterPool:
    """``n`` writer processes, each with the current ring buffer mapped."""

    def __init__(self, n: int, timeout_s: float = 60.0):
        self.n = n
        self.timeout_s = timeout_s
        self._ring: tuple | None = None
        self._processes: list[WriterProcess] = []

    def attach_ring(self, name: str, n_slots: int, slot_bytes: int, shape: tuple[int, int], dtype: str) -> None:
        """A new receiver: every process maps its ring buffer (started now if not yet running)."""
        self._ring = ("ring", name, n_slots, slot_bytes, tuple(shape), str(dtype))
        self.processes()

    def processes(self) -> list[WriterProcess]:
        """The ``n`` processes, a dead one replaced by a new one that maps the ring."""
        while len(self._processes) < self.n:
            self._processes.append(None)
        for i, process in enumerate(self._processes):
            if process is not None and process.ring == self._ring and process.alive:
                continue
            if process is not None and process.alive:
                try:
                    process.send(self._ring)
                    process.ring = self._ring
                    continue
                except WriterProcessError:
                    pass
            if process is not None:
                _log.warning("the %s %s; starting another one", process.name, process.exited or "ended")
                process.kill()
            process = self._processes[i] = WriterProcess(i)  # at the server's priority (daq_server.serve.priority)
            if self._ring is not None:
                process.send(self._ring)  # a new process: its socket takes the message at once
                process.ring = self._ring
        return list(self._processes)

    def close(self) -> None:
        for process in self._processes:
            if process is not None:
                process.stop()
        self._processes = []


def remove_stale_rings(prefix: str = "std_daq.") -> None:
    """Shared memory left by servers that died (``/dev/shm/std_daq.<pid>.<n>`` of a pid that is gone)."""
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return
    for name in names:
        parts = name.split(".")
        if not name.startswith(prefix) or len(parts) != 3 or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            try:
                os.unlink("/dev/shm/" + name)
            except OSError:
                pass
        except PermissionError:
            pass


__all__ = ["WriterPool", "WriterProcess", "WriterProcessError", "remove_stale_rings"]
