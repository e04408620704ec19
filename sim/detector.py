"""The simulated detector: every module's UDP packet stream, sent from C with sendmmsg.

Uses the same JSON config file as the server (detector_type, bit_depth, n_modules,
start_udp_port). Pixel content is deterministic, see :func:`module_pixels`.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field

import numpy as np

import detectors
from sim._sender import ffi, lib
from sim.bsread_source import run_bsread_source

CONTENTS = {
    "ramp": lib.SIM_CONTENT_RAMP,
    "photons": lib.SIM_CONTENT_PHOTONS,
    "jungfrau-raw": lib.SIM_CONTENT_JUNGFRAU_RAW,
    "jungfrau-pedestal": lib.SIM_CONTENT_JUNGFRAU_PEDESTAL,
}
"""Pixel content the simulator sends: the ramp formula, photon counts, the same photon counts as Jungfrau
raw words, Jungfrau pedestal-mode dark frames (csrc/sim/sim_content.c, csrc/sim/sim_jungfrau.c)."""
GAIN_CONTENTS = ("jungfrau-raw", "jungfrau-pedestal")
"""Contents only a detector with gain-switching pixels (Jungfrau) sends."""
DEFAULT_FLUX = 0.2
"""Photons per pixel per frame of the realistic contents (background level; spots and rings add to it)."""
DEFAULT_NOISE = 8.0
"""Noise sigma (ADU) of the Jungfrau contents in gain 0; a quarter of it in gain 1, an eighth in gain 2."""
DEFAULT_PHOTON_ENERGY_KEV = 12.4
"""The energy of jungfrau-raw's photons."""


def _format(config: dict) -> detectors.DetectorFormat:
    try:
        return detectors.config_format(config)
    except ValueError as error:
        raise ValueError(f"the simulator cannot emulate this detector: {error}") from None


def module_geometry(config: dict) -> tuple[int, int]:
    """(width, height) in pixels of one module (Eiger: a half-module port; GigaFrost: a stream)."""
    fmt = _format(config)
    return fmt.module_width, fmt.module_height


def content_spec(
    content: str, seed: int, flux: float, noise: float, photon_energy_kev: float, broken_switch: float = 0.0
):
    """The C description of a realistic content (``sim_content_spec``)."""
    spec = ffi.new("sim_content_spec *")
    spec.content = CONTENTS[content]
    spec.seed = seed
    spec.flux = flux
    spec.noise = noise
    spec.photon_energy_kev = photon_energy_kev
    spec.broken_switch = broken_switch
    return spec


def module_pixels(
    frame: int,
    module: int,
    config: dict,
    content: str = "ramp",
    seed: int = 0,
    flux: float = DEFAULT_FLUX,
    noise: float = DEFAULT_NOISE,
    photon_energy_kev: float = DEFAULT_PHOTON_ENERGY_KEV,
    broken_switch: float = 0.0,
) -> np.ndarray:
    """The pixels the simulator sends for one module frame, as (height, width) in the image dtype.

    ``ramp``: pixel p (row-major) of module m in frame f is ``(p + 37 m + 101 f)`` masked to the
    bit depth on the wire (GigaFrost: 12 bit). ``photons``, ``jungfrau-raw`` and ``jungfrau-pedestal``:
    detector-like frames, deterministic from (seed, flux, noise, photon energy, frame, module), see
    docs/simulator.rst and docs/jungfrau.rst.
    """
    fmt = _format(config)
    out = np.empty((fmt.module_height, fmt.module_width), dtype=fmt.wire_dtype)
    if content == "ramp":
        lib.sim_module_pixels(frame, module, fmt.wire_bit_depth, out.size, ffi.from_buffer(out))
    else:
        height, width = out.shape
        spec = content_spec(content, seed, flux, noise, photon_energy_kev, broken_switch)
        lib.sim_content_module_pixels(spec, frame, module, fmt.wire_bit_depth, width, height, ffi.from_buffer(out))
    return out


def check_content_values(flux: float, noise: float, photon_energy_kev: float, broken_switch: float = 0.0) -> None:
    """ValueError unless the realistic content's numbers are within the simulator's range."""
    if not 0 <= flux <= 1e4:
        raise ValueError(f"flux must be 0 to 10000 photons per pixel per frame, not {flux}")
    if not 0 <= noise <= 1000:
        raise ValueError(f"noise must be 0 to 1000 ADU, not {noise}")
    if not 1 <= photon_energy_kev <= 100:
        raise ValueError(f"photon energy must be 1 to 100 keV, not {photon_energy_kev}")
    if not 0 <= broken_switch <= 1:
        raise ValueError(f"the broken-switch fraction must be 0 to 1, not {broken_switch}")


def _check_module_hosts(module_hosts: list[str], n_modules: int, bsread: bool) -> None:
    """ValueError unless ``module_hosts`` is empty or one IPv4 address per module."""
    if not module_hosts:
        return
    if bsread:
        raise ValueError("module hosts are for UDP detectors; a bsread source binds bsread_address")
    if len(module_hosts) != n_modules:
        raise ValueError(f"module hosts: {len(module_hosts)} addresses given, the config has {n_modules} modules")
    for address in module_hosts:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise ValueError(f"module hosts: '{address}' is not an IPv4 address") from None


