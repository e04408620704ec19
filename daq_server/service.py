"""The DAQ service: config, receiver, writer driver, stats and log composed in one object.

The REST layer (``daq_server.api``) only validates HTTP input and calls this; nothing here
knows about HTTP.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from daq_server.acquisition_log import AcquisitionLog
from daq_server.bsread_receiver import BsreadReceiver
from daq_server.config import ConfigError, ConfigStore, DaqConfig, as_dict, merge_config
from daq_server.errors import AdminError
from daq_server.live_preview import LivePreview
from daq_server.receiver import ImageSource, Receiver, ReceiverSettings
from daq_server.redis_publisher import RedisPublisher
from daq_server.simulation import BuiltInSimulator
from daq_server.stats import StatsSampler
from daq_server.write_request import parse_write_request
from daq_server.writer import COMPRESSIONS
from daq_server.writer_driver import READY, DriverError, WriterDriver


@dataclass(frozen=True)
class ServerOptions:
    """How this server runs (command line), as opposed to the detector config."""

    config_file: Path
    data_root: Path
    state_dir: Path
    receiver: ReceiverSettings = ReceiverSettings()
    compression: str = "none"
    compression_threads: int = 0  # 0: one per CPU but one (daq_server.compression.default_threads)
    server_name: str = "std-daq"
    redis_url: str | None = None


class DaqService:
    def __init__(self, options: ServerOptions):
        if options.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}")
        self.options = options
        options.state_dir.mkdir(parents=True, exist_ok=True)
        self._store = ConfigStore(options.config_file)
        self._config: DaqConfig = self._store.load()
        self._config_lock = threading.Lock()  # a config change and a write request never overlap
        self._receiver_lock = threading.Lock()  # the receiver is replaced while stats read it
        self._publisher = (
            RedisPublisher(options.redis_url, lambda: self._config.detector_name) if options.redis_url else None
        )
        self.log = AcquisitionLog(options.state_dir / "acquisitions.jsonl", lambda r: self._publish("acquisition", r))
        self.preview = LivePreview()
        self.driver = WriterDriver(
            options.state_dir,
            self.log,
            lambda status: self._publish("status", status),
            self.preview.offer,
            compression_threads=options.compression_threads,
        )
        bind = options.receiver.bind_address
        self.simulator = BuiltInSimulator(host="127.0.0.1" if bind == "0.0.0.0" else bind)
        self._detector_bytes_before = 0  # bytes counted by receivers that were replaced
        self._receiver: ImageSource | None = None
        self._deployment: dict = {}
        self._deploy(self._config)
        self.stats = StatsSampler(self._counters, on_sample=lambda stats: self._publish("stats", stats))
        self.stats.start()

    # ---- config ---------------------------------------------------------------------------
    def get_config(self) -> dict:
        return as_dict(self._config)

    def set_config(self, changes: dict) -> dict:
        """Merge, validate, restart the receiver with the new config, persist it."""
        with self._config_lock:
            try:
                new = merge_config(self._config, changes)
            except ConfigError as error:
                raise AdminError(str(error)) from None
            if self.driver.state != READY:
                raise AdminError(f"The config cannot change while the writer is {self.driver.state}; stop it first.")
            old = self._config
            self.simulator.stop()  # it sends the old config's stream
            try:
                self._deploy(new)
            except RuntimeError as error:
                self._deploy(old)
                raise AdminError(f"The new config could not be applied ({error}); the old one is kept.") from None
            self._config = new
            self._store.save(new)
            self._publish("config", as_dict(new))
            return as_dict(new)

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
            self._deployment.update(
                {"message": str(error), "servers": {self.options.server_name: "FAILED"}, "status": "FAILED"}
            )
            self._deployment["stats"]["stop_time"] = time.time()
            raise
        self.driver.attach(self._receiver)
        self._deployment.update(
            {"message": "Config applied.", "servers": {self.options.server_name: "SUCCESS"}, "status": "SUCCESS"}
        )
        self._deployment["stats"]["stop_time"] = time.time()

    def _open_receiver(self, config: dict) -> ImageSource:
        """The C UDP receiver, or the ZeroMQ receiver of a bsread stream."""
        if config["detector_type"] == "bsread":
            return BsreadReceiver(config)
        return Receiver(config, self.options.receiver)

    def deployment(self) -> dict:
        return dict(self._deployment)

    # ---- writer ---------------------------------------------------------------------------
    def write_async(self, body: object) -> dict:
        with self._config_lock:
            request = self._parse(body)
            try:
                return self.driver.start(request, self.get_config(), self.options.compression)
            except DriverError as error:
                raise AdminError(str(error)) from None

    def write_sync(self, body: object) -> dict:
        self.write_async(body)
        return self.driver.wait_until_ended()

    def _parse(self, body: object):
        try:
            return parse_write_request(body, self.options.data_root, self._config.writer_user_id)
        except ValueError as error:
            raise AdminError(str(error)) from None

    def stop_writer(self) -> dict:
        return self.driver.stop()

    def status(self) -> dict:
        return self.driver.status()

    # ---- stats and logs ---------------------------------------------------------------------
    def _counters(self) -> tuple[int, int, int, int]:
        with self._receiver_lock:
            detector_bytes = self._detector_bytes_before + self.receiver_counters().get("bytes_received", 0)
        d = self.driver
        return d.detector_images, detector_bytes, d.writer_images, d.writer_bytes

    def receiver_counters(self) -> dict:
        return self._receiver.counters() if self._receiver is not None else {}

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
