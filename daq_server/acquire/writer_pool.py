"""The server's writer processes (``daq_server.write.writer_loop``).

:class:`WriterProcess` starts one process and carries its messages over a Unix socket pair;
:class:`WriterPool` keeps ``n`` of them with the current ring buffer mapped, replacing any that
died, at the priority the operator chose. An acquisition is written by them through
``daq_server.acquire.process_image_writer.ProcessImageWriter``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

from daq_server.write.hdf5_writer import WriterError

_log = logging.getLogger("daq_server.acquire.writer_pool")


class WriterProcessError(WriterError):
    """A writer process failed, died or hung; the message says which and why."""


class WriterProcess:
    """One ``python -m daq_server.write.writer_loop`` and the thread reading its messages."""

    def __init__(self, index: int):
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daq_server.write.writer_loop", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.index = index
        self.name = f"writer process {index} (pid {self.process.pid})"
        self._conn = Connection(ours.detach())
        self._send_lock = threading.Lock()
        self.on_message = lambda message: None  # the acquisition this process serves now
        self.exited: str | None = None
        self.ring: tuple | None = None  # the ring buffer message it was sent last
        self._reader = threading.Thread(target=self._read, name=f"writer-{index}-link", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self.exited is None and self.process.poll() is None

    def send(self, message: tuple) -> None:
        if self.exited:
            raise WriterProcessError(f"the {self.name} {self.exited}")
        try:
            with self._send_lock:
                self._conn.send(message)
        except OSError as error:
            self._reader.join(timeout=5)  # a process that died: its reader says how
            if self.exited:
                raise WriterProcessError(f"the {self.name} {self.exited}") from None
            raise WriterProcessError(f"the {self.name} is not answering ({error.strerror})") from None

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            self.on_message(message)
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            self.exited = "closed its channel"
        elif code < 0:
            self.exited = f"was killed by signal {signal.Signals(-code).name}"
        else:
            self.exited = f"exited with status {code}"
        self.on_message(("exited", self.exited))

    def kill(self) -> None:
        """End a process that hangs; its reader reports it gone."""
        if self.process.poll() is None:
            self.process.kill()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the process to exit (it finishes a file it still has), kill it if it does not."""
        try:
            self.send(("exit",))
            self.process.wait(timeout=timeout)
        except (WriterProcessError, subprocess.TimeoutExpired):
            self.kill()
            self.process.wait()
        self._conn.close()


class WriterPool:
    """``n`` writer processes, each with the current ring buffer mapped."""

    def __init__(self, n: int, timeout_s: float = 60.0):
        self.n = n
        self.timeout_s = timeout_s
        self._ring: tuple | None = None
        self._processes: list[WriterProcess] = []

    def attach_ring(self, name: str, n_slots: int, image_bytes: int, shape: tuple[int, int], dtype: str) -> None:
        """A new receiver: every process maps its ring buffer (started now if not yet running)."""
        self._ring = ("ring", name, n_slots, image_bytes, tuple(shape), str(dtype))
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