@dataclass
class SimulatedDetector:
    """Sends ``n_images`` frames (0: until stopped) of every module at ``rate_hz`` (0: max)."""

    config: dict
    rate_hz: float = 100.0
    n_images: int = 0
    first_frame: int = 1
    host: str = "127.0.0.1"
    module_hosts: list[str] = field(default_factory=list)
    """Scale-out: module i sends to ``module_hosts[i]`` (one IPv4 address per module) instead of ``host``."""
    source_address: str = ""
    """Send from this IPv4 address (the detector's own); "" lets the kernel choose."""
    loss: float = 0.0
    reorder: int = 0
    duplicate: float = 0.0
    loss_burst: int = 1
    foreign: float = 0.0
    silent_module: int = -1
    silent_after: int = 0
    restart_after: int = 0
    static_pixels: bool = False
    gso: bool = False
    """Benchmarks: send a module's packets as UDP segmentation offload messages (Linux 4.18+; the same
    datagrams arrive, for about half the sender's CPU; plain datagrams where the kernel cannot). UDP
    detectors only, and not with loss, duplicates or foreign datagrams (chosen per datagram)."""
    seed: int = 0
    content: str = "ramp"
    flux: float = DEFAULT_FLUX
    noise: float = DEFAULT_NOISE
    """Jungfrau contents: noise sigma in gain 0 (ADU); 0 sends the noise-free truth."""
    photon_energy_kev: float = DEFAULT_PHOTON_ENERGY_KEV
    broken_switch: float = 0.0
    """jungfrau-raw: fraction of pixels whose gain switching is broken (they send the invalid gain code 10
    where they would leave gain 0; the fault is off by default)."""
    counters: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._bsread = self.config["detector_type"] == "bsread"
        if self.content not in CONTENTS or (self._bsread and self.content != "ramp"):
            raise ValueError(f"content must be one of {', '.join(CONTENTS)} (bsread: ramp), not {self.content!r}")
        check_content_values(self.flux, self.noise, self.photon_energy_kev, self.broken_switch)
        if not self._bsread:
            module_geometry(self.config)
        if self.content in GAIN_CONTENTS and not detectors.has_gain_stages(self.config):
            raise ValueError(f"content {self.content} is for detectors with gain-switching pixels (jungfrau)")
        _check_module_hosts(self.module_hosts, int(self.config["n_modules"]), self._bsread)
        if self.gso and (self._bsread or self.loss or self.duplicate or self.foreign):
            raise ValueError("gso sends a module's packets in whole batches: for UDP detectors, and not with loss, "
                             "duplicate or foreign datagrams (chosen per datagram)")  # fmt: skip
        self._stop = ffi.new("int *")
        self._stop_event = threading.Event()  # the bsread source's stop flag
        self._counters = ffi.new("sim_counters *")  # the C loop updates it while sending
        self._bsread_counters: dict = {}
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def run(self) -> dict:
        """Send in this thread (the C loop runs without the GIL); returns the sender's counters."""
        if self._bsread:
            self._stop_event.clear()
            try:
                run_bsread_source(
                    self.config, self.rate_hz, self.n_images, self.first_frame, self._stop_event, self._bsread_counters
                )
            except (ValueError, KeyError, OSError) as error:  # zmq errors are OSErrors
                self.error = str(error)
                raise RuntimeError(f"simulator failed: {self.error}") from None
            self.counters = self.live_counters()
            return self.counters
        cfg = ffi.new("sim_config *")
        cfg.detector_kind = detectors.kind(self.config["detector_type"])
        cfg.bit_depth = int(self.config["bit_depth"])
        cfg.n_modules = int(self.config["n_modules"])
        cfg.start_udp_port = int(self.config["start_udp_port"])
        cfg.image_width = int(self.config["image_pixel_width"])
        cfg.image_height = int(self.config["image_pixel_height"])
        cfg.host = self.host.encode()
        for module, address in enumerate(self.module_hosts):
            cfg.module_hosts[module] = address.encode()
        cfg.source = self.source_address.encode()
        cfg.first_frame = self.first_frame
        cfg.n_frames = self.n_images
        cfg.rate_hz = self.rate_hz
        cfg.loss = self.loss
        cfg.reorder = self.reorder
        cfg.duplicate = self.duplicate
        cfg.loss_burst = self.loss_burst
        cfg.foreign = self.foreign
        cfg.silent_module = self.silent_module
        cfg.silent_after = self.silent_after
        cfg.restart_after = self.restart_after
        cfg.static_pixels = int(self.static_pixels)
        cfg.gso = int(self.gso)
        cfg.seed = self.seed
        cfg.content = CONTENTS[self.content]
        cfg.flux = self.flux
        cfg.noise = self.noise
        cfg.photon_energy_kev = self.photon_energy_kev
        cfg.broken_switch = self.broken_switch
        err = ffi.new("char[512]")
        self._stop[0] = 0
        rc = lib.sim_run(cfg, self._stop, self._counters, err, len(err))
        self.counters = self.live_counters()
        if rc != 0:
            self.error = ffi.string(err).decode()
            raise RuntimeError(f"simulator failed: {self.error}")
        return self.counters

    def start(self) -> None:
        """Send in a background thread."""

        def target() -> None:
            try:
                self.run()
            except RuntimeError:
                pass  # kept in self.error

        self._thread = threading.Thread(target=target, name="simulated-detector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sending after the current frame."""
        lib.sim_stop(self._stop)  # an atomic store: the C loop reads it in another thread
        self._stop_event.set()
        self.join()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def live_counters(self) -> dict:
        """Frames, packets and bytes sent so far (read while the sender runs)."""
        if self._bsread:
            counts = dict.fromkeys(("frames_sent", "packets_sent", "bytes_sent", "packets_not_sent", "foreign_sent"), 0)
            return counts | self._bsread_counters
        counters = ffi.new("sim_counters *")
        lib.sim_read_counters(self._counters, counters)  # atomic loads: the C loop may be updating them
        return {name: int(getattr(counters, name)) for name, _ in ffi.typeof("sim_counters").fields}

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
