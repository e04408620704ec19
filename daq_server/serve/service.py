"""The DAQ service: config, receiver, writer driver, stats and log composed in one object.

The REST layer (``daq_server.serve.api``) only validates HTTP input and calls this; nothing here
knows about HTTP.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import detectors
from daq_server.acquire.acquisition import Acquisition
from daq_server.acquire.acquisition_log import AcquisitionLog
from daq_server.acquire.conversion_plan import ConversionRefused, plan_conversion
from daq_server.acquire.image_stream import ImageStream
from daq_server.acquire.live_preview import LivePreview
from daq_server.acquire.pedestal_store import PedestalStore
from daq_server.acquire.writer_driver import DriverError, WriterDriver
from daq_server.acquire.writer_pool import WriterPool, remove_stale_rings
from daq_server.config import ConfigError, ConfigStore, DaqConfig, as_dict, merge_config
from daq_server.receive.bsread_receiver import BsreadReceiver
from daq_server.receive.image_source import RECEIVER_COUNTERS
from daq_server.receive.udp_ports import describe_port_conflict
from daq_server.receive.udp_receiver import ImageSource, Receiver, ReceiverSettings
from daq_server.serve.errors import AdminError
from daq_server.serve.limits import check_memory, check_ring, check_user_id
from daq_server.serve.priority import raise_priority
from daq_server.serve.redis_publisher import RedisPublisher
from daq_server.serve.simulation import BuiltInSimulator
from daq_server.serve.stats import StatsSampler
from daq_server.stream.preview_stream import PreviewStream
from daq_server.stream.stream2_publisher import Stream2Publisher
from daq_server.write.hdf5_writer import COMPRESSIONS
from daq_server.write.request import parse_write_request, stop_request_images
from daq_server.write.results_file import ResultsRefused
from daq_server.write.results_file import check_request as check_results
from detectors import describe
from std_daq_client.acquisitions import AcquisitionState, WriterState

_log = logging.getLogger("daq_server.serve.service")
DEFAULT_MEMORY_LIMIT = 2048 << 20


@dataclass(frozen=True)
class ServerOptions:
    """How this server runs (command line), as opposed to the detector config."""

    config_file: Path
    data_root: Path
    state_dir: Path
    receiver: ReceiverSettings = ReceiverSettings()
    compression: str = "none"
    compression_threads: int = 0  # 0: daq_server.pipeline.compression.default_threads
    server_name: str = "std-daq"
    redis_url: str | None = None
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT
    """A config whose receiver needs more memory is refused before anything is allocated."""
    allowed_user_ids: tuple[tuple[int, int], ...] | None = None
    """Ranges of writer_user_id a config may set (None: any of 0 … 2^31-1)."""
    writer_processes: int = 1
    """Processes writing the files from the shared-memory ring buffer (0: the server's own threads)."""
    writer_timeout_s: float = 60.0
    writer_nice: int = 0
    """Nice value of the server and its writer processes when allowed (0: unchanged; the CLI's default is -10)."""
    """A writer process that holds images (or a close) this long without news is killed, the acquisition FAILED."""
    stream_address: str | None = None
    """ZeroMQ address of the Stream2 image stream (PUSH, bound), e.g. ``tcp://0.0.0.0:31001``; None: no stream."""
    preview_address: str | None = None
    """ZeroMQ address of the ``array-1.0`` preview stream (PUB, bound); None: no preview stream."""
    preview_rate_hz: float = 2.0
    """Images a second the live preview keeps (the page's image and the preview stream)."""


class DaqService:
    def __init__(self, options: ServerOptions):
        if options.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}")
        self.options = options
        self._priority_notes = raise_priority(options.writer_nice)  # before any thread starts: they inherit it
        options.state_dir.mkdir(parents=True, exist_ok=True)
        self._store = ConfigStore(options.config_file)
        self._config: DaqConfig = self._store.load()
        self._check_limits(self._config)
        self._config_lock = threading.Lock()  # a config change and a write request never overlap
        self._receiver_lock = threading.Lock()  # the receiver is replaced while stats read it
        self._publisher = (
            RedisPublisher(options.redis_url, lambda: self._config.detector_name) if options.redis_url else None
        )
        self.log = AcquisitionLog(options.state_dir / "acquisitions.jsonl", lambda r: self._publish("acquisition", r))
        self.image_stream = ImageStream(Stream2Publisher(options.stream_address)) if options.stream_address else None
        preview_stream = PreviewStream(options.preview_address) if options.preview_address else None
        self.preview = LivePreview(options.preview_rate_hz, stream=preview_stream)
        self.pedestals = PedestalStore(options.state_dir)
        self.driver = WriterDriver(
            options.state_dir,
            self.log,
            lambda status: self._publish("status", status),
            self.preview.offer,
            compression=options.compression,
            compression_threads=options.compression_threads,
            writer_pool=WriterPool(options.writer_processes, options.writer_timeout_s)
            if options.writer_processes > 0
            else None,
            on_end=self._acquisition_ended,
            image_stream=self.image_stream,
        )
        self._ring_note = ""  # why the writer processes cannot be used, if they cannot
        self._ring_names = (f"/std_daq.{os.getpid()}.{n}" for n in itertools.count())
        if options.writer_processes > 0:
            remove_stale_rings()
        bind = options.receiver.bind_address
        self.simulator = BuiltInSimulator(host="127.0.0.1" if bind == "0.0.0.0" else bind)
        self._detector_bytes_before = 0  # bytes counted by receivers that were replaced
        self._receiver: ImageSource | None = None
        self._deployment: dict = {}
        try:
            self._deploy(self._config)
        except RuntimeError as error:  # e.g. a UDP port owned by another receiver: say so, keep serving
            _log.error("%s", error)
        self.stats = StatsSampler(
            self._counters, self.receiver_counters, on_sample=lambda stats: self._publish("stats", stats)
        )
        self.stats.start()

    # ---- config ---------------------------------------------------------------------------
    def get_config(self) -> dict:
        return as_dict(self._config)

    def set_config(self, changes: dict) -> dict:
        """Merge, validate, restart the receiver with the new config, persist it."""
        return self.apply_config(changes)[0]

    def apply_config(self, changes: dict) -> tuple[dict, str]:
        """set_config, and a message saying what the change restarted or stopped."""
        with self._config_lock:
            try:
                new = merge_config(self._config, changes)
                self._check_limits(new)
            except ConfigError as error:
                raise AdminError(str(error)) from None
            if self.driver.state != WriterState.READY:
                raise AdminError(f"The config cannot change while the writer is {self.driver.state}; stop it first.")
            old = self._config
            simulator_was_running = self.simulator.status()["state"] == "RUNNING"
            self.simulator.stop()  # it sends the old config's stream
            try:
                self._deploy(new)
            except RuntimeError as error:
                try:
                    self._deploy(old)
                except RuntimeError as old_error:
                    raise AdminError(
                        f"The new config could not be applied ({error}); the old one is kept, but its receiver "
                        f"did not start either ({old_error})."
                    ) from None
                raise AdminError(f"The new config could not be applied ({error}); the old one is kept.") from None
            try:
                self._store.save(new)
            except ConfigError as error:
                self._deploy(old)
                raise AdminError(f"{error}; the old config is kept.") from None
            self._config = new
            self._publish("config", as_dict(new))
            done = "Config applied: the receiver was restarted"
            if simulator_was_running:
                done += "; the built-in simulator was stopped (it sent the old config's stream: start it again)"
            self._deployment["message"] = done + "." + self._buffering_note(self._deployment.get("receiver", {}))
            return as_dict(new), done + "."

    def _check_limits(self, config: DaqConfig) -> None:
        """ConfigError if the server's options forbid ``config`` (user id, memory)."""
        check_user_id(config.writer_user_id, self.options.allowed_user_ids)
        check_memory(as_dict(config), self.options.receiver.ring_bytes, self.options.memory_limit_bytes)
        if not describe(config.detector_type).streams_whole_images:  # a bsread source has no ring buffer
            check_ring(as_dict(config), self.options.receiver.ring_bytes)

    def _deploy(self, config: DaqConfig) -> None:
        """(Re)start the receiver for ``config``; records the deployment status."""
        start = time.time()
        self._deployment = {
            "config_id": str(time.time_ns()),
            "message": "Restarting the receiver.",
            "servers": {self.options.server_name: "RUNNING"},
            "stats": {"start_time": start, "stop_time": None},
            "status": "RUNNING",
        }
        self.driver.detach()
        try:
            with self._receiver_lock:
                if self._receiver is not None:
                    self._detector_bytes_before += self._receiver.counters()["bytes_received"]
                    self._receiver.close()
                    self._receiver = None
                self._receiver = self._open_receiver(as_dict(config))
        except RuntimeError as error:
            message = self._deployment_failure(config, str(error))
            self._deployment.update(
                {"message": message, "servers": {self.options.server_name: "FAILED"}, "status": "FAILED"}
            )
            self._deployment["stats"]["stop_time"] = time.time()
            raise RuntimeError(message) from None
        self.driver.attach(self._receiver)
        buffering = self._receiver.buffering() if isinstance(self._receiver, Receiver) else {}
        self._deployment.update(
            {
                "message": "Config applied." + self._buffering_note(buffering) + self._ring_note,
                "servers": {self.options.server_name: "SUCCESS"},
                "status": "SUCCESS",
                "receiver": buffering,
            }
        )
        self._deployment["stats"]["stop_time"] = time.time()

    def _buffering_note(self, buffering: dict) -> str:
        """What the operator should know about the receiver's buffering (real-time or not)."""
        settings = self.options.receiver
        notes = []
        if settings.realtime_priority > 0 and buffering and not buffering["realtime"]:
            notes.append(
                "The receive threads run at normal priority: real-time scheduling is not allowed "
                "(run as root or grant CAP_SYS_NICE), so a busy machine may delay them."
            )
        notes += self._priority_notes
        if buffering and buffering["socket_buffer_bytes"] < settings.rcvbuf_bytes // 2:
            notes.append(
                f"Each UDP socket got {buffering['socket_buffer_bytes'] >> 20} MiB of receive buffer, not the "
                f"{settings.rcvbuf_bytes >> 20} MiB asked (raise net.core.rmem_max or run as root)."
            )
        return "".join(" " + note for note in notes)

    def _deployment_failure(self, config: DaqConfig, error: str) -> str:
        """Why the receiver did not start, naming the config (and who holds a busy port)."""
        if "already in use" in error:
            error = describe_port_conflict(error, config.start_udp_port, config.n_modules)
        where = f"detector {config.detector_name}, config {self.options.config_file}"
        return f"The receiver ({where}) did not start: {error}"

    def _open_receiver(self, config: dict) -> ImageSource:
        """The C UDP receiver, or the ZeroMQ receiver of a bsread stream."""
        if describe(config["detector_type"]).streams_whole_images:
            return BsreadReceiver(config)
        self._ring_note = ""
        if self.options.writer_processes > 0:
            try:
                return Receiver(config, self.options.receiver, next(self._ring_names))
            except RuntimeError as error:
                if "shared memory" not in str(error):
                    raise
                self._ring_note = (
                    f" The ring buffer cannot be shared memory ({str(error).split(': ', 1)[-1]}): "
                    "this server process writes the files itself."
                )
                _log.warning("%s", self._ring_note.strip())
        return Receiver(config, self.options.receiver)

    def deployment(self) -> dict:
        return dict(self._deployment)

    # ---- writer ---------------------------------------------------------------------------
    def write_async(self, body: object) -> dict:
        with self._config_lock:
            if self._receiver is None:
                raise AdminError(f"No acquisition is possible: {self._deployment.get('message', 'no receiver')}")
            request = self._parse(body)
            config = self.get_config()
            try:
                conversion = plan_conversion(request, config, self.pedestals)
                check_results(request, config)
                self.driver.start(request, self._config, conversion)
            except (DriverError, ConversionRefused, ResultsRefused) as error:
                raise AdminError(str(error)) from None
        return self.status()

    def write_sync(self, body: object) -> dict:
        self.write_async(body)
        self.driver.wait_until_ended()
        return self.status()

    def _parse(self, body: object):
        try:
            return parse_write_request(body, self.options.data_root, self._config.writer_user_id)
        except ValueError as error:
            raise AdminError(str(error)) from None

    def trigger_writer(self, n_images: int) -> dict:
        """A gated acquisition writes the next ``n_images`` images (``POST /writer/trigger``, which checks them)."""
        try:
            return self.driver.open_gate(n_images)
        except DriverError as error:
            raise AdminError(str(error)) from None

    def stop_writer(self, body: object = None) -> dict:
        """Stop the writer; ``{"n_images": N}``: the plan ended after N images (``stop_request_images``)."""
        try:
            n_images = stop_request_images(body)
        except ValueError as error:
            raise AdminError(str(error)) from None
        self.driver.stop(n_images)
        return self.status()

    def status(self) -> dict:
        """The writer's status (with the ``compression`` of the files); ERROR with the ``reason`` while no
        receiver runs (it did not start); for a gain-switching detector with a conversion configured (or a
        pedestal taken) also the pedestal in use (None before the first)."""
        status = self.driver.status()
        if self._receiver is None and status["state"] == WriterState.READY:
            reason = self._deployment.get("message") or "the receiver is not running"
            status = {**status, "state": WriterState.ERROR, "reason": reason}
        config = self.get_config()
        converting = config.get("jungfrau_conversion") or config.get("jungfrau_gain_maps")
        if detectors.has_gain_stages(config) and (converting or self.pedestals.describe() is not None):
            status["pedestal"] = self.pedestals.describe()
        return status

    def _acquisition_ended(self, acquisition: Acquisition) -> None:
        """A complete pedestal acquisition's file becomes the pedestal in use (the message says so)."""
        info = acquisition.info
        if not info.get("pedestal"):
            return
        if acquisition.state != AcquisitionState.FINISHED or not acquisition.complete:
            acquisition.message += (
                " The pedestal is not used (the acquisition did not complete); the previous one stays."
            )
            return
        try:
            used = self.pedestals.adopt(info["output_file"], info.get("run_id"))
        except ValueError as error:
            acquisition.message += f" The pedestal is not used: {error}"
            return
        frames = used["gain_stage_frames"]
        acquisition.message += (
            f" Pedestal in use from now on: {info['output_file']} (frames of gain 0, 1, 2: {frames[0]}, {frames[1]}, "
            f"{frames[2]}; {used['flagged_pixels']} pixels flagged)."
        )
        if 0 in frames:
            acquisition.message += " Some gain stage had no frames: its pixels will hold the no-data value."

    # ---- stats and logs ---------------------------------------------------------------------
    def _counters(self) -> tuple[int, int, int, int]:
        with self._receiver_lock:
            received = self._receiver.counters()["bytes_received"] if self._receiver is not None else 0
            detector_bytes = self._detector_bytes_before + received
        d = self.driver
        return d.detector_images, detector_bytes, d.writer_images, d.writer_bytes

    def receiver_counters(self) -> dict:
        """The running receiver's counters since it started (every key of RECEIVER_COUNTERS)."""
        with self._receiver_lock:
            counters = self._receiver.counters() if self._receiver is not None else {}
        return {key: int(counters.get(key, 0)) for key in RECEIVER_COUNTERS}

    def _publish(self, kind: str, data: object) -> None:
        if self._publisher is not None:
            self._publisher.publish(kind, data)

    def close(self) -> None:
        self.simulator.stop()
        self.stats.stop()
        self.driver.close()
        with self._receiver_lock:
            if self._receiver is not None:
                self._receiver.close()
                self._receiver = None
        if self._publisher is not None:
            self._publisher.close()
        if self.image_stream is not None:
            self.image_stream.close()
        if self.preview.stream is not None:
            self.preview.stream.close()
