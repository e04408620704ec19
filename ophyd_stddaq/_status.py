"""Progress: Status objects that follow the DAQ status and report images written to watchers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ophyd import Device
from ophyd.status import DeviceStatus
from ophyd.utils import InvalidState

from std_daq_client import StdDaqAdminException, StdDaqClient
from std_daq_client.acquisitions import AcquisitionView, find_acquisition

from ._access import DaqAccess
from ._errors import StdDaqAcquisitionError

_log = logging.getLogger("ophyd_stddaq")


class AcquisitionStatus(DeviceStatus):
    """Finishes when the acquisition writing ``output_file`` has written ``target`` images.

    With ``until_end=True`` it also waits until the acquisition has ended (the file is closed) and
    succeeds only if it ended FINISHED with ``target`` images. It fails with
    :class:`StdDaqAcquisitionError` (the DAQ's message inside) when the acquisition ends FAILED or ends
    before ``target`` images were written (e.g. "Interrupted." by a stop), and with the client's
    ``RuntimeError`` when the DAQ has been unreachable for longer than ``unreachable_timeout`` seconds.

    Watchers (:meth:`watch`, used by bluesky's progress bar) get ``current``/``target`` in ``images``.
    The object is fed by a :class:`StatusMonitor`. ``before_success`` is called with the DAQ's acquisition
    object just before the status succeeds (the device takes the event's image statistics from it).
    """

    def __init__(
        self,
        device: Device,
        output_file: str,
        *,
        target: int,
        n_images: int,
        until_end: bool,
        initial: int = 0,
        unreachable_timeout: float = 10.0,
        timeout: float | None = None,
        before_success: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.output_file = output_file
        self._before_success = before_success
        self.target = target
        self.n_images = n_images
        self.until_end = until_end
        self.initial = initial
        self.unreachable_timeout = unreachable_timeout
        self.acquisition: dict[str, Any] | None = None
        """The DAQ's acquisition object as last seen."""
        self._current = initial
        self._most_written = 0
        self._started = time.monotonic()
        self._unreachable_since: float | None = None
        super().__init__(device, timeout=timeout)

    # ------------------------------------------------------------------ progress

    def watch(self, func: Callable[..., None]) -> None:
        """Call ``func(name=, current=, initial=, target=, unit="images", precision=0, fraction=,
        time_elapsed=)`` now and on every change of the number of images written (``fraction`` is the
        part still to do, 1 → 0)."""
        with self._lock:
            self._watchers.append(func)
        func(**self._progress())

    def _progress(self) -> dict[str, Any]:
        span = self.target - self.initial
        fraction = min(max((self.target - self._current) / span, 0.0), 1.0) if span > 0 else 0.0
        return {
            "name": self.device.name,
            "current": self._current,
            "initial": self.initial,
            "target": self.target,
            "unit": "images",
            "precision": 0,
            "fraction": fraction,
            "time_elapsed": time.monotonic() - self._started,
        }

    def _settled(self) -> None:
        """Last call to the watchers, with the final count (``fraction`` 0 once done, even if failed)."""
        with self._lock:
            watchers = list(self._watchers)
        progress = {**self._progress(), "fraction": 0.0}
        for watcher in watchers:
            try:
                watcher(**progress)
            except Exception:
                _log.exception("progress watcher %r failed", watcher)

    def _report(self, n_written: int) -> None:
        if n_written == self._current:
            return
        self._current = n_written
        with self._lock:
            watchers = list(self._watchers)
        progress = self._progress()
        for watcher in watchers:
            try:
                watcher(**progress)
            except Exception:  # a broken progress display must not break the acquisition
                _log.exception("progress watcher %r failed", watcher)

    # --------------------------------------------------------- fed by the monitor

    def on_status(self, status: dict[str, Any], client: StdDaqClient) -> bool:
        """Take one DAQ status; finish if the condition is met. Returns True when no more are needed."""
        if self.done:
            return True
        self._unreachable_since = None
        acquisition = find_acquisition(client, self.output_file, status)
        if acquisition is None:
            self._fail(f"the DAQ no longer reports the acquisition writing {self.output_file}", None)
            return True
        self.acquisition = acquisition
        view = AcquisitionView(acquisition)
        n_written = view.n_written
        self._most_written = max(self._most_written, n_written)
        self._report(n_written)
        message, ended = view.message, view.ended
        if view.failed:
            self._fail(
                f"acquisition {self.output_file} FAILED ({self._most_written} of {self.n_images} images written "
                f"before): {message}",
                acquisition,
            )
        elif n_written >= self.target and (ended or not self.until_end):
            if self._before_success is not None:
                try:
                    self._before_success(acquisition)
                except Exception:  # the event's extra readings must not fail the acquisition
                    _log.exception("%s: reading the acquisition's values failed", self.device.name)
            self._finish(None)
        elif ended:
            self._fail(
                f"acquisition {self.output_file} ended after {n_written} of {self.n_images} images, "
                f"{self.target} needed (DAQ message: {message!r})",
                acquisition,
            )
        else:
            return False
        return True

    def on_error(self, error: Exception) -> bool:
        """A status poll failed; fail once the DAQ has been unreachable too long. True when done."""
        if self.done:
            return True
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        if now - self._unreachable_since < self.unreachable_timeout:
            return False
        self._finish(error)
        return True

    def __str__(self) -> str:
        text = f"{type(self).__name__}(device={self.device.name}, done={self.done}, success={self.success})"
        if self.done and not self.success and self._exception is not None:
            text += f": {self._exception}"
        return text

    __repr__ = __str__

    def _fail(self, message: str, acquisition: dict[str, Any] | None) -> None:
        self._finish(StdDaqAcquisitionError(f"{self.device.name}: {message}", acquisition))

    def _finish(self, error: Exception | None) -> None:
        try:
            if error is None:
                self.set_finished()
            else:
                self.set_exception(error)
        except InvalidState:  # finished meanwhile (timeout): the first outcome stands
            pass


class StatusMonitor:
    """One background thread that follows the DAQ status for the :class:`AcquisitionStatus` objects waiting.

    It polls ``get_status`` every ``poll_interval`` seconds while at least one status waits, and stops
    when none does. With ``redis_url`` it also subscribes to the DAQ's Redis status channel (parsed with
    ``std_daq_client.redis_parsers``): a state change published there is handled at once instead of at
    the next poll. Image counts are not published per image, so progress always comes from polling.

    Parameters
    ----------
    access:
        The device's client access (the monitor polls with a client of its own).
    poll_interval:
        Seconds between two polls.
    redis_url:
        ``redis://host:port/db`` of the Redis the DAQ publishes on, or ``None``.
    on_status:
        Called with every status seen (the device refreshes its read-only signals with it).
    """

    def __init__(
        self,
        access: DaqAccess,
        *,
        poll_interval: float = 0.05,
        redis_url: str | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._access = access
        self.poll_interval = poll_interval
        self.redis_url = redis_url
        self._on_status = on_status
        self._listeners: list[AcquisitionStatus] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self.redis_messages = 0
        """Status messages received from Redis so far (for diagnostics)."""

    def add(self, listener: AcquisitionStatus) -> None:
        """Feed ``listener`` with DAQ statuses until it is done."""
        with self._lock:
            self._listeners.append(listener)
            self._wake.set()  # a new listener is served at once, not after the current sleep
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ophyd_stddaq-monitor", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        client = self._access.new_client()
        pubsub = self._subscribe(client) if self.redis_url else None
        pushed: dict[str, Any] | None = None
        try:
            while True:
                with self._lock:
                    self._listeners = [listener for listener in self._listeners if not listener.done]
                    if not self._listeners:
                        self._thread = None
                        return
                    listeners = list(self._listeners)
                if pushed is not None:
                    self._dispatch(listeners, client, status=pushed, pushed=True)
                else:
                    try:
                        status = client.get_status()
                    except (RuntimeError, StdDaqAdminException) as error:
                        self._dispatch(listeners, client, error=error)
                    else:
                        self._dispatch(listeners, client, status=status)
                pushed, pubsub = self._wait(pubsub)
        except BaseException:
            _log.exception("the status monitor stopped unexpectedly")
            raise
        finally:
            if pubsub is not None:
                try:
                    pubsub.close()
                except Exception:
                    _log.debug("closing the Redis subscription failed", exc_info=True)
            with self._lock:  # after an unexpected exit, let the next add() start a new thread
                if self._thread is threading.current_thread():
                    self._thread = None

    def _dispatch(
        self,
        listeners: list[AcquisitionStatus],
        client: StdDaqClient,
        status: dict[str, Any] | None = None,
        error: Exception | None = None,
        pushed: bool = False,
    ) -> None:
        if status is not None:
            self._access.remember_status(status)
            if self._on_status is not None:
                try:
                    self._on_status(status)
                except Exception:
                    _log.exception("status callback failed")
        for listener in listeners:
            if pushed and status["acquisition"]["info"].get("output_file") != listener.output_file:
                continue  # a message from Redis about another acquisition: only a fresh poll decides that
            try:
                if status is not None:
                    listener.on_status(status, client)
                else:
                    listener.on_error(error)
            except Exception as failure:  # e.g. the acquisition log could not be read
                listener.on_error(failure)

    # ------------------------------------------------------------------ Redis

    def _subscribe(self, client: StdDaqClient) -> Any:
        try:
            import redis

            from std_daq_client.redis_parsers import channel

            pubsub = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2).pubsub()
            pubsub.subscribe(channel(client.get_config()["detector_name"], "status"))
            return pubsub
        except Exception as error:  # Redis is an optimisation: polling goes on without it
            _log.warning("not listening on Redis %s (%s); polling the REST API only", self.redis_url, error)
            return None

    def _wait(self, pubsub: Any) -> tuple[dict[str, Any] | None, Any]:
        """Sleep one poll interval, or less if Redis brings a status. Returns (status or None, pubsub)."""
        if self._wake.is_set():
            self._wake.clear()
            return None, pubsub
        if pubsub is None:
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            return None, None
        try:
            from std_daq_client.redis_parsers import parse_status

            message = pubsub.get_message(timeout=self.poll_interval)
            if message is None or message.get("type") != "message":
                return None, pubsub
            status = parse_status(message)
            self.redis_messages += 1
            return status, pubsub
        except Exception as error:
            _log.warning("reading Redis failed (%s); polling the REST API only", error)
            try:
                pubsub.close()
            except Exception:
                _log.debug("closing the Redis subscription failed", exc_info=True)
            time.sleep(self.poll_interval)
            return None, None
