"""The writer driver: the DAQ state machine, and the loop that takes images from the receiver.

Writer state: READY (a write request is accepted), WRITING (an acquisition runs), UNKNOWN
(the server stopped during an acquisition; ``stop`` resets it to READY).
Acquisition state: WAITING_IMAGES -> WRITING -> FLUSHING_IMAGES -> FINISHED, or FAILED.
A stop during an acquisition ends it FINISHED with the message "Interrupted." and a valid
file holding the images written so far.

One thread (the consumer) takes every assembled image from the ring buffer, counts it for
the stats, writes it when an acquisition wants it, and releases the slot. Images are never
copied in Python: the HDF5 library reads them straight from the ring buffer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from daq_server.acquisition_log import AcquisitionLog
from daq_server.receiver import ImageSource, ReceivedImage
from daq_server.stats import RECEIVER_COUNTERS
from daq_server.write_request import WriteRequest
from daq_server.writer import Hdf5Writer, WriteTarget, describe_error

_log = logging.getLogger("daq_server.writer_driver")

READY, WRITING, UNKNOWN = "READY", "WRITING", "UNKNOWN"
WAITING_IMAGES, ACQ_WRITING, FLUSHING_IMAGES = "WAITING_IMAGES", "WRITING", "FLUSHING_IMAGES"
FINISHED, FAILED = "FINISHED", "FAILED"
ACTIVE_STATES = (WAITING_IMAGES, ACQ_WRITING, FLUSHING_IMAGES)


class DriverError(RuntimeError):
    """A request the driver refuses in its current state (e.g. a write while WRITING)."""


def _empty_acquisition() -> dict:
    return {
        "info": {"n_images": None, "output_file": None, "run_id": None},
        "message": "No acquisition yet.",
        "state": FINISHED,
        "stats": {"n_write_completed": 0, "n_write_requested": 0, "start_time": None, "stop_time": None},
    }


class WriterDriver:
    """Owns the writer state, the current acquisition and the image consumer thread."""

    def __init__(
        self,
        state_dir: Path,
        log: AcquisitionLog,
        on_change: Callable[[dict], None] | None = None,
        on_image: Callable[[ReceivedImage], None] | None = None,
    ):
        self._lock = threading.RLock()
        self._ended = threading.Condition(self._lock)
        self._state = READY
        self._acquisition = _empty_acquisition()
        self._writer: Hdf5Writer | None = None
        self._log = log
        self._on_change = on_change or (lambda status: None)
        self._on_image = on_image or (lambda image: None)
        self._marker = state_dir / "acquisition_in_progress.json"
        self._receiver: ImageSource | None = None
        self._counters_at_start: dict[str, int] | None = None  # receiver counters when the acquisition began
        self._consumer: threading.Thread | None = None
        self._consume = threading.Event()
        self._gate: int | None = None  # gated acquisition: images the triggers still ask for
        self._gate_since = 0.0  # ... taken (first packet) at or after this time
        # counters for the stats (the receiver's own counters restart with each receiver)
        self.detector_images = 0
        self.writer_images = 0
        self.writer_bytes = 0
        self._recover_after_crash()

    # ---- status -------------------------------------------------------------------------
    def status(self) -> dict:
        """The DAQ status object of the seed README (a running acquisition's message says when the
        receiver dropped images for want of a free ring slot)."""
        with self._lock:
            acquisition = json.loads(json.dumps(self._acquisition))
            if acquisition["state"] in ACTIVE_STATES and self._counters_at_start is not None:
                dropped = self._acquisition_counters().get("images_dropped", 0)
                if dropped:
                    acquisition["message"] += (
                        f" {dropped} images dropped so far: the writer fell behind the detector (no free ring slot)."
                    )
            return {"acquisition": acquisition, "state": self._state}

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
            info = {"n_images": None, "output_file": None, "run_id": None}
        self._state = UNKNOWN
        self._acquisition = _empty_acquisition()
        self._acquisition.update(
            {
                "info": info,
                "state": FAILED,
                "message": "ERROR: The server stopped during this acquisition; the file holds the images "
                "written until then. Call stop to reset the writer.",
            }
        )

    # ---- receiver attachment --------------------------------------------------------------
    def attach(self, receiver: ImageSource) -> None:
        """Start consuming images from ``receiver``."""
        self.detach()
        self._receiver = receiver
        self._consume.set()
        self._consumer = threading.Thread(target=self._consume_loop, args=(receiver,), name="image-consumer")
        self._consumer.start()

    def detach(self) -> None:
        """Stop consuming (before the receiver is stopped or replaced)."""
        self._consume.clear()
        if self._consumer is not None:
            self._consumer.join()
            self._consumer = None
        self._receiver = None

    def _consume_loop(self, receiver: ImageSource) -> None:
        while self._consume.is_set():
            image = receiver.next_image(timeout=0.1)
            if image is None:
                continue
            try:
                self.detector_images += 1
                self._on_image(image)
                self._handle_image(image)
            finally:
                receiver.release(image)

    def _handle_image(self, image: ReceivedImage) -> None:
        with self._lock:
            acquisition = self._acquisition
            if self._writer is None or acquisition["state"] not in (WAITING_IMAGES, ACQ_WRITING):
                return
            if image.receive_time < acquisition["stats"]["start_time"]:
                return  # assembled before the request: not part of this acquisition
            if self._gate is not None:
                if self._gate <= 0 or image.receive_time < self._gate_since:
                    return  # gated: only the images a trigger asked for, taken after it
                self._gate -= 1
            stats = acquisition["stats"]
            stats["n_write_requested"] += 1
            if acquisition["state"] == WAITING_IMAGES:
                acquisition["state"] = ACQ_WRITING
                self._changed()
            try:
                self._writer.write(image.data, image.frame_number, image.n_missing_packets, image.receive_time)
            except Exception as error:  # disk full, I/O error: fail the acquisition, keep the file
                _log.error("writing %s failed: %s", acquisition["info"]["output_file"], error)
                self._end(FAILED, f"ERROR: Writing the image failed: {describe_error(error)}")
                return
            stats["n_write_completed"] = self._writer.n_written
            ids = acquisition.setdefault("image_ids", {"first": image.frame_number})  # scale-out: parts are
            ids["last"] = image.frame_number  # aligned by frame number (daq_server/coordinator)
            self.writer_images += 1
            self.writer_bytes += image.data.nbytes
            if self._writer.n_written >= acquisition["info"]["n_images"]:
                self._end(FINISHED, "Completed.")

    # ---- requests ---------------------------------------------------------------------------
    def start(self, request: WriteRequest, config: dict, compression: str) -> dict:
        """Accept a write request in state READY: create the file and wait for images."""
        with self._lock:
            if self._state != READY:
                raise DriverError(
                    f"The writer is {self._state}; a new acquisition starts only when it is READY "
                    "(wait for the current one to finish or call stop)."
                )
            if self._receiver is None:
                raise DriverError("The receiver is not running; check the config.")
            target = WriteTarget(
                output_file=request.output_file,
                n_images=request.n_images,
                run_id=request.run_id,
                shape=self._receiver.shape,
                dtype=self._receiver.dtype,
                config=config,
                compression=compression,
                user_id=int(config.get("writer_user_id", 0)),
                data_root=request.data_root,
                nexus=request.nexus,
            )
            try:  # the marker first: a full or read-only state folder refuses before a file exists
                self._marker.write_text(json.dumps(request.info()))
            except OSError as error:
                self._remove_marker()
                raise DriverError(f"Cannot record the acquisition in the state folder: {error.strerror}") from None
            self._gate = 0 if request.gated else None
            try:
                self._writer = Hdf5Writer(target)
            except (OSError, ValueError, MemoryError) as error:
                self._remove_marker()
                raise DriverError(f"Cannot create {request.output_file}: {error}") from None
            self._counters_at_start = self._receiver.counters()
            self._state = WRITING
            self._acquisition = {
                "info": request.info(),
                "message": "Waiting for images.",
                "state": WAITING_IMAGES,
                "stats": {
                    "n_write_completed": 0,
                    "n_write_requested": 0,
                    "start_time": time.time(),
                    "stop_time": None,
                },
            }
            self._changed()
            return self.status()

    def _remove_marker(self) -> None:
        """The marker goes; a state folder that refuses is logged, never fails the request."""
        try:
            self._marker.unlink(missing_ok=True)
        except OSError as error:
            _log.error("cannot remove the marker %s: %s", self._marker, error)

    def open_gate(self, n_images: int) -> dict:
        """Software trigger of a gated acquisition: write the next ``n_images`` images taken from now on."""
        with self._lock:
            if self._state != WRITING or self._gate is None or self._acquisition["state"] not in ACTIVE_STATES:
                raise DriverError('No gated acquisition is running (start one with "gated": true).')
            if self._gate <= 0:
                self._gate_since = time.time()
            self._gate += n_images
            return self.status()

    def stop(self) -> dict:
        """Always allowed: interrupt a running acquisition, reset UNKNOWN to READY."""
        with self._lock:
            if self._state == WRITING and self._acquisition["state"] in ACTIVE_STATES:
                self._end(FINISHED, "Interrupted.")
            elif self._state != READY:
                self._state = READY
                self._remove_marker()
                self._changed()
            return self.status()

    def wait_until_ended(self, timeout: float | None = None) -> dict:
        """Block until the writer is not WRITING any more (for write_sync)."""
        with self._lock:
            self._ended.wait_for(lambda: self._state != WRITING, timeout)
            return self.status()

    def _end(self, state: str, message: str) -> None:
        """Close the file, record the acquisition, back to READY. Caller holds the lock."""
        acquisition = self._acquisition
        acquisition["state"] = FLUSHING_IMAGES
        self._changed()
        acquisition["counters"] = self._acquisition_counters()
        self._counters_at_start = None
        try:
            if self._writer is not None:
                self._writer.close(summary=acquisition["counters"])
        except Exception as error:  # the file may be damaged (e.g. disk full on close)
            _log.error("closing %s failed: %s", acquisition["info"]["output_file"], error)
            if state != FAILED:
                state, message = FAILED, f"ERROR: Closing the file failed: {describe_error(error)}"
        self._writer = None
        acquisition["state"] = state
        acquisition["message"] = message
        acquisition["stats"]["stop_time"] = time.time()
        self._state = READY
        self._remove_marker()
        self._log.append(json.loads(json.dumps(acquisition)))
        self._changed()

    def close(self) -> None:
        """Server shutdown: end a running acquisition as interrupted, stop consuming."""
        with self._lock:
            if self._state == WRITING:
                self._end(FINISHED, "Interrupted.")
        self.detach()
