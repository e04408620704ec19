"""The built-in simulated detector behind ``/simulation/*``: real UDP packets from the
simulator (``sim``) into this server's own receiver, for demos and commissioning without
hardware. It is a detector on the network like any other, not an image source inside the
server."""

from __future__ import annotations

import threading
import time

from daq_server.serve.errors import AdminError
from sim import SimulatedDetector

MAX_TRIGGER_IMAGES = 10_000
"""Most frames one software trigger may ask for."""

TRIGGER_RATE_HZ = 100.0
"""Default frame rate of the frames of one software trigger."""

MAX_FRAME_PERIOD_S = 1.0
"""Longest frame period of the settings (a software trigger waits for its frames: at least 1 Hz)."""


class BuiltInSimulator:
    def __init__(self, host: str = "127.0.0.1"):
        self._host = host
        self._detector: SimulatedDetector | None = None
        self._armed = False  # trigger_mode software: waits for /simulation/trigger, sends nothing by itself
        self._lock = threading.Lock()
        self.frame_period: float | None = None
        """Seconds from one frame to the next (``settings``): the rate of triggers that name none."""
        self.exposure_time: float | None = None
        """The exposure a controller set (reported; the simulated frames do not depend on it)."""

    def start(
        self, config: dict, rate_hz: float, n_images: int, content: str = "ramp", trigger_mode: str = "free"
    ) -> dict:
        """Start sending the config's modules to its ports (refused if already running).

        ``content``: ``ramp`` (default), ``photons``, ``jungfrau-raw`` or ``jungfrau-pedestal`` (see
        docs/simulator.rst).
        ``trigger_mode``: ``free`` sends by itself; ``software`` arms the simulator: it then sends
        exactly the frames each software trigger (``trigger``) asks for, and nothing else."""
        if trigger_mode not in ("free", "software"):
            raise AdminError(f"trigger_mode must be free or software, not {trigger_mode!r}")
        if not 0 < rate_hz <= 10_000:
            raise AdminError(f"rate_hz must be within 0 … 10000, not {rate_hz}")
        if n_images < 0:
            raise AdminError(f"n_images must be 0 (until stopped) or more, not {n_images}")
        with self._lock:
            if self._detector is not None and self._detector.running:
                raise AdminError("The simulated detector is running already; stop it first.")
            self._armed = trigger_mode == "software"
            if self._armed:
                return self._status_locked()
            try:
                self._detector = SimulatedDetector(
                    config,
                    rate_hz=rate_hz,
                    n_images=n_images,
                    first_frame=self._next_frame(),
                    host=self._host,
                    content=str(content),
                )
            except ValueError as error:
                raise AdminError(str(error)) from None
            self._detector.start()
            return self._status_locked()

    def settings(self, config: dict, frame_period: float | None, exposure_time: float | None) -> dict:
        """Set the frame period (s; the rate ``1 / frame_period``) and exposure time (s) of the simulated detector,
        as a controller sets a real one's ``period`` and ``exptime``. A free-running simulator sends on at the
        new rate (restarted, frame numbers counting on); software triggers without a rate use it."""
        if frame_period is not None and not 1 / 10_000 <= frame_period <= MAX_FRAME_PERIOD_S:
            raise AdminError(f"frame_period must be within 0.0001 … {MAX_FRAME_PERIOD_S} s, not {frame_period}")
        if exposure_time is not None and not 0 < exposure_time <= MAX_FRAME_PERIOD_S:
            raise AdminError(f"exposure_time must be within 0 … {MAX_FRAME_PERIOD_S} s, not {exposure_time}")
        period = frame_period if frame_period is not None else self.frame_period
        if exposure_time is not None and period is not None and exposure_time > period:
            raise AdminError(f"exposure_time {exposure_time} s is longer than the frame period {period} s")
        with self._lock:
            self.exposure_time = exposure_time if exposure_time is not None else self.exposure_time
            if frame_period is None or frame_period == self.frame_period:
                return self._status_locked()
            self.frame_period = frame_period
            running = self._detector
            if running is None or not running.running:
                return self._status_locked()
            running.stop()
            left = 0 if running.n_images == 0 else running.n_images - running.live_counters()["frames_sent"]
            if running.n_images and left <= 0:
                return self._status_locked()
            self._detector = SimulatedDetector(
                config,
                rate_hz=1 / frame_period,
                n_images=left,
                first_frame=running.first_frame + running.live_counters()["frames_sent"],
                host=self._host,
                content=running.content,
            )
            self._detector.start()
            return self._status_locked()

    def trigger(self, config: dict, n_images: int = 1, rate_hz: float | None = None) -> dict:
        """Software trigger: send exactly ``n_images`` frames now (consecutive frame numbers, at ``rate_hz``),
        then return.

        Refused while the free-running simulator sends. The answer names the frame numbers sent, so a
        controller can match each image of the file to its trigger.
        """
        if isinstance(n_images, bool) or not isinstance(n_images, int) or not 1 <= n_images <= MAX_TRIGGER_IMAGES:
            raise AdminError(f"n_images must be an integer within 1 … {MAX_TRIGGER_IMAGES}, not {n_images!r}")
        if rate_hz is None:
            rate_hz = TRIGGER_RATE_HZ if self.frame_period is None else 1 / self.frame_period
        if isinstance(rate_hz, bool) or not isinstance(rate_hz, int | float) or not 0 < rate_hz <= 10_000:
            raise AdminError(f"rate_hz must be a number within 0 … 10000, not {rate_hz!r}")
        with self._lock:
            if self._detector is not None and self._detector.running:
                raise AdminError("The simulated detector is running free; stop it before sending software triggers.")
            try:
                detector = SimulatedDetector(
                    config, rate_hz=rate_hz, n_images=n_images, first_frame=self._next_frame(), host=self._host
                )
            except ValueError as error:
                raise AdminError(str(error)) from None
            try:
                detector.run()  # a few packets per frame: sent before the answer goes out
            except RuntimeError as error:
                raise AdminError(str(error)) from None
            finally:
                self._detector = detector
            first = detector.first_frame
            frames = list(range(first, first + detector.live_counters()["frames_sent"]))
            return {
                **self._status_locked(),
                "frame_numbers": frames,
                "frame_number": frames[-1],
                "sent_at": time.time(),
            }

    def stop(self) -> dict:
        with self._lock:
            self._armed = False
            if self._detector is not None:
                self._detector.stop()
            return self._status_locked()

    def status(self) -> dict:
        with self._lock:
            return self._status_locked()

    def _next_frame(self) -> int:
        """Frame numbers keep counting across runs, as a real detector's do."""
        previous = self._detector
        return 1 if previous is None else previous.first_frame + previous.live_counters()["frames_sent"]

    def _status_locked(self) -> dict:
        detector = self._detector
        idle = "ARMED" if self._armed else "STOPPED"  # ARMED: waits for software triggers
        settings = {"frame_period": self.frame_period, "exposure_time": self.exposure_time}
        if detector is None:
            return settings | {
                "state": idle,
                "rate_hz": None,
                "n_images": None,
                "content": None,
                "frames_sent": 0,
                "error": None,
            }
        counters = detector.live_counters()
        return settings | {
            "state": "RUNNING" if detector.running else idle,
            "rate_hz": detector.rate_hz,
            "n_images": detector.n_images,
            "content": detector.content,
            "frames_sent": counters["frames_sent"],
            "packets_sent": counters["packets_sent"],
            "error": detector.error,
        }
