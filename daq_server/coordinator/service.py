"""The coordinator: one DAQ made of several receiver hosts, with the methods the REST layer calls.

It offers what ``daq_server.serve.api`` expects of a service (``status``, ``write_async``, ``write_sync``,
``stop_writer``, ``get_config``, ``apply_config``, ``deployment``, ``stats.current()``,
``log.last(n)``), so the ordinary resource modules serve it unchanged. Commands go to every host
over its REST API; the hosts' status comes from their Redis ``status`` channels when a Redis URL is
given, and from polling their ``/writer/status`` in any case (a host that stops answering is only
noticed by asking it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from daq_server.acquire.acquisition_log import AcquisitionLog
from daq_server.config import ConfigError, ConfigStore, DaqConfig, as_dict, merge_config
from daq_server.coordinator.aggregate import JoinedStats, joined_deployment
from daq_server.coordinator.hosts import HostError, HostLink
from daq_server.serve.errors import AdminError
from daq_server.serve.host_part import Part, part_config, part_name, part_of, plan_part
from daq_server.serve.redis_publisher import RedisPublisher
from daq_server.write.file_layout import HostPart, LayoutError, part_output, write_hosts_master
from daq_server.write.request import RequestError, WriteRequest, parse_write_request, stop_request_images
from std_daq_client.acquisitions import AcquisitionState, AcquisitionView, Message, WriterState

_log = logging.getLogger("daq_server.coordinator")

READY, WRITING = WriterState.READY, WriterState.WRITING
FINISHED, FAILED = AcquisitionState.FINISHED, AcquisitionState.FAILED
HOST_SILENCE_LIMIT = 3  # unanswered status polls in a row before a host counts as lost


def host_images(n_images: int) -> int:
    """Images asked of each host: more than the user's, since a host armed a little later than another
    misses the first frames the other writes; the coordinator ends the parts once they share n_images."""
    return 2 * n_images + 2000


@dataclass(frozen=True)
class CoordinatorOptions:
    config_file: Path
    data_root: Path
    state_dir: Path
    hosts: tuple[str, ...]
    redis_url: str | None = None
    poll_interval: float = 0.25


def _empty_acquisition() -> dict:
    return {
        "info": {"n_images": None, "output_file": None, "run_id": None},
        "message": Message.NO_ACQUISITION,
        "state": FINISHED,
        "stats": {"n_write_completed": 0, "n_write_requested": 0, "start_time": None, "stop_time": None},
    }


@dataclass
class _Run:
    """One acquisition across the hosts: the parts, and the last status each host reported."""

    request: WriteRequest
    parts: list[HostPart]
    names: list[str]
    """The detector name each host publishes under (``host_part.part_name``)."""
    statuses: list[dict | None]
    silent: list[int]
    complete: bool = False  # every part holds the requested frames: the hosts were stopped for that


class Coordinator:
    def __init__(self, options: CoordinatorOptions, hosts_token: str | None = None):
        if not options.hosts:
            raise ValueError("the coordinator needs at least one receiver host URL")
        self.options = options
        self.hosts = [HostLink(url, token=hosts_token) for url in options.hosts]
        options.state_dir.mkdir(parents=True, exist_ok=True)
        self._store = ConfigStore(options.config_file)
        self._config: DaqConfig = self._store.load()
        self._publisher = (
            RedisPublisher(options.redis_url, lambda: self._config.detector_name) if options.redis_url else None
        )
        self.log = AcquisitionLog(options.state_dir / "acquisitions.jsonl", lambda r: self._publish("acquisition", r))
        self.stats = JoinedStats(self.hosts)
        self._command_lock = threading.Lock()  # write, stop and config change one at a time
        self._lock = threading.RLock()
        self._ended = threading.Condition(self._lock)
        self._state = READY
        self._acquisition = _empty_acquisition()
        self._run: _Run | None = None
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._monitor = threading.Thread(target=self._monitor_loop, name="coordinator-monitor", daemon=True)
        self._monitor.start()
        self._listener = None
        if options.redis_url:
            from daq_server.coordinator.redis_status import HostStatusListener

            self._listener = HostStatusListener(options.redis_url, self._on_redis_status)

    # ---- status ---------------------------------------------------------------------------
    def status(self) -> dict:
        with self._lock:
            return {"acquisition": json.loads(json.dumps(self._acquisition)), "state": self._state}

    def _changed(self) -> None:
        self._ended.notify_all()
        self._publish("status", self.status())

    def _publish(self, kind: str, data: object) -> None:
        if self._publisher is not None:
            self._publisher.publish(kind, data)

    # ---- config -----------------------------------------------------------------------------
    def get_config(self) -> dict:
        return as_dict(self._config)

    def deployment(self) -> dict:
        return joined_deployment(self.hosts)

    def _parts(self, config: DaqConfig) -> list[Part]:
        """Each host's part of ``config`` (asked from the host); AdminError unless they tile the detector."""
        parts = []
        for host in self.hosts:
            try:
                parts.append(part_of(config, host.get("/daq/config", "config")))
            except (HostError, ConfigError) as error:
                raise AdminError(f"Receiver host {host.name}: {error}") from None
        owners: dict[int, str] = {}
        for host, part in zip(self.hosts, parts, strict=True):
            for module in part.modules:
                if module in owners:
                    raise AdminError(f"Module {module} is owned by both {owners[module]} and {host.name}.")
                owners[module] = host.name
        missing = sorted(set(range(config.n_modules)) - set(owners))
        if missing:
            raise AdminError(f"No receiver host owns module(s) {missing}; start hosts for them with --modules.")
        for i, a in enumerate(parts):
            for b in parts[i + 1 :]:
                if a.overlaps(b):
                    raise AdminError(f"The boxes of modules {a.first}-{a.last} and {b.first}-{b.last} overlap.")
        return parts

    def apply_config(self, changes: dict) -> tuple[dict, str]:
        """Merge and validate, give every host its part of the new config, then keep it."""
        with self._command_lock:
            if self._state != READY:
                raise AdminError(f"The config cannot change while the writer is {self._state}; stop it first.")
            try:
                new = merge_config(self._config, changes)
            except ConfigError as error:
                raise AdminError(str(error)) from None
            parts = self._parts(self._config)
            try:
                wanted = [part_config(new, plan_part(new, list(p.modules))) for p in parts]
            except ConfigError as error:
                raise AdminError(f"The new config cannot be split as the hosts are: {error}") from None
            done: list[tuple[HostLink, dict]] = []
            for host, part, config in zip(self.hosts, parts, wanted, strict=True):
                try:
                    host.post("/daq/config", "config", config, timeout=60)
                except HostError as error:
                    for earlier, old in done:
                        try:
                            earlier.post("/daq/config", "config", old, timeout=60)
                        except HostError as undo_error:
                            _log.error("restoring the config of %s failed: %s", earlier.name, undo_error)
                    raise AdminError(f"The new config was not applied: {error}") from None
                done.append((host, part_config(self._config, part)))
            self._config = new
            self._store.save(new)
            self._publish("config", as_dict(new))
            return as_dict(new), f"Config applied on {len(self.hosts)} receiver hosts."

    # ---- writing ------------------------------------------------------------------------------
    def write_async(self, body: object) -> dict:
        with self._command_lock:
            if self._state != READY:
                raise AdminError(
                    f"The writer is {self._state}; a new acquisition starts only when it is READY "
                    "(wait for the current one to finish or call stop)."
                )
            try:
                request = parse_write_request(body, self.options.data_root, self._config.writer_user_id)
            except RequestError as error:
                raise AdminError(str(error)) from None
            parts = self._parts(self._config)
            files = [
                HostPart(part_output(request.output, i), host.name, p.first, p.last, p.top, p.left, p.height, p.width)
                for i, (host, p) in enumerate(zip(self.hosts, parts, strict=True))
            ]
            for f in files:
                if Path(f.output.path).exists():
                    raise AdminError(f"The part file {f.output.path} exists already; choose a new output_file.")
            started: list[tuple[HostLink, HostPart]] = []
            for host, f in zip(self.hosts, files, strict=True):
                body = {
                    "output_file": f.output.path,
                    "n_images": host_images(request.n_images),
                    "run_id": request.run_id,
                }
                try:
                    host.post("/writer/write_async", "writer", body)
                except HostError as error:
                    self._abort_start(started)
                    raise AdminError(f"The acquisition did not start: {error}") from None
                started.append((host, f))
            with self._lock:
                names = [part_name(self._config.detector_name, p) for p in parts]
                self._run = _Run(request, files, names, [None] * len(files), [0] * len(files))
                self._state = WRITING
                self._acquisition = {
                    "info": request.info(),
                    "message": Message.WAITING,
                    "state": AcquisitionState.WAITING_IMAGES,
                    "stats": dict(_empty_acquisition()["stats"], start_time=time.time()),
                }
                self._changed()
            self._wake.set()
            return self.status()

    def _abort_start(self, started: list[tuple[HostLink, HostPart]]) -> None:
        """A host refused: stop the hosts that accepted and remove their (empty) part files."""
        for host, f in started:
            try:
                host.post("/writer/stop", "writer")
                Path(f.output.path).unlink(missing_ok=True)
            except (HostError, OSError) as error:
                _log.error("undoing the start on %s: %s", host.name, error)

    def write_sync(self, body: object) -> dict:
        self.write_async(body)
        with self._lock:
            self._ended.wait_for(lambda: self._state != WRITING)
            return self.status()

    def stop_writer(self, body: object = None) -> dict:
        """Stop every host (always allowed), then wait until the acquisition has ended. A stop's
        ``n_images`` is checked; the hosts are stopped without it (each holds only its part of the images)."""
        try:
            stop_request_images(body)
        except ValueError as error:
            raise AdminError(str(error)) from None
        with self._command_lock:
            self._stop_hosts()
            with self._lock:
                self._ended.wait_for(lambda: self._state != WRITING, timeout=30)
                return self.status()

    # ---- following the hosts -------------------------------------------------------------------
    def _on_redis_status(self, detector_name: str, status: dict) -> None:
        with self._lock:
            run = self._run
            if run is None:
                return
            for i, f in enumerate(run.parts):
                mine = status.get("acquisition", {}).get("info", {}).get("output_file") == f.output.path
                if mine and run.names[i] == detector_name:
                    run.statuses[i] = status  # (a late message of an earlier acquisition is not)
        self._wake.set()

    def _monitor_loop(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(self.options.poll_interval)
            self._wake.clear()
            run = self._run
            if run is None or self._state != WRITING:
                continue
            for i, host in enumerate(self.hosts):
                try:
                    run.statuses[i] = host.get("/writer/status", "writer", timeout=1.0)
                    run.silent[i] = 0
                except HostError as error:
                    run.silent[i] += 1
                    if run.silent[i] >= HOST_SILENCE_LIMIT:
                        where = f"it was writing {run.parts[i].output.name}"
                        self._finish(run, FAILED, f"{Message.ERROR_PREFIX}{error}; {where}.")
                        break
            else:
                self._follow(run)

    def _follow(self, run: _Run) -> None:
        """Join the hosts' statuses; end the acquisition when every part has ended or one failed."""
        with self._lock:
            if self._run is not run or None in run.statuses:
                return
            ended = True
            for f, status in zip(run.parts, run.statuses, strict=True):
                view = AcquisitionView(status["acquisition"])
                if view.output_file != f.output.path:
                    failure = f"{Message.ERROR_PREFIX}receiver host {f.host} lost the acquisition (was it restarted?)."
                    break
                if view.failed:
                    failure = f"{Message.ERROR_PREFIX}receiver host {f.host}: {view.message}"
                    break
                ended = ended and status["state"] != WRITING and view.ended
            else:
                failure = None
                stats = [s["acquisition"]["stats"] for s in run.statuses]
                own = self._acquisition
                whole = min(_shared_frames(run.statuses), run.request.n_images)
                own["stats"]["n_write_completed"] = whole
                own["stats"]["n_write_requested"] = min(s["n_write_requested"] for s in stats)
                if whole >= run.request.n_images and not run.complete:
                    run.complete = True
                    threading.Thread(target=self._stop_hosts, name="coordinator-complete", daemon=True).start()
                waiting = AcquisitionState.WAITING_IMAGES
                started = any(s["acquisition"]["state"] != waiting for s in run.statuses)
                if own["state"] == waiting and started:
                    own["state"], own["message"] = AcquisitionState.WRITING, Message.WRITING
                    self._changed()
        if failure:
            self._finish(run, FAILED, failure)
        elif ended:
            messages = {s["acquisition"]["message"] for s in run.statuses}
            completed = run.complete or messages == {Message.COMPLETED}
            self._finish(run, FINISHED, Message.COMPLETED if completed else Message.INTERRUPTED)

    def _finish(self, run: _Run, state: str, message: str) -> None:
        """Stop the other hosts if one failed, write the master file, record the acquisition."""
        with self._lock:
            if self._run is not run:
                return
            self._acquisition["state"] = AcquisitionState.FLUSHING_IMAGES
            self._changed()
        if state == FAILED:
            for host in self.hosts:
                try:
                    host.post("/writer/stop", "writer", timeout=2.0)
                except HostError:
                    pass
        try:
            n = write_hosts_master(run.request, as_dict(self._config), run.parts)
            written = f" The master file holds {n} whole images."
            if state == FINISHED and message == Message.COMPLETED and n < run.request.n_images:
                message = f"Completed with {n} whole images: the other frames miss in some part."
        except (LayoutError, OSError, ValueError, KeyError) as error:
            _log.error("master file %s: %s", run.request.output_file, error)
            n, written = 0, f" No master file: {error}."
            if state == FINISHED:
                state, message = FAILED, f"{Message.ERROR_PREFIX}the master file could not be written."
        with self._lock:
            acquisition = self._acquisition
            acquisition["stats"]["n_write_completed"] = n
            acquisition["state"] = state
            acquisition["message"] = message + (written if state == FAILED else "")
            acquisition["stats"]["stop_time"] = time.time()
            last = zip(run.parts, run.statuses, strict=True)
            acquisition["hosts"] = {f.host: s["acquisition"] if s else None for f, s in last}
            self._run = None
            self._state = READY
            self.log.append(json.loads(json.dumps(acquisition)))
            self._changed()

    def _stop_hosts(self) -> None:
        for host in self.hosts:
            try:
                host.post("/writer/stop", "writer")
            except HostError as error:
                _log.warning("stop: %s", error)
        self._wake.set()

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        self._monitor.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        if self._publisher is not None:
            self._publisher.close()


def _shared_frames(statuses: list[dict]) -> int:
    """Frames every part has written so far, from each host's first and last frame number."""
    ids = [s["acquisition"].get("image_ids") for s in statuses]
    if not all(ids):
        return 0
    return max(0, min(i["last"] for i in ids) - max(i["first"] for i in ids) + 1)
