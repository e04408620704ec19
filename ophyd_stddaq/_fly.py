"""The ophyd device's record of its acquisition, and its fly scans (kickoff, complete, collect)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ophyd.device import Staged
from ophyd.status import DeviceStatus, StatusBase

from ._documents import ImageAssets, StreamImageAssets
from ._errors import StdDaqAcquisitionError
from ._status import AcquisitionStatus

if TYPE_CHECKING:
    from ._access import DaqAccess
    from ._signals import ImageReferenceSignal

_log = logging.getLogger("ophyd_stddaq")


@dataclass
class DeviceAcquisition:
    """What the device knows about the acquisition it started."""

    output_file: str
    n_images: int
    assets: ImageAssets | StreamImageAssets
    kicked_off: bool = False
    n_triggers: int = 0
    n_collected: int = 0
    fly_batch: list[tuple[str, float]] | None = None
    stop_sent: bool = False
    gated: bool = False
    completing: bool = False
    """``complete`` was called (a fly scan)."""
    stream: bool | None = None
    """A fly scan's documents: StreamResource/StreamDatum (True), Resource/Datum (False); decided at its first
    collect."""


class FlyScanMixin:
    """Fly scans of :class:`~ophyd_stddaq.StdDaq`: one acquisition of ``n_images`` images, one event per image.

    A plan that declares the device's stream before ``complete`` (``bps.declare_stream(det,
    name="primary", collect=True)``, then ``bps.collect(det, name="primary")``) gets StreamResource/StreamDatum
    documents, which tiled's default ``TiledWriter`` stores (with ``asset_documents="stream"``, the default).
    Plans that declare nothing, such as ``bluesky.plans.fly``, get one event per image with a Datum id
    (bluesky takes StreamDatum documents only into a declared stream); so do all fly scans with
    ``asset_documents="resource"``.

    The device provides the attributes declared here and the methods ``_start``, ``_current``, ``_watch``,
    ``_stream_assets`` and ``_n_images_setting``.
    """

    _declared_stream: bool = False
    _stream_assets: Callable[[str], StreamImageAssets]

    name: str
    image: ImageReferenceSignal
    trigger_mode: str
    fly_stream: str
    unreachable_timeout: float
    wait_timeout: float | None
    _daq_access: DaqAccess
    _acquisition: DeviceAcquisition | None
    _staged: Staged

    def kickoff(self) -> StatusBase:
        """Start an acquisition of ``n_images`` images, or adopt the one ``stage`` just started.

        The returned Status is finished: the DAQ has accepted the request (errors raise at once).
        """
        acquisition = self._acquisition
        adopt = (
            self._staged == Staged.yes
            and acquisition is not None
            and not acquisition.kicked_off
            and acquisition.n_triggers == 0
            and not acquisition.stop_sent
        )
        if adopt:
            self._n_images_setting(fly=True)  # a fly scan needs its number of images
            acquisition.assets = ImageAssets(acquisition.output_file)  # nothing was referenced yet
            acquisition.stream = None
        else:
            self._acquisition = acquisition = self._start(fly=True)
        if self.trigger_mode == "simulator":  # the frames are sent while the plan goes on; complete waits
            threading.Thread(target=self._send_frames, args=(acquisition.n_images,), daemon=True).start()
        acquisition.kicked_off = True
        status = DeviceStatus(self)
        status.set_finished()
        return status

    def _send_frames(self, n_images: int) -> None:
        try:
            self._daq_access.software_trigger(n_images)
        except Exception as error:  # complete() then fails on the images that never came (wait_timeout)
            _log.error("%s: the software trigger of %d frames failed: %s", self.name, n_images, error)

    def complete(self) -> StatusBase:
        """Finishes when the acquisition is FINISHED with all ``n_images`` images (file closed).

        Fails with :class:`~ophyd_stddaq.StdDaqAcquisitionError` carrying the DAQ's message if it ends
        FAILED, or ends FINISHED with fewer images ("Interrupted." by a stop from anywhere): the plan
        asked for ``n_images`` and did not get them. Watchers see the images written (progress bar).
        """
        acquisition = self._current("complete")
        acquisition.completing = True
        return self._watch(
            AcquisitionStatus(
                self,
                acquisition.output_file,
                target=acquisition.n_images,
                n_images=acquisition.n_images,
                until_end=True,
                unreachable_timeout=self.unreachable_timeout,
                timeout=self.wait_timeout,
            )
        )

    def describe_collect(self) -> dict[str, Any]:
        """The image data key. Asked before ``complete`` (a plan declaring the stream): a StreamResource key,
        flat (``{key: data key}``); asked by ``collect`` itself (a plan that declares nothing): a Datum key
        in one stream, ``{fly_stream: {key: data key}}``."""
        acquisition = self._acquisition
        completing = acquisition is not None and acquisition.kicked_off and acquisition.completing
        self._declared_stream = self.image.stream and not completing
        if self._declared_stream:
            return self.image.describe_as(stream=True)
        return {self.fly_stream: self.image.describe_as(stream=False)}

    def _fly_documents(self, acquisition: DeviceAcquisition) -> None:
        """Choose the fly scan's documents at its first collect (nothing was referenced before)."""
        if acquisition.stream is None:
            acquisition.stream = self._declared_stream
            if acquisition.stream:
                acquisition.assets = self._stream_assets(acquisition.output_file)

    def _fly_batch(self, acquisition: DeviceAcquisition) -> list[tuple[str, float]]:
        """The images written since the last collect, each with its new Datum (made once per collect)."""
        if acquisition.fly_batch is None:
            found = self._daq_access.acquisition(acquisition.output_file)
            if found is None:
                raise StdDaqAcquisitionError(f"{self.name}: the DAQ no longer reports {acquisition.output_file}")
            n_written = int(found["stats"].get("n_write_completed") or 0)
            now = time.time()
            self._fly_documents(acquisition)
            if isinstance(acquisition.assets, StreamImageAssets):  # one StreamDatum for the batch, no events
                if n_written > acquisition.n_collected:
                    acquisition.assets.datum(acquisition.n_collected, n_written)
                acquisition.fly_batch = []
            else:
                acquisition.fly_batch = [
                    (acquisition.assets.datum(index), now) for index in range(acquisition.n_collected, n_written)
                ]
            acquisition.n_collected = max(acquisition.n_collected, n_written)
        return acquisition.fly_batch

    def collect(self) -> Iterator[dict[str, Any]]:
        """One event per image written since the last collect; ``time`` is when the DAQ reported them."""
        acquisition = self._current("collect")
        if not acquisition.kicked_off:
            return
        batch = self._fly_batch(acquisition)
        acquisition.fly_batch = None
        key = self.image.name
        for datum_id, timestamp in batch:
            yield {
                "time": timestamp,
                "data": {key: datum_id},
                "timestamps": {key: timestamp},
                "filled": {key: False},
            }

    def collect_asset_docs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """The Resource (once per file) and Datum documents the next read or collect refers to."""
        acquisition = self._acquisition
        if acquisition is None:
            return
        if acquisition.kicked_off:
            self._fly_batch(acquisition)
        yield from acquisition.assets.pop_pending()
