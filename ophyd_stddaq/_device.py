"""The plan-facing device: composes client access, file naming, progress and the asset documents."""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

from ophyd import Component as Cpt
from ophyd import Device, Kind, Signal
from ophyd.device import Staged
from ophyd.status import StatusBase

from std_daq_client import StdDaqAdminException, StdDaqClient

from ._access import OPEN_ENDED_IMAGES, DaqAccess
from ._configuration import DETECTOR_FIELDS, EXPOSURE_FIELDS
from ._documents import ImageAssets, StreamImageAssets
from ._errors import StdDaqAcquisitionError
from ._fly import DeviceAcquisition, FlyScanMixin
from ._path_provider import PathProvider, UniqueFilePathProvider
from ._pedestal import CONVERSION_FIELDS, ConversionSignal
from ._results import ResultReadings
from ._run_identity import RUN_METADATA, RunFollower, run_file_stem, run_request_fields
from ._signals import DaqConfigSignal, DaqStatusSignal, ImageReferenceSignal, ImageStatisticSignal
from ._statistics import REQUEST_FIELD, statistics_of
from ._status import AcquisitionStatus, StatusMonitor

_log = logging.getLogger("ophyd_stddaq")


def _config(name: str, data_type: str, doc: str) -> Cpt:
    return Cpt(DaqConfigSignal, field=name, data_type=data_type, kind="config", doc=doc)


def _status(path: tuple[str, ...], data_type: str, doc: str) -> Cpt:
    return Cpt(DaqStatusSignal, path=path, data_type=data_type, kind="omitted", doc=doc)


