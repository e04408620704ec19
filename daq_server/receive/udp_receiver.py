"""Python face of the C receiver (``csrc/``, built by cffi as ``daq_server.receive._receiver``).

The C side receives every module's UDP stream in its own threads (no GIL), assembles
images into a pre-faulted ring buffer and queues completed slots. Here a completed slot is
seen as a numpy array that *views* the ring buffer memory (no copy); it must be released
before the receiver can reuse the slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

import detectors
from daq_server.receive._receiver import ffi, lib
from daq_server.receive.image_source import ImageSource, ReceivedImage
from detectors import detector_format

__all__ = ["ImageSource", "ReceivedImage", "Receiver", "ReceiverSettings", "detector_format", "check_geometry"]

MAX_MODULES = detectors.MAX_MODULES
"""Modules (UDP streams) one receiver assembles."""


@dataclass(frozen=True)
class ReceiverSettings:
    """Host-side settings of the receiver, independent of the detector config."""

    bind_address: str = "0.0.0.0"
    ring_bytes: int = 1 << 30
    """Memory granted to the ring buffer: as many images as fit (its seconds of data follow from the rate)."""
    idle_timeout_ms: int = 50
    stale_timeout_ms: int = 500
    rcvbuf_bytes: int = 256 << 20
    """Kernel receive buffer asked for each module's socket (as root beyond net.core.rmem_max)."""
    pin_threads: bool = False
    realtime_priority: int = 0
    """> 0: the receive threads ask for SCHED_FIFO at this priority (needs root or CAP_SYS_NICE)."""


def _c_config(config: dict, settings: ReceiverSettings, image_bytes: int = 0):
    cfg = ffi.new("rx_config *")
    cfg.detector_kind = detectors.kind(config["detector_type"])
    cfg.bit_depth = int(config["bit_depth"])
    cfg.n_modules = int(config["n_modules"])
    cfg.start_udp_port = int(config["start_udp_port"])
    cfg.bind_address = (config.get("receiver_address") or settings.bind_address).encode()
    for i, address in enumerate(detector_addresses(config)):
        cfg.detector_addresses[i] = address.encode()
    cfg.image_width = int(config["image_pixel_width"])
    cfg.image_height = int(config["image_pixel_height"])
    for i in range(cfg.n_modules):
        for k, value in enumerate(config["module_positions"].get(str(i), ())):
            cfg.module_positions[4 * i + k] = int(value)
    # never more than ring_bytes
    cfg.n_slots = max(1, settings.ring_bytes // slot_bytes(image_bytes)) if image_bytes else 1
    cfg.idle_timeout_ms = settings.idle_timeout_ms
    cfg.stale_timeout_ms = settings.stale_timeout_ms
    cfg.rcvbuf_bytes = settings.rcvbuf_bytes
    cfg.pin_threads = int(settings.pin_threads)
    cfg.realtime_priority = settings.realtime_priority
    return cfg


def slot_bytes(image_bytes: int) -> int:
    """Bytes one ring slot takes: its image's, rounded up to a page (slots start on pages, for O_DIRECT)."""
    return -(-image_bytes // lib.RX_SLOT_ALIGN) * lib.RX_SLOT_ALIGN


def detector_addresses(config: dict) -> list[str]:
    """The source address each module's packets must come from ("" = any), from ``detector_address``."""
    address = config.get("detector_address")
    n = int(config["n_modules"])
    if not address:
        return [""] * n
    return [address] * n if isinstance(address, str) else list(address)


def check_geometry(config: dict) -> None:
    """Check module_positions against the image and each other; ValueError with the reason."""
    cfg = _c_config(config, ReceiverSettings())
    err = ffi.new("char[512]")
    if lib.rx_check_config(cfg, err, len(err)) != 0:
        raise ValueError(ffi.string(err).decode())


class Receiver:
    """The running C receiver for one detector config."""

    def __init__(self, config: dict, settings: ReceiverSettings | None = None, shared_memory_name: str = ""):
        """``shared_memory_name`` ("/name"): the ring buffer is that POSIX shared memory object, which
        writer processes map (``daq_server.write.writer_loop``); "" keeps it private to this process."""
        settings = settings or ReceiverSettings()
        fmt = detector_format(
            config["detector_type"], config["bit_depth"], config["image_pixel_width"], config["image_pixel_height"]
        )
        self.shape = (int(config["image_pixel_height"]), int(config["image_pixel_width"]))
        self.dtype = np.dtype(fmt.dtype)
        self.image_bytes = self.shape[0] * self.shape[1] * self.dtype.itemsize
        if settings.ring_bytes < 4 * self.image_bytes:  # the server refuses such a config first (limits.check_ring)
            raise RuntimeError(f"a ring buffer of {settings.ring_bytes >> 20} MiB holds fewer than 4 images")
        cfg = _c_config(config, settings, self.image_bytes)
        cfg.shm_name = shared_memory_name.encode()
        self.shared_memory_name = shared_memory_name
        self.n_slots = cfg.n_slots
        err = ffi.new("char[512]")
        self._rx = lib.rx_start(cfg, err, len(err))
        if self._rx == ffi.NULL:
            raise RuntimeError(f"receiver did not start: {ffi.string(err).decode()}")
        self.slot_bytes = int(lib.rx_slot_bytes(self._rx))
        """Bytes from one slot's start to the next in the shared memory (writer processes map it so)."""
        self._image = ffi.new("rx_image *")

    def close(self) -> None:
        """Stop the receive threads and unmap the ring buffer (release every image first)."""
        if self._rx is not None:
            lib.rx_stop(self._rx)
            self._rx = None

    def next_image(self, timeout: float = 0.1) -> ReceivedImage | None:
        """Wait up to ``timeout`` seconds for the next assembled image."""
        if not lib.rx_next_image(self._rx, int(timeout * 1000), self._image):
            return None
        img = self._image
        data = np.frombuffer(ffi.buffer(img.data, img.data_bytes), dtype=self.dtype).reshape(self.shape)
        return ReceivedImage(
            slot=img.slot,
            frame_number=int(img.frame_number),
            n_missing_packets=int(img.n_missing_packets),
            detector_timestamp=int(img.detector_timestamp),
            receive_time=float(img.receive_time),
            data=data,
        )

    def release(self, image: ReceivedImage) -> None:
        """Give the image's slot back to the receiver."""
        lib.rx_release(self._rx, image.slot)

    @contextmanager
    def images(self, timeout: float = 0.1) -> Iterator[ReceivedImage | None]:
        """``with rx.images() as image:`` -- the next image (or None), released on exit."""
        image = self.next_image(timeout)
        try:
            yield image
        finally:
            if image is not None:
                self.release(image)

    @property
    def realtime(self) -> bool:
        """Do the receive threads run with real-time (SCHED_FIFO) priority?"""
        return bool(lib.rx_realtime(self._rx))

    def buffering(self) -> dict:
        """How much the receiver can hold while the writer is behind: ring images and bytes, the socket
        buffer the kernel granted each module, and whether the receive threads run real-time."""
        return {
            "ring_images": self.n_slots,
            "ring_bytes": self.n_slots * self.slot_bytes,
            "socket_buffer_bytes": int(lib.rx_socket_buffer_bytes(self._rx)),
            "realtime": self.realtime,
        }

    def counters(self) -> dict[str, int]:
        """The receiver's own counters (packets, lost, foreign, images …) since start."""
        out = ffi.new("rx_counters *")
        lib.rx_get_counters(self._rx, out)
        return {name: int(getattr(out, name)) for name, _ in ffi.typeof("rx_counters").fields}
