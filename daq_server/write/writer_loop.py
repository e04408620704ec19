"""A writer process: writes acquisitions into HDF5 from the receiver's ring buffer, outside the server.

The server (``daq_server.acquire.process_image_writer``) starts it as ``python -m daq_server.write.writer_loop FD``,
FD being its end of a Unix socket pair. The ring buffer is a named POSIX shared memory object
(``/dev/shm/std_daq.<pid>.<n>``) that this process maps read-only; images never cross the socket,
only slot numbers do (the odin-data model: shared memory plus a small ready/release channel).

Messages (pickled tuples, :mod:`multiprocessing.connection` framing) from the server:

``("ring", name, n_slots, slot_bytes, shape, dtype)``   map this ring buffer (a new receiver)
``("open", target, compression_threads)``                create ``target``'s file -> ``opened`` | ``refused``
``("image", slot, frame, n_missing, receive_time)``      write the image in ``slot`` (ready)
``("close", write_pending, summary)``                    finish the file -> ``closed`` (n_written, last_image,
                                                         compression counters, error, summary counts:
                                                         the stream's, images without results)
``("exit",)``                                            end the process

and to it: ``("done", slots, n_written, last_image)`` (these slots are released: written or
dropped), ``("failed", message)`` (a write failed: the file keeps what was written, later images
are only released) and the answers above. A crash or a hang here loses this acquisition's file
tail, never the receiver: the server keeps receiving, counts, kills a hung process and starts
another one for the next acquisition.
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import sys
from multiprocessing.connection import Connection

import numpy as np

from daq_server.receive.image_source import ReceivedImage
from daq_server.write.hdf5_writer import describe_error, has_quarantined_files
from daq_server.write.image_writer import ImageWriter, open_writer

IDLE_S = 0.05
"""How often the finished compressed chunks are written while no message comes."""
BURST = 32
"""Image messages handled before the released slots are reported."""


class RingView:
    """The receiver's ring buffer, mapped read-only by its shared memory name."""

    def __init__(self, name: str, n_slots: int, slot_bytes: int, shape: tuple[int, int], dtype: str):
        fd = os.open("/dev/shm/" + name.lstrip("/"), os.O_RDONLY)
        try:
            self._map = mmap.mmap(fd, n_slots * slot_bytes, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        dtype = np.dtype(dtype)  # slot s starts at s * slot_bytes (a page boundary), its image C-contiguous
        self._images = np.ndarray((n_slots, *shape), dtype, self._map, strides=(slot_bytes, shape[1] * dtype.itemsize,
                                                                                 dtype.itemsize))  # fmt: skip

    def image(self, slot: int) -> np.ndarray:
        return self._images[slot]


class WriterLoop:
    """The process's state: the mapped ring, the open acquisition, the slots to report released."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.ring: RingView | None = None
        self.ring_error = "no ring buffer was given"
        self.writer: ImageWriter | None = None
        self.failed = False
        self.released: list[int] = []
        self.reported = -1

    def run(self) -> None:
        """Handle messages as they come; the slots they free are reported once per burst (at most
        BURST messages), not once per image."""
        while True:
            timeout = IDLE_S if self.writer is not None else None
            for _ in range(BURST):
                try:
                    message = self.conn.recv() if self.conn.poll(timeout) else None
                except (EOFError, OSError):  # the server is gone: finish the file as far as it goes
                    self.close(True, None, answer=False)
                    return
                if message is not None and message[0] == "exit":
                    self.close(True, None, answer=False)
                    return
                self.handle(message)
                if message is None or message[0] != "image":
                    break
                timeout = 0
            self.report()

    def handle(self, message: tuple | None) -> None:
        if message is None:
            self.guarded(lambda: self.writer.idle())
        elif message[0] == "ring":
            try:
                self.ring = RingView(*message[1:])
            except (OSError, ValueError) as error:  # e.g. that receiver is gone already: wait for the next
                self.ring, self.ring_error = None, f"cannot map the ring buffer {message[1]}: {error}"
        elif message[0] == "open":
            self.open(*message[1:])
        elif message[0] == "image":
            self.put(*message[1:])
        elif message[0] == "close":
            self.close(*message[1:])

    def open(self, target, compression_threads: int) -> None:
        if self.ring is None:
            self.conn.send(("refused", self.ring_error))
            return
        try:
            self.writer = open_writer(target, compression_threads)
        except Exception as error:  # a file that cannot be made refuses this acquisition, never ends the process
            logging.getLogger("daq_server.write.writer_loop").exception("opening %s failed", target.output.path)
            self.conn.send(("refused", describe_error(error)))
            return
        self.failed, self.reported = False, -1
        self.conn.send(("opened",))

    def put(self, slot: int, frame: int, n_missing: int, receive_time: float) -> None:
        image = ReceivedImage(slot, frame, n_missing, 0, receive_time, self.ring.image(slot))
        image.keep_until_dropped(lambda: self.released.append(slot))
        try:
            if self.writer is not None and not self.failed:
                self.guarded(lambda: self.writer.put(image))
        finally:
            image.drop()

    def guarded(self, call) -> None:
        """A failing write (disk full, I/O error) is reported once; later images are only released."""
        if self.writer is None or self.failed:
            return
        try:
            call()
        except Exception as error:
            self.failed = True
            self.conn.send(("failed", describe_error(error)))

    def close(self, write_pending: bool, summary: dict | None, answer: bool = True) -> None:
        writer, self.writer = self.writer, None
        if writer is None:
            if answer:
                self.conn.send(("closed", 0, None, {}, ""))  # nothing was open (its open was refused)
            return
        try:
            writer.close(write_pending=write_pending and not self.failed, summary=summary)
            answer = ("closed", writer.n_written, writer.last_image, writer.compression, "")
        except Exception as error:
            answer = ("closed", writer.n_written, writer.last_image, writer.compression, describe_error(error))
        answer += (getattr(writer, "summary_counts", {}),)
        self.report(writer)
        try:
            self.conn.send(answer)
        except OSError:
            pass

    def report(self, writer: ImageWriter | None = None) -> None:
        """Tell the server which slots are free again and how far the file is."""
        writer = writer or self.writer
        n_written = writer.n_written if writer is not None else self.reported
        if not self.released and n_written == self.reported:
            return
        slots, self.released = self.released, []
        self.reported = n_written
        try:
            self.conn.send(("done", slots, n_written, writer.last_image if writer is not None else None))
        except OSError:
            pass


def main(argv: list[str] | None = None) -> None:
    """``python -m daq_server.write.writer_loop FD``: serve the server on socket FD until it says exit."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s[writer %(process)d] %(levelname)s %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the server decides
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    WriterLoop(Connection(int(argv[0]))).run()
    if has_quarantined_files():  # HDF5 cannot release a file whose writes failed without crashing
        os._exit(0)


if __name__ == "__main__":
    main()
