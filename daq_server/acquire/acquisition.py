"""The state of one acquisition, and its JSON (the ``acquisition`` object of the DAQ status).

States: WAITING_IMAGES -> WRITING -> FLUSHING_IMAGES -> FINISHED, or FAILED.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

WAITING_IMAGES, ACQ_WRITING, FLUSHING_IMAGES = "WAITING_IMAGES", "WRITING", "FLUSHING_IMAGES"
FINISHED, FAILED = "FINISHED", "FAILED"
ACTIVE_STATES = (WAITING_IMAGES, ACQ_WRITING, FLUSHING_IMAGES)


def _no_info() -> dict:
    return {"n_images": None, "output_file": None, "run_id": None}


@dataclass
class Acquisition:
    """What the status reports about the current (or last) acquisition."""

    info: dict = field(default_factory=_no_info)
    message: str = "No acquisition yet."
    state: str = FINISHED
    n_write_completed: int = 0
    n_write_requested: int = 0
    start_time: float | None = None
    stop_time: float | None = None
    counters: dict | None = None
    """The receiver's counters of this acquisition, once it ended (daq_server.serve.stats.RECEIVER_COUNTERS)."""
    image_ids: dict | None = None
    """First and last frame number taken for the file (the scale-out coordinator aligns parts by them)."""
    image_statistics: bool = False
    """The write request asked for image statistics: ``stats.last_image`` is reported."""
    last_image: dict | None = None
    """Index, image_id, n_missing_packets, sum and max of the last image written (image statistics)."""

    @classmethod
    def started(cls, info: dict, image_statistics: bool = False) -> Acquisition:
        """A new acquisition for a write request's ``info``, waiting for images."""
        return cls(
            info=dict(info),
            message="Waiting for images.",
            state=WAITING_IMAGES,
            start_time=time.time(),
            image_statistics=image_statistics,
        )

    @classmethod
    def interrupted_by_crash(cls, info: dict | None, note: str = "") -> Acquisition:
        """The acquisition the server was running when it stopped (found from its marker); ``note`` says
        what became of its file."""
        return cls(
            info=info or _no_info(),
            state=FAILED,
            message="ERROR: The server stopped during this acquisition; the file holds the images "
            f"written until then.{note} Call stop to reset the writer.",
        )

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def accepts_images(self) -> bool:
        """Still wants images: running, and fewer requested than asked for."""
        wanted = self.info.get("n_images")
        return self.state in (WAITING_IMAGES, ACQ_WRITING) and (wanted is None or self.n_write_requested < wanted)

    @property
    def complete(self) -> bool:
        wanted = self.info.get("n_images")
        return wanted is not None and self.n_write_completed >= wanted

    def note_frame(self, frame_number: int) -> None:
        """An image with this frame number was taken for the file."""
        if self.image_ids is None:
            self.image_ids = {"first": frame_number}
        self.image_ids["last"] = frame_number

    def end(self, state: str, message: str) -> None:
        self.state, self.message, self.stop_time = state, message, time.time()

    def to_json(self) -> dict:
        """The status object of the seed README (a fresh copy), with counters and image ids when known, and
        ``stats.last_image`` (null before the first image) when the request asked for image statistics."""
        extra = {"counters": dict(self.counters)} if self.counters is not None else {}
        if self.image_ids is not None:
            extra["image_ids"] = dict(self.image_ids)
        stats = {
            "n_write_completed": self.n_write_completed,
            "n_write_requested": self.n_write_requested,
            "start_time": self.start_time,
            "stop_time": self.stop_time,
        }
        if self.image_statistics:
            stats["last_image"] = None if self.last_image is None else dict(self.last_image)
        return extra | {"info": dict(self.info), "message": self.message, "state": self.state, "stats": stats}
