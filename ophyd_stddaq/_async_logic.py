"""The parts of the ophyd-async detector: the DAQ as data writer, trigger/arm controllers, readings.

Every call to the DAQ goes through :class:`~ophyd_stddaq.DaqAccess` (``std_daq_client`` and plain HTTP),
run in a worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np
from event_model import DataKey
from ophyd_async.core import (
    DetectorAcquireLogic,
    DetectorDataLogic,
    DetectorTriggerLogic,
    PathProvider,
    StreamableDataProvider,
    StreamResourceDataProvider,
    StreamResourceInfo,
    TriggerInfo,
    soft_signal_r_and_setter,
)

from std_daq_client.acquisitions import AcquisitionLost, AcquisitionView, follow_acquisition_async

from ._access import OPEN_ENDED_IMAGES, DaqAccess
from ._documents import IMAGE_DATASET
from ._errors import StdDaqAcquisitionError
from ._results import ResultKeys
from ._run_identity import RUN_METADATA, RunFollower, run_request_fields
from ._signals import image_dtype
from ._statistics import REQUEST_FIELD

_log = logging.getLogger("ophyd_stddaq")

METADATA_DATASETS = {"frame_number": "/entry/data/image_id", "missing_packets": "/entry/data/n_missing_packets"}
"""Per-image scalars of the file streamed beside the images (data key suffix -> dataset)."""


def folders_to_create(directory: PurePath, create_dir_depth: int) -> int:
    """How many folders at the end of ``directory`` the DAQ may create, from ophyd-async's ``create_dir_depth``
    (areaDetector's rule: > 0 -- so many folders from the root must exist, the rest are created; < 0 -- the
    last ``-create_dir_depth`` folders are created; 0 -- none)."""
    parts = len(directory.parts) - 1  # without the root
    if create_dir_depth > 0:
        return max(0, parts - create_dir_depth)
    return min(parts, -create_dir_depth)


@dataclass
class AcquisitionPlan:
    """What the trigger logic learnt from ``prepare`` and the data logic needs: shared by both."""

    n_images: int = OPEN_ENDED_IMAGES
    images_per_start: int = 1
    livetime: float = 0.0
    deadtime: float = 0.0
    gate: bool = False
    """Open-ended acquisitions are gated: the DAQ writes only the images the triggers ask for."""
    gated: bool = False
    output_file: str | None = None
    images_written: int = 0
    images_requested: int = 0
    frame_numbers: list[int] = field(default_factory=list)
    error: str | None = None
    last_image: dict[str, Any] | None = None
    """The DAQ's ``stats.last_image`` as last polled (image statistics), seen with ``images_written``."""

    @property
    def index(self) -> int:
        """Images of the file that belong to events so far: written, and asked for by a trigger."""
        return min(self.images_written, self.images_requested)

    def exposure(self) -> dict[str, float]:
        """NXmx ``count_time`` (livetime) and ``frame_time`` (livetime + deadtime) in seconds, when prepared."""
        if self.livetime <= 0:
            return {}
        return {"count_time": self.livetime, "frame_time": self.livetime + self.deadtime}


class ImageStreamProvider(StreamResourceDataProvider):
    """StreamResource/StreamDatum documents whose data keys have the file's rank.

    With one image per event, an image's data key has the shape ``[height, width]`` (not ophyd-async's
    ``[1, height, width]``), so tiled's array of the run is ``(events, height, width)`` like the file's
    dataset: while the file already holds an image the documents have not announced yet, tiled cuts the
    dataset to the images announced (``docs/tiled.rst``) instead of failing to reshape it.
    """

    async def make_datakeys(self, collections_per_event: int) -> dict[str, DataKey]:
        keys = await super().make_datakeys(collections_per_event)
        if collections_per_event == 1:
            for key in keys.values():
                if len(key["shape"]) > 2:
                    key["shape"] = list(key["shape"][1:])
        return keys


class StdDaqTriggerLogic(DetectorTriggerLogic):
    """Internal triggering: ``prepare`` tells how many images the next acquisition takes.

    One event (``trigger`` in step scans, or ``prepare`` with ``number_of_events=1``) opens an open-ended
    acquisition that grows with the triggers; ``number_of_events=N > 1`` opens one of exactly N images.
    """

    def __init__(self, plan: AcquisitionPlan) -> None:
        self.plan = plan

    async def prepare_internal(self, num: int, livetime: float, deadtime: float) -> None:
        self.plan.n_images = num if num > 1 else OPEN_ENDED_IMAGES
        self.plan.images_per_start = max(1, num)
        self.plan.livetime, self.plan.deadtime = livetime, deadtime

    async def default_trigger_info(self) -> TriggerInfo:
        return TriggerInfo()


