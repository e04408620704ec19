"""The ophyd device's record of its acquisition, and its fly scans (kickoff, complete, collect)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
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


class FlyScanMixin:
    """Fly scans of :class:`~ophyd_stddaq.StdDaq`: one acquisition of ``n_images`` images, one event per image.

    The device provides the attributes declared here and the methods ``_start``, ``_current``, ``_watch``
    and ``_n_images_setting``.
    """

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

    def describe_collect(self) -> dict[str, dict[str, dict[str, Any]]]:
        """One stream (``fly_stream``) with the image data key."""
        return {self.fly_stream: self.image.describe_as(stream=False)}

    def _fly_batch(self, acquisition: DeviceAcquisition) -> list[tuple[str, float]]:
        """The images written since the last collect, each with its new Datum (made once per collect)."""
        if acquisition.fly_batch is None:
            found = self._daq_access.acquisition(acquisition.output_file)
            if found is None:
                raise StdDaqAcquisitionError(f"{self.name}: the DAQ no longer reports {acquisition.output_file}")
            n_written = int(found["stats"].get("n_write_completed") or 0)
            now = time.time()
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
