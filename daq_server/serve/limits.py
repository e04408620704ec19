"""Server-side limits on a detector config: which ``writer_user_id`` may be used, and how much
memory its receiver may take. Checked before anything is allocated or applied."""

from __future__ import annotations

from daq_server.config import ConfigError
from daq_server.receive.udp_receiver import slot_bytes
from detectors import STREAM_BIT_DEPTHS, config_format, stream_dtype

MAX_USER_ID = 2**31 - 1
PREVIEW_IMAGES = 4
"""Besides the ring buffer, a few image-sized buffers (live preview, conversions) per receiver."""


def int_ranges(text: str) -> list[tuple[int, int]]:
    """``"0,3-5"`` -> [(0, 0), (3, 5)] (the command-line spelling of id lists); ValueError with the item that
    is neither an integer nor a range of two."""
    ranges = []
    for item in text.split(","):
        low, _, high = item.strip().partition("-")
        try:
            ranges.append((int(low), int(high or low)))
        except ValueError:
            raise ValueError(f"not an integer or a range such as 3-5: {item.strip()!r}") from None
    return ranges


def parse_user_id_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """``"1000-65535,0"`` -> ((1000, 65535), (0, 0)); ValueError for anything else."""
    try:
        ranges = int_ranges(text)
    except ValueError as error:
        raise ValueError(f"user ids: {error}") from None
    for first, last in ranges:
        if not 0 <= first <= last <= MAX_USER_ID:
            raise ValueError(f"user id range {first}-{last} must lie within 0 … {MAX_USER_ID}, low to high")
    return tuple(ranges)


def check_user_id(uid: int, allowed: tuple[tuple[int, int], ...] | None) -> None:
    """ConfigError unless ``uid`` lies in one of the ``allowed`` ranges (None: any valid id)."""
    if allowed is None or any(low <= uid <= high for low, high in allowed):
        return
    shown = ", ".join(f"{low}-{high}" if low != high else str(low) for low, high in allowed)
    raise ConfigError(f"Invalid config: writer_user_id {uid} is not allowed by this server (allowed: {shown})")


MIN_RING_IMAGES = 4
"""Fewest images a ring buffer holds (one being written, one being assembled, room for a late module)."""


def image_bytes(config: dict) -> int:
    """Bytes of one assembled image of ``config``."""
    if config["detector_type"] in STREAM_BIT_DEPTHS:
        per_pixel = stream_dtype(config["detector_type"], config["bit_depth"]).itemsize
    else:
        per_pixel = config_format(config).dtype.itemsize
    return config["image_pixel_height"] * config["image_pixel_width"] * per_pixel


def ring_image_bytes(config: dict) -> int:
    """Bytes one image of ``config`` takes in a ring buffer: the UDP receiver's slots start on pages."""
    one = image_bytes(config)
    return one if config["detector_type"] in STREAM_BIT_DEPTHS else slot_bytes(one)


def receiver_memory_bytes(config: dict, ring_bytes: int) -> int:
    """Memory the receiver of ``config`` allocates: its ring buffer (the images ``ring_bytes`` hold, at least
    MIN_RING_IMAGES, as ``daq_server.receive.udp_receiver`` sizes it) plus a few image buffers."""
    one = ring_image_bytes(config)
    slots = max(MIN_RING_IMAGES, ring_bytes // one)
    return (slots + PREVIEW_IMAGES) * one


def check_ring(config: dict, ring_bytes: int) -> None:
    """ConfigError if ``ring_bytes`` (``--ring-mb``) cannot hold MIN_RING_IMAGES images of ``config``: the
    ring never takes more than the operator gave it."""
    one = ring_image_bytes(config)
    if MIN_RING_IMAGES * one > ring_bytes:
        raise ConfigError(
            f"Invalid config: images of {config['image_pixel_width']} x {config['image_pixel_height']} pixels "
            f"({one / 2**20:.1f} MiB each) need a ring buffer of at least {MIN_RING_IMAGES} images, "
            f"{MIN_RING_IMAGES * one / 2**20:.0f} MiB; this server's --ring-mb is {ring_bytes / 2**20:.0f} MiB "
            f"(raise it to {-(-MIN_RING_IMAGES * one // 2**20)} or more)"
        )


def check_memory(config: dict, ring_bytes: int, limit_bytes: int) -> None:
    """ConfigError if the receiver of ``config`` would need more than ``limit_bytes``."""
    needed = receiver_memory_bytes(config, ring_bytes)
    if needed > limit_bytes:
        raise ConfigError(
            f"Invalid config: images of {config['image_pixel_width']} x {config['image_pixel_height']} pixels need "
            f"{needed / 2**20:.0f} MiB for the receiver, more than this server's memory limit of "
            f"{limit_bytes / 2**20:.0f} MiB (std_daq_server --memory-limit-mb)"
        )
