"""One acquisition written by the server's writer processes (``daq_server.acquire.writer_pool``).

:class:`ProcessImageWriter` has the interface of the in-process ``ImageWriter`` the driver uses
(``put``, ``drain``, ``close``, ``n_written``): it sends each image's ring-buffer slot number to a
process and gives the slot back when the process reports the image written.

With several processes, image *k* of the acquisition goes to process *k mod n*, which writes
part file *k mod n*; the acquisition's ``output_file`` becomes the master file joining them (an HDF5
virtual dataset; both made by ``daq_server.write.file_layout``). A pedestal acquisition goes to the first
process only (its accumulator needs every frame). A process that dies or stops answering fails
the acquisition with its reason; the receiver never waits for it.
"""

from __future__ import annotations

import os
import threading
import time

from daq_server.acquire.writer_pool import WriterPool
from daq_server.acquire.writer_process import WriterProcessError
from daq_server.receive.image_source import ReceivedImage
from daq_server.write import file_layout
from daq_server.write.crash_recovery import release_crashed_file
from daq_server.write.file_layout import LayoutError
from daq_server.write.hdf5_writer import WriterError
from daq_server.write.request import WriteTarget

MAX_IN_FLIGHT = 512
"""Images sent to one process and not yet released: the socket never fills, so sending never blocks."""


