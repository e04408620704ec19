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


class BuiltInSimulator:
    def __init__(self, host: str = "127.0.0.1"):
        self._host = host
        self._detector: SimulatedDetector | None = None
        self._armed = False  # trigger_mode software: waits for /simulation/trigger, sends nothing by itself
        self._lock = threading.Lock()

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

    def trigger(self, config: dict, n_images: int = 1, rate_hz: float = TRIGGER_RATE_HZ) -> dict:
        """Software trigger: send exactly ``n_images`` frames now (consecutive frame numbers, at ``rate_hz``),
        then return.

        Refused while the free-running simulator sends. The answer names the frame numbers sent, so a
        controller can match each image of the file to its trigger.
        """
        if isinstance(n_images, bool) or not isinstance(n_images, int) or not 1 <= n_images <= MAX_TRIGGER_IMAGES:
            raise AdminError(f"n_images must be an integer within 1 … {MAX_TRIGGER_IMAGES}, not {n_images!r}")
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
        if detector is None:
            return {
                "state": idle,
                "rate_hz": None,
                "n_images": None,
                "content": None,
                "frames_sent": 0,
                "error": None,
            }
        counters = detector.live_counters()
        return {
            "state": "RUNNING" if detector.running else idle,
            "rate_hz": detector.rate_hz,
            "n_images": detector.n_images,
            "content": detector.content,
            "frames_sent": counters["frames_sent"],
            "packets_sent": counters["packets_sent"],
            "error": detector.error,
        }