class FreeRunningAcquireLogic(DetectorAcquireLogic):
    """A detector that sends on its own (free running, or triggered by hardware): nothing to arm.

    A step scan's open-ended acquisition is gated: each ``trigger`` asks the DAQ for the next image taken
    after it (``POST /writer/trigger``), so the file holds exactly one image per event, and the other
    images are not written. When the server's simulated detector is armed for software triggers
    (``POST /simulation/start?trigger_mode=software``), each gated start also makes it send the frames.
    A fly scan writes the prepared number of images as they come. The last
    ``complete`` of a fly scan waits until the DAQ has closed the file.
    """

    gate = True

    def __init__(self, data: StdDaqDataLogic) -> None:
        self.data = data

    async def start_acquiring(self) -> None:
        self.data.raise_if_failed()
        n = self.data.plan.images_per_start
        if self.data.plan.gated:
            await asyncio.to_thread(self.data.access.trigger_writer, n)
            if await asyncio.to_thread(self.data.access.simulator_waits_for_triggers):
                await asyncio.to_thread(self.data.access.software_trigger, n)
        self.data.request_images(n)

    async def wait_for_idle(self) -> None:
        await self.data.wait_closed_if_complete()

    async def ensure_stopped(self) -> None:
        return None

    async def apply_exposure(self, livetime: float, deadtime: float) -> None:
        """``prepare`` gave a livetime: the server's simulated detector (when it runs or is armed) takes its
        frame period (livetime + deadtime) and exposure (``POST /simulation/settings``)."""
        await asyncio.to_thread(self.data.access.simulator_settings, livetime + deadtime, livetime)


class SimulatorTriggerAcquireLogic(FreeRunningAcquireLogic):
    """Software trigger of the server's simulated detector: each start sends exactly the images asked for.

    ``trigger`` sends one frame (``POST /simulation/trigger``) and the event's image is that frame; a fly
    scan's ``kickoff`` sends the prepared number of frames at once.
    """

    gate = False  # the simulator sends exactly the frames asked for

    def __init__(self, data: StdDaqDataLogic) -> None:
        super().__init__(data)
        self._sending: asyncio.Future | None = None

    async def start_acquiring(self) -> None:
        self.data.raise_if_failed()
        n = self.data.plan.images_per_start
        self.data.request_images(n)
        self._sending = asyncio.ensure_future(asyncio.to_thread(self.data.access.software_trigger, n))
        if n == 1:  # a step: the image is taken before the trigger returns
            await self._collect_frames()

    async def _collect_frames(self) -> None:
        if self._sending is not None:
            sending, self._sending = self._sending, None
            self.data.plan.frame_numbers.extend(await sending)

    async def wait_for_idle(self) -> None:
        await self._collect_frames()
        await super().wait_for_idle()

    async def ensure_stopped(self) -> None:
        if self._sending is not None:
            await asyncio.wait([self._sending], timeout=60)
            self._sending = None