class ProcessImageWriter:
    """One acquisition written by the pool's processes (same interface as ``ImageWriter``)."""

    def __init__(self, target: WriteTarget, pool: WriterPool, compression_threads: int = 0):
        self.target = target
        self.compression: dict[str, int] = {}
        self.summary_counts: dict[str, int] = {}
        """What the processes counted besides their images, summed (once closed): the images they put on the
        Stream2 stream and those it dropped, ``images_without_results``."""
        self._timeout_s = pool.timeout_s
        self._lock = threading.Condition()
        self._held: dict[int, ReceivedImage] = {}  # slot -> image a process has not released
        self._sent: list[int] = []  # images sent to each process
        self._written: list[int] = []
        self._last_image: list[dict | None] = []
        self._closed: list[tuple | None] = []
        self._error: str | None = None
        self._last_news = time.monotonic()  # the last message from a process
        self._owed_since = self._last_news  # since when the processes owe us images or an answer
        self._next = 0
        self._final: int | None = None  # the images the master file shows, once written
        n = 1 if target.request.pedestal else pool.n  # a pedestal needs every frame in one accumulator
        self._targets = file_layout.share_targets(target, n)
        try:
            self._master = file_layout.reserve_master(target) if n > 1 else None
        except LayoutError as error:
            raise WriterError(str(error)) from None
        self._processes = pool.processes()[:n]
        answers: list[tuple | None] = [None] * n
        for i, (process, part) in enumerate(zip(self._processes, self._targets, strict=True)):
            self._sent.append(0)
            self._written.append(0)
            self._last_image.append(None)
            self._closed.append(None)
            process.on_message = lambda message, i=i: self._on_message(i, message, answers)
            process.send(("open", part, compression_threads))
        self._wait_for(lambda: all(answers), f"creating {target.output.path}", new_request=True)
        refused = [answer[1] for answer in answers if answer[0] != "opened"]
        if refused:
            self._error = refused[0]
            for i, answer in enumerate(answers):
                if answer[0] != "opened":  # nothing to close there
                    self._closed[i] = ("closed", 0, None, {}, "")
            self.close(write_pending=False)
            for i, answer in enumerate(answers):  # the parts that were created go again
                if answer[0] == "opened" and len(self._targets) > 1:
                    _remove_quietly(self._targets[i].output.path)
            if self._master is not None:
                self._master.remove()
                self._master.close_folder()
                self._master.close()
            raise WriterProcessError(refused[0])

    # ---- messages from the processes (their reader threads) ------------------------------------
    def _on_message(self, i: int, message: tuple, answers: list) -> None:
        with self._lock:
            self._last_news = time.monotonic()
            kind = message[0]
            if kind in ("opened", "refused"):
                answers[i] = message
            elif kind == "done":
                _, slots, n_written, last_image = message
                for slot in slots:
                    image = self._held.pop(slot, None)
                    if image is not None:
                        image.drop()
                self._written[i], self._last_image[i] = n_written, last_image
            elif kind == "failed":
                self._error = self._error or message[1]
            elif kind == "closed":
                self._closed[i] = message
                self._written[i], self._last_image[i] = message[1], message[2]
            elif kind == "exited":
                self._process_gone(i, f"the {self._processes[i].name} {message[1]}", answers)
            self._lock.notify_all()

    def _process_gone(self, i: int, reason: str, answers: list) -> None:
        """A process died: its images go back to the receiver, its file is made readable again."""
        if answers[i] is None:
            answers[i] = ("refused", reason)
        if self._closed[i] is None:  # it died with its file open: the file says how many images it holds
            opened = answers[i][0] == "opened"
            recovered = release_crashed_file(self._targets[i].output.path) if opened else None
            if recovered is not None and recovered.n_images is not None:
                self._written[i] = recovered.n_images
            self._closed[i] = ("closed", self._written[i], self._last_image[i], {}, reason)
            note = recovered.note if recovered is not None else ""
            self._error = (self._error or f"{reason} after {self._written[i]} images.") + note
        for slot in [slot for slot, image in self._held.items() if self._owner(slot) == i]:
            self._held.pop(slot).drop()

    def _owner(self, slot: int) -> int:
        return self._held[slot]._writer_index  # type: ignore[attr-defined]

    # ---- the ImageWriter interface --------------------------------------------------------------
    @property
    def n_written(self) -> int:
        if self._final is not None:
            return self._final
        return sum(self._written) if len(self._targets) > 1 else self._written[0]

    @property
    def last_image(self) -> dict | None:
        """The newest image written, its index in the whole acquisition."""
        n = len(self._targets)
        images = [dict(image, index=image["index"] * n + i) for i, image in enumerate(self._last_image) if image]
        return max(images, key=lambda image: image["index"]) if images else None

    def put(self, image: ReceivedImage) -> None:
        """Hand ``image`` to its process; it stays held (its slot in use) until the process releases it."""
        i = self._next % len(self._processes)
        self._raise_if_failed()
        self.wait_for_room()
        with self._lock:
            if not self._held:
                self._owed_since = time.monotonic()
            image.hold()
            image._writer_index = i  # type: ignore[attr-defined]
            self._held[image.slot] = image
            self._sent[i] += 1
            self._next += 1
        try:
            self._processes[i].send(("image", image.slot, image.frame_number, image.n_missing_packets,
                                     image.receive_time))  # fmt: skip
        except WriterProcessError as error:
            with self._lock:
                if self._held.pop(image.slot, None) is not None:
                    image.drop()
                self._error = self._error or str(error)  # a process that died has said so by now
            raise WriterProcessError(self._error) from None

    def wait_for_room(self) -> None:
        """Block while the processes hold MAX_IN_FLIGHT images each (they write slower than images come)."""
        limit = MAX_IN_FLIGHT * len(self._processes)
        self._wait_for(lambda: len(self._held) < limit or self._error is not None, "writing")

    def drain(self, wait: bool = False, keep: int = 0) -> None:
        """Raise if a process failed; with ``wait``, until the processes hold at most ``keep`` images."""
        if wait:
            self._wait_for(lambda: len(self._held) <= keep or self._error is not None, "writing")
        self._raise_if_failed()

    def idle(self) -> None:
        """No image for a while (the processes record what they wrote on their own): raise a failure."""
        self.drain()

    def close(self, write_pending: bool = True, summary: dict | None = None) -> None:
        """Every process finishes (or, after a failure, drops) its images and closes its file; with
        several processes the master file is written last."""
        for i, process in enumerate(self._processes):
            if self._closed[i] is None:
                try:
                    process.send(("close", write_pending and self._error is None, summary))
                except WriterProcessError:
                    pass
        self._wait_for(lambda: all(self._closed), f"closing {self.target.output.path}", new_request=True)
        for process in self._processes:
            process.on_message = lambda message: None
        with self._lock:
            for image in self._held.values():
                image.drop()
            self._held.clear()
        self.compression = _summed([answer[3] for answer in self._closed if answer])
        self.summary_counts = _summed([answer[5] for answer in self._closed if answer and len(answer) > 5])
        if self.summary_counts:  # the master file records the whole acquisition's counts
            summary = {**(summary or {}), **self.summary_counts}
        reasons = [answer[4] for answer in self._closed if answer and answer[4]]
        if self._master is not None:
            self._master, master = None, self._master
            try:
                self._final = file_layout.write_writers_master(master, self.target, self._targets, summary)
            except LayoutError as error:
                raise WriterError(str(error)) from None
            finally:
                master.close_folder()
                master.close()
        if reasons and write_pending:
            raise WriterProcessError(reasons[0])

    # ---- waiting on the processes --------------------------------------------------------------
    def _raise_if_failed(self) -> None:
        """Raise the failure a process reported, or declare a hang: images held, nothing heard for the timeout."""
        with self._lock:
            if self._error is None and self._held and self._quiet() >= self._timeout_s:
                self._wait_for(lambda: not self._held, "writing")  # kills the processes, sets the error
        if self._error is not None:
            raise WriterProcessError(self._error)

    def _quiet(self) -> float:
        """Seconds the processes have owed us something (images, an answer) without a word."""
        return time.monotonic() - max(self._last_news, self._owed_since)

    def _wait_for(self, condition, doing: str, new_request: bool = False) -> None:
        """Wait until ``condition``; processes that owe us something (``new_request``: the answer to
        what was just sent) and send nothing for the timeout are hung: they are killed (their
        readers then report them gone) and the acquisition fails."""
        with self._lock:
            if new_request:
                self._owed_since = time.monotonic()
            while not condition():
                quiet = self._quiet()
                if quiet >= self._timeout_s:
                    self._error = self._error or (
                        f"the writer process sent nothing for {self._timeout_s:g} s while {doing}: it was stopped"
                    )
                    for process in self._processes:
                        process.kill()
                    self._lock.wait(5.0)  # its reader reports it gone and releases its images
                    if not condition():
                        self._abandon()
                    return
                self._lock.wait(min(0.5, self._timeout_s - quiet))

    def _abandon(self) -> None:
        """Processes that neither answer nor die: give every slot back and mark their parts closed."""
        for image in self._held.values():
            image.drop()
        self._held.clear()
        self._closed = [answer or ("closed", 0, None, {}, self._error) for answer in self._closed]


def _summed(counters: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for counter in counters:
        for key, value in (counter or {}).items():
            out[key] = out.get(key, 0) + value
    return out


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


__all__ = ["ProcessImageWriter"]
