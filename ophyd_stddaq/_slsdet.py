"""A controller for real sls Jungfrau/Eiger detectors over the ``slsdet`` Python package (optional)."""

from __future__ import annotations

import asyncio
from typing import Any

from ophyd_async.core import DetectorAcquireLogic

from ._async_logic import StdDaqDataLogic

IDLE_STATES = ("IDLE", "RUN_FINISHED", "STOPPED")
"""``slsdet.runStatus`` names of a detector that is not acquiring."""


def _sls_detector() -> Any:
    try:
        import slsdet
    except ImportError as error:
        raise ImportError(
            "SlsDetAcquireLogic needs the slsdet package: pip install slsdet (the version of the detector's "
            "firmware), or pass detector= an object with its Detector interface"
        ) from error
    return slsdet.Detector()


class SlsDetAcquireLogic(DetectorAcquireLogic):
    """Arms and starts an sls detector for the images the plan asks for; the DAQ receives its UDP stream.

    Each start sets ``frames`` to the images of this start (one per step-scan trigger, the prepared number
    for a fly scan), and ``exptime``/``period`` when ``prepare`` gave a livetime/deadtime, then calls
    ``startDetector()``. ``wait_for_idle`` polls ``status`` until the detector is idle; ``unstage``
    calls ``stopDetector()``.

    Parameters
    ----------
    detector:
        An ``slsdet.Detector`` (or an object with the same attributes); default: ``slsdet.Detector()``
        of this host's detector configuration.
    poll_interval:
        Seconds between two reads of the detector's status.
    """

    def __init__(self, detector: Any = None, poll_interval: float = 0.05) -> None:
        self.detector = _sls_detector() if detector is None else detector
        self.poll_interval = poll_interval
        self.data: StdDaqDataLogic | None = None

    def attach(self, data: StdDaqDataLogic) -> None:
        """Called by :class:`~ophyd_stddaq.StdDaqDetector`: the data logic whose plan says what to take."""
        self.data = data

    def _data(self) -> StdDaqDataLogic:
        if self.data is None:
            raise RuntimeError("SlsDetAcquireLogic is not part of a StdDaqDetector")
        return self.data

    def _arm_and_start(self, n_frames: int, livetime: float, deadtime: float) -> None:
        self.detector.frames = n_frames
        if livetime > 0:
            self.detector.exptime = livetime
            if deadtime > 0:
                self.detector.period = livetime + deadtime
        self.detector.startDetector()

    def _idle(self) -> bool:
        return str(getattr(self.detector.status, "name", self.detector.status)).split(".")[-1] in IDLE_STATES

    async def start_acquiring(self) -> None:
        data = self._data()
        data.raise_if_failed()
        plan = data.plan
        data.request_images(plan.images_per_start)
        await asyncio.to_thread(self._arm_and_start, plan.images_per_start, plan.livetime, plan.deadtime)

    async def wait_for_idle(self) -> None:
        while not await asyncio.to_thread(self._idle):
            await asyncio.sleep(self.poll_interval)
        await self._data().wait_closed_if_complete()

    async def ensure_stopped(self) -> None:
        await asyncio.to_thread(self.detector.stopDetector)