class StdDaqDataLogic(DetectorDataLogic):
    """The DAQ as the detector's file writer.

    ``prepare`` opens an acquisition into the file named by the path provider (``start_writer_async``);
    the index the detector reports is the number of images written (polled from the DAQ status), at most
    the number of images the triggers asked for, so each event gets the next image of the file; the
    StreamResource/StreamDatum documents (mimetype ``application/x-hdf5``, ``dataset`` and ``chunk_shape``
    in ``parameters``) point at ``/entry/data/data`` and the per-image scalars beside it. With
    ``image_statistics`` (default) the request asks the DAQ for each image's sum and maximum, reported for
    the last image written (:attr:`AcquisitionPlan.last_image`). ``stop`` stops the writer if the acquisition
    is still ours and running.
    """

    def __init__(
        self,
        access: DaqAccess,
        path_provider: PathProvider,
        plan: AcquisitionPlan,
        poll_interval: float = 0.05,
        nexus: dict[str, Any] | None = None,
        image_statistics: bool = True,
        runs: RunFollower | None = None,
        run_metadata: dict[str, str] | None = None,
    ) -> None:
        self.access = access
        self.runs = runs if runs is not None else RunFollower()
        self.run_metadata = dict(RUN_METADATA if run_metadata is None else run_metadata)
        self.image_statistics = image_statistics
        self.path_provider = path_provider
        self.plan = plan
        self.poll_interval = poll_interval
        self.nexus = dict(nexus or {})
        self.images_written, self._set_images_written = soft_signal_r_and_setter(int, initial_value=0)
        self._poller: asyncio.Task | None = None
        self._ended = asyncio.Event()
        self.last_output_file: str | None = None
        """The file of the acquisition opened last."""

    async def prepare_unbounded(self, datakey_name: str) -> StreamableDataProvider:
        info = self.path_provider(datakey_name)
        file_name = f"{info.filename}.h5"
        output_file = str(info.directory_path / file_name)
        config = await asyncio.to_thread(self.access.config, 0.2)
        gated = self.plan.gate and self.plan.n_images == OPEN_ENDED_IMAGES
        request = {
            **self.nexus,
            **run_request_fields(self.runs.start, self.run_metadata),
            **self.plan.exposure(),
            **({"gated": True} if gated else {}),
        }
        if info.create_dir_depth:
            request["create_folders"] = folders_to_create(info.directory_path, info.create_dir_depth)
        if self.image_statistics and self.plan.n_images == OPEN_ENDED_IMAGES:  # step scans: one event an image
            request[REQUEST_FIELD] = True
        await asyncio.to_thread(self.access.start_writer, output_file, self.plan.n_images, request)
        self.plan.gated = gated
        self.last_output_file = output_file
        self.plan.output_file, self.plan.images_written, self.plan.error = output_file, 0, None
        self.plan.images_requested = 0
        self.plan.last_image = None
        self.plan.frame_numbers.clear()
        self._set_images_written(0)
        self._ended.clear()
        self._poller = asyncio.ensure_future(self._poll(output_file))
        shape = (int(config["image_pixel_height"]), int(config["image_pixel_width"]))
        resources = [
            StreamResourceInfo(
                data_key=datakey_name,
                shape=shape,
                chunk_shape=(1, *shape),
                dtype_numpy=np.dtype(image_dtype(config["bit_depth"])).str,
                parameters={"dataset": IMAGE_DATASET},
            ),
            StreamResourceInfo(
                data_key=f"{datakey_name}-frame_number",
                shape=(),
                chunk_shape=(min(self.plan.n_images, 4096),),
                dtype_numpy=np.dtype(np.uint64).str,
                parameters={"dataset": METADATA_DATASETS["frame_number"]},
            ),
            StreamResourceInfo(
                data_key=f"{datakey_name}-missing_packets",
                shape=(),
                chunk_shape=(min(self.plan.n_images, 4096),),
                dtype_numpy=np.dtype(np.uint32).str,
                parameters={"dataset": METADATA_DATASETS["missing_packets"]},
            ),
        ]
        if self.plan.n_images != OPEN_ENDED_IMAGES:  # fly scans: the file's results (step scans: from the status)
            results = ResultKeys(datakey_name, config.get("results")).stream_resources(self.plan.n_images)
            resources += [StreamResourceInfo(**resource) for resource in results]
        return ImageStreamProvider(
            uri=f"{info.directory_uri}{file_name}",
            resources=resources,
            mimetype="application/x-hdf5",
            collections_written_signal=self.images_written,
        )

    async def _poll(self, output_file: str) -> None:
        """Follow the acquisition: images written -> the index signal; record how it ended."""

        def update(view: AcquisitionView) -> None:
            self.plan.last_image = view.acquisition["stats"].get("last_image")  # before the count that ends a trigger
            if view.n_written != self.plan.images_written:
                self.plan.images_written = view.n_written
                self._publish()

        def retry(error: Exception) -> bool:  # the DAQ unreachable for a moment: the trigger's timeout decides
            _log.warning("status of %s not available: %s", output_file, error)
            return True

        try:
            view = await follow_acquisition_async(
                self.access.new_client(), output_file, update, self.poll_interval, retry
            )
            if view.failed:
                self.plan.error = f"acquisition {output_file} FAILED: {view.message}"
                _log.error(self.plan.error)
        except AcquisitionLost as lost:
            self.plan.error = str(lost)
        finally:
            self._ended.set()

    def request_images(self, n: int) -> None:
        """The triggers asked for ``n`` more images."""
        self.plan.images_requested += n
        self._publish()

    def _publish(self) -> None:
        self._set_images_written(self.plan.index)

    def raise_if_failed(self) -> None:
        """StdDaqAcquisitionError if the current acquisition failed."""
        if self.plan.error is not None:
            raise StdDaqAcquisitionError(self.plan.error)

    async def wait_closed_if_complete(self) -> None:
        """Once all requested images are written, wait until the DAQ has closed the file."""
        plan = self.plan
        if plan.n_images != OPEN_ENDED_IMAGES and plan.images_written >= plan.n_images:
            await asyncio.wait_for(self._ended.wait(), timeout=30)
        self.raise_if_failed()

    async def stop(self) -> None:
        output_file = self.plan.output_file
        if output_file is None:
            return
        self.plan.output_file = None
        # an open-ended acquisition that got every image its triggers asked for is complete with them
        taken = self.plan.images_requested if self.plan.n_images == OPEN_ENDED_IMAGES else None
        if taken is not None and (taken == 0 or self.plan.images_written < taken):
            taken = None
        try:
            await asyncio.to_thread(self.access.stop_if_ours, output_file, taken)
            if self._poller is not None:
                await asyncio.wait_for(self._ended.wait(), timeout=30)
        finally:
            if self._poller is not None:
                self._poller.cancel()
                self._poller = None

    def get_hinted_fields(self, datakey_name: str) -> Sequence[str]:
        return []
