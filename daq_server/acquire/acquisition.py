"""The state of one acquisition, and its JSON (the ``acquisition`` object of the DAQ status).

States and messages: ``std_daq_client.acquisitions`` (the one vocabulary of server, coordinator and clients).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from daq_server.write.request import WriteRequest
from std_daq_client.acquisitions import AcquisitionState, Message

NO_INFO = {"n_images": None, "output_file": None, "run_id": None}


@dataclass
class Acquisition:
    """What the status reports about the current (or last) acquisition."""

    request: WriteRequest | None = None
    """The write request it runs for (None: no acquisition yet, or one found after a crash)."""
    recovered_info: dict | None = None
    """The ``info`` of an acquisition the server was running when it died (from its marker)."""
    message: str = Message.NO_ACQUISITION
    state: str = AcquisitionState.FINISHED
    n_write_completed: int = 0
    n_write_requested: int = 0
    start_time: float | None = None
    stop_time: float | None = None
    counters: dict | None = None
    """The receiver's counters of this acquisition, once it ended (``image_source.RECEIVER_COUNTERS``)."""
    image_ids: dict | None = None
    """First and last frame number taken for the file (the scale-out coordinator aligns parts by them)."""
    image_statistics: bool = False
    """The write request asked for image statistics: ``stats.last_image`` is reported."""
    last_image: dict | None = None
    """Index, image_id, n_missing_packets, sum and max of the last image written (image statistics)."""
    conversion: dict | None = None
    """A Jungfrau conversion's description (``info.conversion``: output, photon energy, pedestal, gain maps)."""
    stream: dict | None = None
    """What the Stream2 image stream did with the acquisition, once it ended (``acquire.image_stream``)."""
    images_without_results: int | None = None
    """Images that went without their per-image results (the DAQ behind), once it ended; None: no results."""

    @classmethod
    def started(cls, request: WriteRequest, conversion: dict | None = None) -> Acquisition:
        """A new acquisition for ``request``, waiting for images (converted as ``conversion`` describes)."""
        return cls(
            request=request,
            message=Message.WAITING,
            state=AcquisitionState.WAITING_IMAGES,
            start_time=time.time(),
            image_statistics=request.image_statistics,
            conversion=conversion,
        )

    @classmethod
    def interrupted_by_crash(cls, info: dict | None, note: str = "", n_written: int | None = None) -> Acquisition:
        """The acquisition the server was running when it stopped (found from its marker); ``note`` says
        what became of its file, ``n_written`` how many images the file records (read from it)."""
        return cls(
            n_write_completed=n_written or 0,
            recovered_info={**NO_INFO, **(info or {})},
            state=AcquisitionState.FAILED,
            message=f"{Message.ERROR_PREFIX}The server stopped during this acquisition; the file holds the images "
            f"written until then.{note} Call stop to reset the writer.",
        )

    @property
    def info(self) -> dict:
        """The ``info`` object of the status: what the request asked."""
        if self.request is not None:
            extra = {"conversion": dict(self.conversion)} if self.conversion is not None else {}
            return self.request.info() | extra
        return dict(self.recovered_info or NO_INFO)

    @property
    def active(self) -> bool:
        return self.state in AcquisitionState.ACTIVE

    @property
    def accepts_images(self) -> bool:
        """Still wants images: running, and fewer requested than asked for."""
        running = (AcquisitionState.WAITING_IMAGES, AcquisitionState.WRITING)
        return self.state in running and self.request is not None and self.n_write_requested < self.request.n_images

    @property
    def complete(self) -> bool:
        return self.request is not None and self.n_write_completed >= self.request.n_images

    def note_frame(self, frame_number: int) -> None:
        """An image with this frame number was taken for the file."""
        if self.image_ids is None:
            self.image_ids = {"first": frame_number}
        self.image_ids["last"] = frame_number

    def end(self, state: str, message: str) -> None:
        self.state, self.message, self.stop_time = state, message, time.time()

    def to_json(self) -> dict:
        """The status object of the seed README (a fresh copy), with counters and image ids when known, and
        ``stats.last_image`` (null before the first image) when the request asked for image statistics, or
        once an image with results (config ``results``) was written."""
        extra = {"counters": dict(self.counters)} if self.counters is not None else {}
        if self.image_ids is not None:
            extra["image_ids"] = dict(self.image_ids)
        if self.stream is not None:
            extra["stream"] = dict(self.stream)
            extra["stream_dropped"] = self.stream["images_dropped"]
        if self.images_without_results is not None:
            extra["images_without_results"] = self.images_without_results
        stats = {
            "n_write_completed": self.n_write_completed,
            "n_write_requested": self.n_write_requested,
            "start_time": self.start_time,
            "stop_time": self.stop_time,
        }
        if self.image_statistics or (self.last_image is not None and "results" in self.last_image):
            stats["last_image"] = None if self.last_image is None else dict(self.last_image)
        return extra | {"info": self.info, "message": self.message, "state": self.state, "stats": stats}