class StdDaq(ResultReadings, FlyScanMixin, Device):
    """A std-daq detector DAQ as an ophyd device, for bluesky step scans, fly scans and IPython.

    The device talks to the DAQ only through :class:`~std_daq_client.StdDaqClient`.

    **The run**: the device follows the start documents of the RunEngine that stages it (:attr:`runs`) and
    sends the run's uid, scan_id, plan name, sample and the start-document keys of ``run_metadata`` with the
    write request; files are named after the run, ``<scan_id>_<uid8>_<name>.h5``. ``count_time`` and
    ``frame_time`` (s, NaN: not set) go into the file's NXmx detector.

    **Step scans** (``count``, ``scan``, …): the first :meth:`trigger` after :meth:`stage` (inside the run)
    starts an acquisition into a new file
    (``start_writer_async``; ``n_images`` images if set, else open-ended: the number of triggers decides,
    and with a detector that sends by itself the acquisition is gated: each trigger makes the DAQ write
    the next image taken after it, ``POST /writer/trigger``),
    each :meth:`trigger` finishes when the next image has been written (image *i* of the dataset belongs
    to event *i*), :meth:`unstage` stops the writer if the acquisition is still running (an open-ended one
    that wrote every triggered image ends "Completed." with that many images). With
    ``trigger_mode="simulator"`` each trigger first makes the server's simulated detector send one frame
    (``POST /simulation/trigger``), so the image is taken at the point; with ``"free"`` the detector sends
    by itself and, with ``n_images`` set, the DAQ writes every image it sends (up to ``n_images``).

    **Fly scans**: :meth:`kickoff` starts an acquisition of ``n_images`` images, :meth:`complete` finishes
    when the DAQ reports it FINISHED with all images, :meth:`collect` yields one event per image written.

    Step-scan events point at ``/entry/data/data`` of the file through StreamResource/StreamDatum
    documents (mimetype ``application/x-hdf5``: tiled stores them as they are), or, with
    ``asset_documents="resource"`` and always in fly scans, through Datum ids (Resource spec
    :data:`~ophyd_stddaq.SPEC`) that :class:`~ophyd_stddaq.StdDaqHDF5Handler` loads back. Each event also
    carries ``images_written`` and, with ``image_statistics``, ``image_sum`` and ``image_max`` of its image
    as the DAQ computed them (hinted: the table and plots of the BestEffortCallback show them; NaN when
    the DAQ does not report the event's image).

    Parameters
    ----------
    url_base:
        Base URL of the DAQ's REST API.
    name:
        The ophyd name (prefix of every data key).
    directory:
        Folder on the DAQ server for the output files (inside its data root; it must exist). Files are
        named by :class:`~ophyd_stddaq.UniqueFilePathProvider` with the device name as prefix.
    path_provider:
        Instead of ``directory``: any callable returning a new absolute output file path per call.
    redis_url:
        Redis the DAQ publishes its status on (``std_daq_server --redis-url``). Optional: state changes
        are then seen at once; without it (or if Redis fails) the REST status is polled.
    poll_interval:
        Seconds between two status polls while a Status waits.
    unreachable_timeout:
        A waiting Status fails when the DAQ has not answered for this many seconds.
    wait_timeout:
        If not ``None``, every Status from trigger/complete fails after this many seconds.
    fly_stream:
        Name of the event stream :meth:`collect` fills.
    client_timeout:
        Read timeout of each REST call.
    trigger_mode:
        ``"free"`` (the detector sends by itself) or ``"simulator"`` (a software trigger per event).
    asset_documents:
        ``"stream"`` (StreamResource/StreamDatum, default) or ``"resource"`` (Resource/Datum).
    token:
        Bearer token for a DAQ that requires one.
    nexus:
        Optional NXmx values sent with each write request (``detector_distance``, ``sample_name`` ...).
    image_statistics:
        Ask the DAQ for each image's sum and maximum (``"image_statistics": true``) and put them in the
        step-scan events (default True).
    run_metadata:
        Start-document keys sent as the run's metadata: key -> name in ``/entry/run`` (default
        :data:`~ophyd_stddaq._run_identity.RUN_METADATA`).
    """

    # DAQ config (settable: set_config validates and applies)
    detector_name = _config("detector_name", "string", "Name of the detector, unique per DAQ.")
    detector_type = _config("detector_type", "string", "eiger, jungfrau, gigafrost or bsread.")
    bit_depth = _config("bit_depth", "integer", "Bits per pixel.")
    image_pixel_height = _config("image_pixel_height", "integer", "Image height in pixels, gaps included.")
    image_pixel_width = _config("image_pixel_width", "integer", "Image width in pixels, gaps included.")
    n_modules = _config("n_modules", "integer", "Number of detector modules.")
    start_udp_port = _config("start_udp_port", "integer", "First UDP port the detector sends to.")
    writer_user_id = _config("writer_user_id", "integer", "User id the files are written as (< 1: the server's).")
    module_positions = _config("module_positions", "string", "Module index -> [start_x, start_y, end_x, end_y].")

    # the conversion of a Jungfrau's raw words (config jungfrau_conversion, and the pedestal in use)
    conversion = Cpt(ConversionSignal, field="conversion", kind="config", doc=CONVERSION_FIELDS["conversion"])
    gain_maps = Cpt(ConversionSignal, field="gain_maps", kind="config", doc=CONVERSION_FIELDS["gain_maps"])
    pedestal_file = Cpt(ConversionSignal, field="pedestal_file", kind="config", doc=CONVERSION_FIELDS["pedestal_file"])
    pedestal_sha256 = Cpt(
        ConversionSignal, field="pedestal_sha256", kind="config", doc=CONVERSION_FIELDS["pedestal_sha256"]
    )

    compression = Cpt(
        DaqStatusSignal, path=("compression",), data_type="string", kind="config", doc=DETECTOR_FIELDS["compression"][1]
    )

    # acquisition settings of this device (not DAQ fields)
    n_images = Cpt(Signal, value=0, kind="config", doc="Images per acquisition; 0: as many as the plan triggers.")
    count_time = Cpt(Signal, value=math.nan, kind="config", doc=EXPOSURE_FIELDS["count_time"][1])
    frame_time = Cpt(Signal, value=math.nan, kind="config", doc=EXPOSURE_FIELDS["frame_time"][1])
    images_written = Cpt(Signal, value=0, kind="hinted", doc="Images of this acquisition written at the event.")
    image_sum = Cpt(ImageStatisticSignal, field="sum", kind="hinted", doc="Sum of the event's image (no lost pixel).")
    image_max = Cpt(ImageStatisticSignal, field="max", kind="hinted", doc="Largest pixel of the event's image.")

    # DAQ status (read-only)
    state = _status(("state",), "string", "Writer state: READY, WRITING or UNKNOWN.")
    acquisition_state = _status(("acquisition", "state"), "string", "WAITING_IMAGES, WRITING, …, FINISHED, FAILED.")
    acquisition_message = _status(("acquisition", "message"), "string", "The DAQ's message, e.g. 'Completed.'.")
    acquisition_output_file = _status(("acquisition", "info", "output_file"), "string", "File of the acquisition.")
    acquisition_n_images = _status(("acquisition", "info", "n_images"), "integer", "Images requested.")
    n_write_completed = _status(("acquisition", "stats", "n_write_completed"), "integer", "Images written.")
    n_write_requested = _status(("acquisition", "stats", "n_write_requested"), "integer", "Images sent to write.")

    # the data
    image = Cpt(ImageReferenceSignal, kind="normal", doc="The image of the event (a Datum id into the file).")

    def __init__(
        self,
        url_base: str = "http://localhost:5000",
        *,
        name: str,
        directory: str | None = None,
        path_provider: PathProvider | None = None,
        redis_url: str | None = None,
        poll_interval: float = 0.05,
        unreachable_timeout: float = 10.0,
        wait_timeout: float | None = None,
        fly_stream: str = "primary",
        client_timeout: float = 10.0,
        trigger_mode: Literal["free", "simulator"] = "free",
        asset_documents: Literal["stream", "resource"] = "stream",
        token: str | None = None,
        nexus: dict[str, Any] | None = None,
        image_statistics: bool = True,
        run_metadata: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        if directory is not None and path_provider is not None:
            raise ValueError("give either directory or path_provider, not both")
        if trigger_mode not in ("free", "simulator"):
            raise ValueError(f"trigger_mode must be 'free' or 'simulator', not {trigger_mode!r}")
        if asset_documents not in ("stream", "resource"):
            raise ValueError(f"asset_documents must be 'stream' or 'resource', not {asset_documents!r}")
        self._daq_access = DaqAccess(url_base, client_timeout=client_timeout, token=token)
        super().__init__("", name=name, **kwargs)
        self.trigger_mode = trigger_mode
        self.asset_documents = asset_documents
        self.nexus = dict(nexus or {})
        self.image_statistics = image_statistics
        if not image_statistics:
            self.image_sum.kind = self.image_max.kind = Kind.omitted
        self.image.stream = asset_documents == "stream"
        self.path_provider: PathProvider | None = (
            UniqueFilePathProvider(directory, prefix=name) if directory is not None else path_provider
        )
        """Gives the output file of the next acquisition (replace it to change the naming)."""
        self.redis_url = redis_url
        self.unreachable_timeout = unreachable_timeout
        self.wait_timeout = wait_timeout
        self.fly_stream = fly_stream
        self.monitor = StatusMonitor(
            self._daq_access, poll_interval=poll_interval, redis_url=redis_url, on_status=self._refresh_status
        )
        """Follows the DAQ status for the waiting Status objects."""
        self.last_output_file: str | None = None
        """The file of the last acquisition this device started."""
        self._acquisition: DeviceAcquisition | None = None
        self.runs = RunFollower()
        """The start document of the open run (followed from the RunEngine that stages the device; or
        subscribe it yourself: ``RE.subscribe(det.runs)``)."""
        self.run_metadata = dict(RUN_METADATA if run_metadata is None else run_metadata)

    # ------------------------------------------------------------------ access

    @property
    def url_base(self) -> str:
        """Base URL of the DAQ's REST API."""
        return self._daq_access.url_base

    @property
    def client(self) -> StdDaqClient:
        """The :class:`~std_daq_client.StdDaqClient` of this device, for calls the device does not wrap."""
        return self._daq_access.client

    def _refresh_status(self, status: dict[str, Any]) -> None:
        for walk in self.walk_signals():
            if isinstance(walk.item, DaqStatusSignal):
                walk.item.refresh(status)

    # ------------------------------------------------------------ acquisitions

    def _n_images_setting(self, fly: bool = False) -> int:
        value = self.n_images.get()
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < 0:
            raise ValueError(f"{self.name}.n_images must be an integer >= 0 (0: from the plan), not {value!r}")
        if value == 0 and fly:
            raise ValueError(f"{self.name}.n_images must be set (>= 1) for a fly scan: kickoff cannot count triggers")
        return int(value) or OPEN_ENDED_IMAGES

    def _next_file(self) -> str:
        if self.path_provider is None:
            raise ValueError(
                f"{self.name} has no output folder: construct it with directory=... or set {self.name}.path_provider"
            )
        if isinstance(self.path_provider, UniqueFilePathProvider):
            return self.path_provider(run_file_stem(self.runs.start))
        return str(self.path_provider())

    def _request_fields(self, gated: bool, fly: bool) -> dict[str, Any]:
        """What the write request carries besides the file and the number of images."""
        exposure = {name: float(getattr(self, name).get()) for name in EXPOSURE_FIELDS}
        extra = {
            **self.nexus,
            **run_request_fields(self.runs.start, self.run_metadata),
            **{name: value for name, value in exposure.items() if math.isfinite(value) and value > 0},
            **({"gated": True} if gated else {}),
        }
        if self.image_statistics and not fly and (gated or self.trigger_mode != "free"):
            extra[REQUEST_FIELD] = True  # only where each event has its own image (not at full rate)
        return extra

    def _start(self, fly: bool = False) -> DeviceAcquisition:
        """Send start_writer_async for a new file; the DAQ must be READY (else it refuses with its message)."""
        n_images = self._n_images_setting(fly)
        output_file = self._next_file()
        gated = n_images == OPEN_ENDED_IMAGES and self.trigger_mode == "free" and not fly
        try:
            self._daq_access.start_writer(output_file, n_images, self._request_fields(gated, fly))
        except StdDaqAdminException as error:
            raise StdDaqAdminException(f"{self.name}: the DAQ refused to write {output_file}: {error}") from error
        self.last_output_file = output_file
        self.images_written.put(0)
        if self.image.stream and not fly:  # a fly scan's documents are chosen at its first collect
            assets: ImageAssets | StreamImageAssets = self._stream_assets(output_file)
        else:
            assets = ImageAssets(output_file)
        return DeviceAcquisition(output_file=output_file, n_images=n_images, assets=assets, gated=gated)

    def _stream_assets(self, output_file: str) -> StreamImageAssets:
        config = self._daq_access.config(max_age=0.2)
        shape = (int(config["image_pixel_height"]), int(config["image_pixel_width"]))
        return StreamImageAssets(output_file, self.image.name, shape)

    def _stop_writer(self, acquisition: DeviceAcquisition, taken: int | None = None) -> None:
        """Stop the writer if it is still busy with ``acquisition`` (never somebody else's); ``taken``: the
        plan ended after so many images."""
        if acquisition.stop_sent:
            return
        if self._daq_access.stop_if_ours(acquisition.output_file, taken) is not None:
            _log.info("%s: stopped the writer of %s", self.name, acquisition.output_file)
        acquisition.stop_sent = True  # only once it worked: a stop that failed is tried again by unstage

    def _watch(self, status: AcquisitionStatus) -> AcquisitionStatus:
        self.monitor.add(status)
        return status

    def _current(self, action: str) -> DeviceAcquisition:
        if self._acquisition is None:
            raise RuntimeError(f"{self.name}.{action}(): no acquisition; stage or kickoff {self.name} first")
        return self._acquisition

    # ----------------------------------------------------------- step scans

    def stage(self) -> list[Any]:
        """Get ready for a run: the first :meth:`trigger` (or :meth:`kickoff`) starts the acquisition, inside
        the run, so the file is named after it and knows it.

        Follows the runs of the RunEngine that stages the device. Fails at once if ``n_images`` is not a
        valid setting or there is no output folder; the DAQ's refusal (``StdDaqAdminException``, e.g. not
        READY) or the client's ``RuntimeError`` (unreachable) come with the first trigger.
        """
        self._n_images_setting()
        if self.path_provider is None:
            self._next_file()  # the ValueError that says how to give one
        self._acquisition = None
        self.runs.follow_running_engine()
        staged = super().stage()
        try:
            self._stage_results(self._daq_access.config(max_age=0.2))  # the config's results: readings (_results)
        except BaseException:
            super().unstage()
            raise
        return staged

    def trigger(self) -> StatusBase:
        """Finishes when the next image of the staged acquisition has been written.

        The *k*-th trigger after stage waits for ``n_write_completed >= k``; the event's image is image
        *k - 1* of the file. Fails if the acquisition ends first (with the DAQ's message), and at once if
        the plan triggers more than ``n_images`` times.
        """
        if self._staged != Staged.yes:
            raise RuntimeError(f"{self.name} must be staged before trigger(): stage prepares the acquisition")
        if self._acquisition is None:
            self._acquisition = self._start()
        acquisition = self._acquisition
        index = acquisition.n_triggers
        if index >= acquisition.n_images:
            raise StdDaqAcquisitionError(
                f"{self.name}: trigger number {index + 1}, but the acquisition has only n_images="
                f"{acquisition.n_images}; set {self.name}.n_images to 0 (from the plan) or to the number of points"
            )
        if self.trigger_mode == "simulator":
            self._daq_access.software_trigger(1)  # the image of this point is taken now
        elif acquisition.gated:
            self._daq_access.trigger_writer(1)  # the DAQ writes the next image taken from now on
        acquisition.n_triggers += 1
        reference = acquisition.assets.datum(index)
        if not self.image.stream:
            self.image.put(reference)
        self.images_written.put(index + 1)
        self._put_statistics(None, index)
        return self._watch(
            AcquisitionStatus(
                self,
                acquisition.output_file,
                target=index + 1,
                n_images=acquisition.n_images,
                until_end=False,
                initial=index,
                unreachable_timeout=self.unreachable_timeout,
                timeout=self.wait_timeout,
                before_success=lambda found: self._put_statistics(found, index),
            )
        )

    def _put_statistics(self, acquisition: dict[str, Any] | None, index: int) -> None:
        """The event's image statistics from the DAQ's acquisition object (NaN if it has not those of image
        ``index``)."""
        for name, value in statistics_of(acquisition, index).items():
            getattr(self, name).put(value)
        self._put_results(acquisition, index)

    def unstage(self) -> list[Any]:
        """Stop the writer if our acquisition is still running (the file keeps the images written)."""
        try:
            acquisition = self._acquisition
            if acquisition is not None:
                open_ended = acquisition.n_images == OPEN_ENDED_IMAGES and not acquisition.kicked_off
                taken = acquisition.n_triggers if open_ended and acquisition.n_triggers else None
                self._stop_writer(acquisition, taken)
        finally:
            unstaged = super().unstage()
        return unstaged

    def stop(self, *, success: bool = False) -> None:
        """Called on failures and aborts: stop our acquisition if it is still running (errors are logged)."""
        if not success and self._acquisition is not None:
            try:
                self._stop_writer(self._acquisition)
            except Exception as error:
                _log.warning("%s: could not stop the writer: %s", self.name, error)
        super().stop(success=success)
