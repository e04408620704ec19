"""The writer driver: the DAQ state machine, and the loop that takes images from the receiver.

Writer and acquisition states and their messages are those of ``std_daq_client.acquisitions``. A stop
during an acquisition ends it FINISHED with the message "Interrupted." and a valid file holding the
images written so far.

The image consumer (``daq_server.acquire.image_consumer``) offers every assembled image to three sinks:
the stats counter, the live preview and this driver, the acquisition writer, which writes the
images an acquisition wants through an ``ImageWriter`` (straight, or compressed by the native
pool). Images are never copied in Python: the HDF5 library and the compressing threads read them
straight from the ring buffer. The acquisition's own state and JSON are ``daq_server.acquire.acquisition``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from daq_server.acquire.acquisition import Acquisition
from daq_server.acquire.acquisition_log import AcquisitionLog
from daq_server.acquire.image_consumer import CallbackSink, ImageConsumer, ImageCounter
from daq_server.acquire.image_stream import ImageStream
from daq_server.acquire.process_image_writer import ProcessImageWriter
from daq_server.acquire.writer_pool import WriterPool
from daq_server.config import DaqConfig
from daq_server.pipeline.compression import default_threads
from daq_server.pipeline.jungfrau_conversion import ConversionSpec
from daq_server.receive.image_source import RECEIVER_COUNTERS, ImageSource, ReceivedImage
from daq_server.write.crash_recovery import release_crashed_file
from daq_server.write.hdf5_writer import describe_error
from daq_server.write.image_writer import ImageWriter, open_writer
from daq_server.write.request import WriteRequest, WriteTarget
from std_daq_client.acquisitions import AcquisitionState, Message, WriterState

_log = logging.getLogger("daq_server.acquire.writer_driver")

READY, WRITING, UNKNOWN = WriterState.READY, WriterState.WRITING, WriterState.UNKNOWN
FINISHED, FAILED = AcquisitionState.FINISHED, AcquisitionState.FAILED
__all__ = ["DriverError", "WriterDriver"]


class DriverError(RuntimeError):
    """A request the driver refuses in its current state (e.g. a write while WRITING)."""


class WriterDriver:
    """Owns the writer state and the current acquisition; the acquisition writer among the image sinks."""

    def __init__(
        self,
        state_dir: Path,
        log: AcquisitionLog,
        on_change: Callable[[dict], None] | None = None,
        on_image: Callable[[ReceivedImage], None] | None = None,
        compression: str = "none",
        compression_threads: int = 0,
        writer_pool: WriterPool | None = None,
        on_end: Callable[[Acquisition], None] | None = None,
        image_stream: ImageStream | None = None,
    ):
        """``on_end(acquisition)`` runs when an acquisition ended, its file closed, before it is logged
        (it may add to the acquisition's message, e.g. that its pedestal is now in use). With ``image_stream``
        every image written also goes out on the Stream2 image stream. ``compression``: the files' (and the
        stream's) compression, in the status too."""
        self._lock = threading.RLock()
        self._ended = threading.Condition(self._lock)
        self._state = READY
        self._acquisition = Acquisition()
        self._writer: ImageWriter | None = None
        self._log = log
        self._on_change = on_change or (lambda status: None)
        self._on_end = on_end or (lambda acquisition: None)
        self._counter = ImageCounter()
        self._sinks = [self._counter, CallbackSink(on_image or (lambda image: None)), self]
        self._compression = compression
        self._compression_threads = compression_threads
        self._pool = writer_pool  # writer processes; None or a source without shared memory: this process writes
        self._marker = state_dir / "acquisition_in_progress.json"
        self._receiver: ImageSource | None = None
        self._consumer: ImageConsumer | None = None
        self._counters_at_start: dict[str, int] | None = None  # receiver counters when the acquisition began
        self._gate: int | None = None  # gated acquisition: images the triggers still ask for
        self._gate_since = 0.0  # ... taken (first packet) at or after this time
        self._stream = image_stream
        self._stream_spec = None  # the running acquisition's series on the image stream
        # counters for the stats (the receiver's own counters restart with each receiver)
        self.writer_images = 0
        self.writer_bytes = 0
        self._recover_after_crash()

    @property
    def writer_pool(self) -> WriterPool | None:
        return self._pool

    @property
    def detector_images(self) -> int:
        """Images the consumer took from the receiver(s) since the server started."""
        return self._counter.images

    # ---- status -------------------------------------------------------------------------
    def status(self) -> dict:
        """The DAQ status object of the seed README, with the files' ``compression``."""
        with self._lock:
            acquisition = self._acquisition.to_json()
            if self._acquisition.active and self._stream_spec is not None:
                acquisition["stream_dropped"] = self._stream.dropped_so_far(self._stream_spec)
            if self._acquisition.active and self._counters_at_start is not None:
                dropped = self._acquisition_counters().get("images_dropped", 0)
                if dropped:
                    acquisition["message"] += (
                        f" {dropped} images dropped so far: the writer fell behind the detector (no free ring slot)."
                    )
                backwards = self._frames_backwards()
                if backwards:
                    acquisition["message"] += (
                        f" {backwards} module frames came with frame numbers going backwards and were dropped as late:"
                        " the detector's frame numbers must count up."
                    )
            return {"acquisition": acquisition, "state": self._state, "compression": self._compression}

    def _frames_backwards(self) -> int:
        """Module frames whose numbers went backwards since this acquisition started (the C receiver's own
        counter, not one of the published RECEIVER_COUNTERS)."""
        if self._receiver is None or self._counters_at_start is None:
            return 0
        return int(self._receiver.counters().get("frames_backwards", 0)) - self._counters_at_start.get(
            "frames_backwards", 0
        )

    def _acquisition_counters(self) -> dict[str, int]:
        """The receiver's counters since this acquisition started."""
        if self._receiver is None or self._counters_at_start is None:
            return {}
        now = self._receiver.counters()
        return {key: int(now.get(key, 0)) - self._counters_at_start.get(key, 0) for key in RECEIVER_COUNTERS}

    @property
    def state(self) -> str:
        return self._state

    def _changed(self) -> None:
        self._ended.notify_all()
        self._on_change(self.status())

    # ---- crash recovery -------------------------------------------------------------------
    def _recover_after_crash(self) -> None:
        """A marker left by a running acquisition means the server died during it."""
        if not self._marker.exists():
            return
        try:
            info = json.loads(self._marker.read_text())
        except (OSError, json.JSONDecodeError):
            info = None
        self._state = UNKNOWN
        recovered = release_crashed_file((info or {}).get("output_file") if isinstance(info, dict) else None)
        self._acquisition = Acquisition.interrupted_by_crash(info, recovered.note, recovered.n_images)

    # ---- receiver attachment --------------------------------------------------------------
    def attach(self, receiver: ImageSource) -> None:
        """Start consuming images from ``receiver``."""
        self.detach()
        self._receiver = receiver
        ring_name = getattr(receiver, "shared_memory_name", "")
        if self._pool is not None and ring_name:
            self._pool.attach_ring(ring_name, receiver.n_slots, receiver.slot_bytes, receiver.shape, receiver.dtype)
        self._consumer = ImageConsumer(receiver, self._sinks)

    def detach(self) -> None:
        """Stop consuming (before the receiver is stopped or replaced)."""
        if self._consumer is not None:
            self._consumer.stop()
            self._consumer = None
        with self._lock:  # images in flight are written (and go back) before the receiver goes
            if self._writer is not None:
                try:
                    self._writer.drain(wait=True)
                    self._progress()
                except Exception as error:
                    self._write_failed(error)
        self._receiver = None

    # ---- the acquisition writer sink -------------------------------------------------------
    def offer(self, image: ReceivedImage) -> None:
        """Every image from the consumer: written when the running acquisition wants it."""
        writer = self._writer
        if isinstance(writer, ProcessImageWriter):
            writer.wait_for_room()  # without the lock: status and stop answer while the processes catch up
        with self._lock:
            acquisition = self._acquisition
            if self._writer is None:
                return
            if not acquisition.accepts_images or image.receive_time < acquisition.start_time:
                self._write_finished()  # not for this acquisition (or too early): only catch up
                return
            if self._gate is not None:
                if self._gate <= 0 or image.receive_time < self._gate_since:
                    self._write_finished()  # gated: only the images a trigger asked for, taken after it
                    return
                self._gate -= 1
            acquisition.n_write_requested += 1
            acquisition.note_frame(image.frame_number)
            if acquisition.state == AcquisitionState.WAITING_IMAGES:
                acquisition.state = AcquisitionState.WRITING
                self._changed()
            try:
                self._writer.put(image)
            except Exception as error:  # disk full, I/O error: fail the acquisition, keep the file
                self._write_failed(error)
                return
            self._progress()

    def idle(self) -> None:
        """No image for a while: write what the compressing threads finished, and record it in the file."""
        with self._lock:
            if self._writer is not None:
                self._write_finished(idle=True)

    def _write_finished(self, idle: bool = False) -> None:
        """Write the images the compressing threads finished. Caller holds the lock."""
        if self._acquisition.state != AcquisitionState.WRITING:
            return
        try:
            self._writer.idle() if idle else self._writer.drain()
        except Exception as error:
            self._write_failed(error)
            return
        self._progress()

    def _take_progress(self, writer: ImageWriter, acquisition: Acquisition) -> None:
        """The images ``writer`` wrote since the last look go into ``acquisition`` and the writer's totals."""
        new = writer.n_written - acquisition.n_write_completed
        acquisition.n_write_completed = writer.n_written
        acquisition.last_image = writer.last_image
        self.writer_images += new
        self.writer_bytes += new * writer.target.image_bytes

    def _progress(self) -> None:
        self._take_progress(self._writer, self._acquisition)
        if self._acquisition.complete:
            self._end(FINISHED, Message.COMPLETED)

    def _write_failed(self, error: Exception) -> None:
        _log.error("writing %s failed: %s", self._acquisition.info["output_file"], error)
        self._end(FAILED, f"{Message.ERROR_PREFIX}Writing the image failed: {describe_error(error)}")

    # ---- requests ---------------------------------------------------------------------------
    def start(self, request: WriteRequest, config: DaqConfig, conversion: ConversionSpec | None = None) -> dict:
        """Accept a write request in state READY: create the file and wait for images (converted when
        ``conversion`` is given; a pedestal file for a pedestal request)."""
        with self._lock:
            if self._state != READY:
                raise DriverError(
                    f"The writer is {self._state}; a new acquisition starts only when it is READY "
                    "(wait for the current one to finish or call stop)."
                )
            if self._receiver is None:
                raise DriverError("The receiver is not running; check the config.")
            shape = tuple(self._receiver.shape)
            dtype = str(conversion.dtype if conversion is not None else self._receiver.dtype)
            spec = None
            if self._stream is not None and not request.pedestal:  # its start message goes before any image
                spec = self._stream.begin(request, config, shape, dtype, self._compression)
            target = WriteTarget(request, config, shape, dtype, self._compression, conversion=conversion, stream=spec)
            try:  # the marker first: a full or read-only state folder refuses before a file exists
                self._marker.write_text(json.dumps(request.info()))
            except OSError as error:
                self._remove_marker()
                self._end_stream(spec, {})
                raise DriverError(f"Cannot record the acquisition in the state folder: {error.strerror}") from None
            try:
                self._writer = self._open_writer(target)
            except (OSError, ValueError, RuntimeError, MemoryError) as error:
                self._remove_marker()
                self._end_stream(spec, {})
                raise DriverError(f"Cannot create {request.output_file}: {error}") from None
            self._stream_spec = spec
            self._gate = 0 if request.gated else None
            self._counters_at_start = self._receiver.counters()
            self._state = WRITING
            self._acquisition = Acquisition.started(request, conversion.describe() if conversion is not None else None)
            self._changed()
            return self.status()

    def _open_writer(self, target: WriteTarget) -> ImageWriter | ProcessImageWriter:
        """The writer processes when the receiver's ring buffer is shared memory, else this process."""
        if self._pool is not None and getattr(self._receiver, "shared_memory_name", ""):
            return ProcessImageWriter(target, self._pool, self._compression_threads_now())
        return open_writer(target, self._compression_threads_now())

    def _compression_threads_now(self) -> int:
        """The option, else the default for this receiver (every CPU when its threads are real-time)."""
        return self._compression_threads or default_threads(bool(getattr(self._receiver, "realtime", False)))

    def stop(self, n_images: int | None = None) -> dict:
        """Always allowed: interrupt a running acquisition, reset UNKNOWN to READY.

        ``n_images``: the plan that ran the acquisition ended after this many images (an open-ended step
        scan). Once the file holds exactly them, the acquisition is "Completed." and its ``n_images`` is
        ``n_images``; with fewer it is "Interrupted." as without.
        """
        with self._lock:
            if self._state == WRITING and self._acquisition.active:
                self._end(FINISHED, Message.INTERRUPTED, planned=n_images)
            elif self._state != READY:
                self._state = READY
                self._remove_marker()
                self._changed()
            return self.status()

    def open_gate(self, n_images: int) -> dict:
        """Software trigger of a gated acquisition: write the next ``n_images`` images taken from now on."""
        with self._lock:
            if self._state != WRITING or self._gate is None or not self._acquisition.active:
                raise DriverError('No gated acquisition is running (start one with "gated": true).')
            if self._gate <= 0:
                self._gate_since = time.time()
            self._gate += n_images
            return self.status()

    def _remove_marker(self) -> None:
        """The marker goes; a state folder that refuses is logged, never fails the request."""
        try:
            self._marker.unlink(missing_ok=True)
        except OSError as error:
            _log.error("cannot remove the marker %s: %s", self._marker, error)

    def wait_until_ended(self, timeout: float | None = None) -> dict:
        """Block until the writer is not WRITING any more (for write_sync)."""
        with self._lock:
            self._ended.wait_for(lambda: self._state != WRITING, timeout)
            return self.status()

    def _end(self, state: str, message: str, planned: int | None = None) -> None:
        """Write what is in flight, close the file, record the acquisition, back to READY. Caller holds the lock.

        ``planned``: the number of images the plan ended with (``stop``); met exactly, the acquisition is complete.
        """
        acquisition = self._acquisition
        acquisition.state = AcquisitionState.FLUSHING_IMAGES
        self._changed()
        writer, self._writer = self._writer, None
        acquisition.counters = self._acquisition_counters()
        self._counters_at_start = None
        try:
            if writer is not None:
                writer.close(write_pending=state != FAILED, summary=acquisition.counters)
        except Exception as error:  # the file may be damaged (e.g. disk full on close)
            _log.error("closing %s failed: %s", acquisition.info["output_file"], error)
            if state != FAILED:
                state, message = FAILED, f"{Message.ERROR_PREFIX}Closing the file failed: {describe_error(error)}"
        if writer is not None:
            self._take_progress(writer, acquisition)
        if planned is not None and state == FINISHED and acquisition.n_write_completed == planned:
            acquisition.request = dataclasses.replace(acquisition.request, n_images=planned)
            message = Message.COMPLETED
        spec, self._stream_spec = self._stream_spec, None
        counts = getattr(writer, "summary_counts", {})
        acquisition.stream = self._end_stream(spec, counts)
        acquisition.images_without_results = counts.get("images_without_results")
        acquisition.end(state, message)
        try:
            self._on_end(acquisition)
        except Exception:  # noqa: BLE001 - the acquisition is over whatever the hook does
            _log.exception("the end of %s could not be handled", acquisition.info.get("output_file"))
        self._state = READY
        self._remove_marker()
        self._log.append(acquisition.to_json())
        self._changed()

    def _end_stream(self, spec, counts: dict[str, int]) -> dict | None:
        """The series' end message (after every image the writers sent); the stream's record, None without."""
        return self._stream.end(spec, counts) if spec is not None else None

    def close(self) -> None:
        """Server shutdown: end a running acquisition as interrupted (its counters taken while the
        receiver is still attached), stop consuming."""
        with self._lock:
            if self._state == WRITING:
                self._end(FINISHED, Message.INTERRUPTED)
        self.detach()
        if self._pool is not None:
            self._pool.close()
