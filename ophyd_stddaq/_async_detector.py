"""The std-daq as an ophyd-async ``StandardDetector``: DAQ writer + trigger/arm controller + path provider."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from bluesky.protocols import Hints, Reading
from event_model import DataKey
from ophyd_async.core import (
    AsyncStatus,
    DetectorAcquireLogic,
    DeviceConnector,
    NotConnectedError,
    PathProvider,
    StandardDetector,
    TriggerInfo,
)

from ._access import OPEN_ENDED_IMAGES, DaqAccess
from ._async_logic import (
    AcquisitionPlan,
    FreeRunningAcquireLogic,
    SimulatorTriggerAcquireLogic,
    StdDaqDataLogic,
    StdDaqTriggerLogic,
)
from ._configuration import DETECTOR_FIELDS, EXPOSURE_FIELDS, data_key_fields, detector_values, exposure_values
from ._pedestal import CONVERSION_FIELDS, conversion_values
from ._results import ResultKeys
from ._run_identity import RunFollower
from ._statistics import STATISTICS, statistics_of

TriggerMode = Literal["free", "simulator"]


class DaqConnector(DeviceConnector):
    """Connecting the detector means reaching the DAQ: its config is read once (real mode only)."""

    def __init__(self, access: DaqAccess, runs: RunFollower | None = None) -> None:
        self.access = access
        self.runs = runs

    async def connect_real(self, device: Any, timeout: float, force_reconnect: bool) -> None:
        if self.runs is not None:  # connected by a RunEngine (ensure_connected): follow its runs from now on
            self.runs.follow_running_engine()
        try:
            await asyncio.wait_for(asyncio.to_thread(self.access.config), timeout)
        except Exception as error:
            raise NotConnectedError(
                f"{device.name}: the DAQ at {self.access.url_base} does not answer: {error}"
            ) from None
        await super().connect_real(device, timeout, force_reconnect)


class StdDaqDetector(StandardDetector):
    """A std-daq DAQ and its detector as an ophyd-async detector (``prepare``, ``trigger``, fly scans).

    Composed of :class:`StdDaqDataLogic` (the DAQ writes the file named by ``path_provider`` and reports
    the images written; StreamResource/StreamDatum documents point at them), a trigger logic (the number
    of images comes from ``prepare`` or from the number of triggers) and an acquire logic that arms or
    triggers the detector. Each event of a step scan carries ``<name>-images_written`` and, with
    ``image_statistics``, ``<name>-image_sum`` and ``<name>-image_max`` of the event's image (hinted, for
    tables and plots; NaN when the DAQ does not report them); the per-image frame number and missing
    packets are streamed from the file beside the images.
    The acquire logic is chosen by:

    * ``trigger_mode="free"``: the detector sends by itself (free running or hardware triggered); in step
      scans the DAQ writes, per trigger, the next image taken after it (``POST /writer/trigger`` of a
      gated acquisition), in fly scans the prepared number of images.
    * ``trigger_mode="simulator"``: the server's simulated detector gets a software trigger per event
      (``POST /simulation/trigger``), so image *k* is taken when point *k* is reached (honest step scans).
    * ``acquire_logic=``: any other controller, e.g. :class:`~ophyd_stddaq.SlsDetAcquireLogic` for sls
      Jungfrau/Eiger detectors.

    Parameters
    ----------
    url:
        Base URL of the DAQ's REST API.
    path_provider:
        An ophyd-async ``PathProvider``; its directory is a folder on the DAQ server inside its data root.
    name:
        Device name; the image data key is the name itself.
    trigger_mode:
        ``"free"`` (default) or ``"simulator"``.
    acquire_logic:
        A controller replacing the one of ``trigger_mode``.
    token:
        Bearer token for a server that requires one.
    nexus:
        Optional NXmx values sent with every write request (``detector_distance``, ``beam_center_x`` ...).
    image_statistics:
        Ask the DAQ for each image's sum and maximum (``"image_statistics": true``, one pass over each
        image on the DAQ) and put them in the step-scan events (default True).
    run_metadata:
        Start-document keys sent as the run's metadata: key -> name in ``/entry/run`` (default
        :data:`~ophyd_stddaq._run_identity.RUN_METADATA`). The run's uid, scan_id, plan name and sample are always sent.
    poll_interval:
        Seconds between two DAQ status polls while an acquisition runs.
    """

    def __init__(
        self,
        url: str,
        path_provider: PathProvider,
        name: str = "",
        *,
        trigger_mode: TriggerMode = "free",
        acquire_logic: DetectorAcquireLogic | None = None,
        token: str | None = None,
        nexus: dict[str, Any] | None = None,
        poll_interval: float = 0.05,
        client_timeout: float = 10.0,
        image_statistics: bool = True,
        run_metadata: dict[str, str] | None = None,
    ) -> None:
        if trigger_mode not in ("free", "simulator"):
            raise ValueError(f"trigger_mode must be 'free' or 'simulator', not {trigger_mode!r}")
        self.access = DaqAccess(url, client_timeout=client_timeout, token=token)
        self.plan = AcquisitionPlan()
        self.runs = RunFollower()
        """The start document of the open run (followed from the RunEngine that connects or stages this
        detector; or subscribe it yourself: ``RE.subscribe(det.runs)``)."""
        self.data_logic = StdDaqDataLogic(
            self.access,
            path_provider,
            self.plan,
            poll_interval,
            nexus,
            image_statistics=image_statistics,
            runs=self.runs,
            run_metadata=run_metadata,
        )
        if acquire_logic is None:
            kind = SimulatorTriggerAcquireLogic if trigger_mode == "simulator" else FreeRunningAcquireLogic
            acquire_logic = kind(self.data_logic)
        elif hasattr(acquire_logic, "attach"):
            acquire_logic.attach(self.data_logic)
        self.plan.gate = bool(getattr(acquire_logic, "gate", False))
        self._acquire = acquire_logic
        self.add_detector_logics(StdDaqTriggerLogic(self.plan), acquire_logic, self.data_logic)
        super().__init__(name=name, connector=DaqConnector(self.access, self.runs))

    @AsyncStatus.wrap
    async def stage(self) -> None:
        """Follow the runs of the RunEngine that stages the detector (their identity goes into the files)."""
        self.runs.follow_running_engine()
        await super().stage()

    @AsyncStatus.wrap
    async def prepare(self, value: TriggerInfo) -> None:
        """Prepare for ``value`` (a new file each time the last one was closed); a livetime also sets the
        detector's exposure and period (``count_time`` and ``frame_time`` of the file)."""
        if self.plan.output_file is None:  # closed (unstaged) or never opened: start afresh, as stage does
            await super().stage()
        if value.livetime > 0 and hasattr(self._acquire, "apply_exposure"):
            await self._acquire.apply_exposure(value.livetime, value.deadtime)
        await super().prepare(value)

    @property
    def images_written_key(self) -> str:
        """Data key of the hinted reading: images of the file that belong to the run's events so far."""
        return f"{self.name}-images_written"

    @property
    def statistics_keys(self) -> dict[str, str]:
        """Data keys of the image statistics of each event (none when not asked for): statistic -> key."""
        return {name: f"{self.name}-{name}" for name in STATISTICS} if self.data_logic.image_statistics else {}

    async def describe(self) -> dict[str, DataKey]:
        keys = await super().describe()
        source = f"{self.access.url_base} /writer/status acquisition.stats"
        results = await self._results()  # step scans: from the status (_results)
        if results and self.plan.n_images == OPEN_ENDED_IMAGES:
            keys.update({key: DataKey(**value) for key, value in results.describe(source).items()})
        keys[self.images_written_key] = DataKey(
            source=f"{source}.n_write_completed", dtype="integer", shape=[], dtype_numpy="<i8"
        )
        for name, key in self.statistics_keys.items():
            field = name.removeprefix("image_")
            keys[key] = DataKey(
                source=f"{source}.last_image.{field}", dtype="number", shape=[], dtype_numpy="<f8", precision=0
            )
        return keys

    async def read(self) -> dict[str, Reading]:
        readings = await super().read()
        now = time.time()
        readings[self.images_written_key] = Reading(value=int(self.plan.index), timestamp=now)
        if self.statistics_keys:  # of the event's image: the last one written when the trigger ended
            values = statistics_of({"stats": {"last_image": self.plan.last_image}}, self.plan.index - 1)
            for name, key in self.statistics_keys.items():
                readings[key] = Reading(value=float(values[name]), timestamp=now)
        results = await self._results()
        if results and self.plan.n_images == OPEN_ENDED_IMAGES:
            values = results.values({"stats": {"last_image": self.plan.last_image}}, self.plan.index - 1)
            readings.update({key: Reading(value=value, timestamp=now) for key, value in values.items()})
        return readings

    async def _results(self) -> ResultKeys:
        """The results the DAQ config asks for (kept for :attr:`hints`)."""
        config = await asyncio.to_thread(self.access.config, 1.0)
        self._result_keys = ResultKeys(self.name, config.get("results"))
        return self._result_keys

    async def describe_configuration(self) -> dict[str, DataKey]:
        """The configuration signals, the detector and its files
        (:data:`~ophyd_stddaq._configuration.DETECTOR_FIELDS`), the exposure prepared
        (:data:`~ophyd_stddaq._configuration.EXPOSURE_FIELDS`) and the DAQ's conversion
        (:data:`~ophyd_stddaq.CONVERSION_FIELDS`)."""
        keys = await super().describe_configuration()
        for field in (*DETECTOR_FIELDS, *EXPOSURE_FIELDS):
            dtype, dtype_numpy, doc = data_key_fields(field)
            source = f"{self.access.url_base} /daq/config + /writer/status: {field} ({doc})"
            key = DataKey(source=source, dtype=dtype, shape=[])  # type: ignore[typeddict-item]
            if dtype_numpy is not None:
                key["dtype_numpy"] = dtype_numpy
            keys[f"{self.name}-{field}"] = key
        for field, doc in CONVERSION_FIELDS.items():
            source = f"{self.access.url_base} /daq/config + /writer/status: {field} ({doc})"
            keys[f"{self.name}-{field}"] = DataKey(source=source, dtype="string", shape=[])
        return keys

    async def read_configuration(self) -> dict[str, Reading]:
        readings = await super().read_configuration()
        config = await asyncio.to_thread(self.access.config, 0.2)
        status = await asyncio.to_thread(self.access.status, 0.2)
        now = time.time()
        values = {
            **detector_values(config, status),
            **exposure_values(self.plan.exposure()),
            **conversion_values(config, status),
        }
        for field, value in values.items():
            readings[f"{self.name}-{field}"] = Reading(value=value, timestamp=now)
        return readings

    @property
    def hints(self) -> Hints:
        results = getattr(self, "_result_keys", None)
        hinted = results.hinted if results and self.plan.n_images == OPEN_ENDED_IMAGES else []
        return Hints(fields=[self.images_written_key, *self.statistics_keys.values(), *hinted])

    @property
    def last_output_file(self) -> str | None:
        """The file of the acquisition opened last (None before the first ``prepare``)."""
        return self.data_logic.last_output_file
