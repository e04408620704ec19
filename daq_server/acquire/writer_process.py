"""One writer process seen from the server: ``python -m daq_server.write.writer_loop`` started with its end of
a Unix socket pair, and the thread that reads its messages (``daq_server.acquire.writer_pool`` keeps them)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

from daq_server.write.hdf5_writer import WriterError

NEUTRAL_FOLDER = "/"
"""The working folder of child processes: ``python -m`` imports from its working folder first, so a server
started inside a copy of the source tree would otherwise run the children from that copy (without its
compiled modules) instead of the installed package. The children use absolute paths only."""


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
            cwd=NEUTRAL_FOLDER,  # "python -m" puts its working folder first on sys.path: never a source tree
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


__all__ = ["WriterProcess", "WriterProcessError"]
