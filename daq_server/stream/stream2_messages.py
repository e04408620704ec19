"""DECTRIS Stream2 messages, encoded as CBOR (pure encoding: no sockets, no state).

A Stream2 message is one CBOR map whose first key is ``type``: ``start``, ``image`` or ``end``
(the specification: DECTRIS ``documentation/stream_v2``). Arrays are RFC 8746 typed arrays inside a
tag 40 multi-dimensional array ``[dims, typed array]`` (dims row-major: ``[height, width]``). Compressed
data is the DECTRIS tag 56500 ``["bslz4", element size, bytes]`` standing for the byte string of the typed
array; its bytes are a chunk of the bitshuffle HDF5 filter (32008): the 12-byte header (big-endian total
size and block size) followed by the LZ4 blocks, which is exactly the chunk the image pipeline writes into
the file, so the stream reuses it.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

import cbor2
import numpy as np

TYPED_ARRAY_TAGS = {
    "uint8": 64,
    "<u2": 69,
    "<u4": 70,
    "<u8": 71,
    "int8": 72,
    "<i2": 77,
    "<i4": 78,
    "<i8": 79,
    "<f4": 85,
    "<f8": 86,
    ">u2": 65,
    ">u4": 66,
    ">u8": 67,
    ">i2": 73,
    ">i4": 74,
    ">i8": 75,
    ">f4": 81,
    ">f8": 82,
}
"""RFC 8746 typed-array tags by numpy dtype (``dtype.str``, or the name for one-byte types)."""
MULTI_DIM_ARRAY = 40
DECTRIS_COMPRESSION = 56500
TIME_BASE = 1_000_000
"""Denominator of the Rational times (``start_time``, ``stop_time``, ``real_time``): microseconds."""
CHANNEL = "default"
"""The one channel of our images (Stream2 sends a map channel -> image)."""


def typed_array_tag(dtype: np.dtype) -> int:
    """The RFC 8746 tag of an array of ``dtype``; ValueError for a type it has none for."""
    dtype = np.dtype(dtype)
    key = dtype.name if dtype.itemsize == 1 else dtype.str  # e.g. "<u2": numpy spells the byte order out
    try:
        return TYPED_ARRAY_TAGS[key]
    except KeyError:
        raise ValueError(f"no RFC 8746 typed array for {dtype}") from None


def image_array(shape: tuple[int, int], dtype: np.dtype, data: bytes | memoryview, compressed: bool) -> cbor2.CBORTag:
    """Tag 40 ``[dims, typed array]`` of an image: ``data`` the raw pixels, or (``compressed``) its
    bitshuffle+LZ4 chunk in HDF5 framing, sent as DECTRIS tag 56500 ``["bslz4", itemsize, chunk]``."""
    dtype = np.dtype(dtype)
    payload: object = bytes(data)
    if compressed:
        payload = cbor2.CBORTag(DECTRIS_COMPRESSION, ["bslz4", dtype.itemsize, payload])
    return cbor2.CBORTag(MULTI_DIM_ARRAY, [list(shape), cbor2.CBORTag(typed_array_tag(dtype), payload)])


def rational(seconds: float) -> list[int]:
    """A Stream2 Rational ``[numerator, denominator]`` of ``seconds`` in microseconds (never negative)."""
    return [max(0, round(seconds * TIME_BASE)), TIME_BASE]


def _date(unix_time: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(unix_time, datetime.timezone.utc)


def start_message(series_id: int, series_unique_id: str, arm_time: float, fields: Mapping[str, object]) -> bytes:
    """The ``start`` message: ``fields`` are its Stream2 keys (geometry, NXmx values, ``number_of_images``,
    ``image_dtype``, ``compression``, ``user_data`` …); None values are left out."""
    message = {"type": "start", "series_id": series_id, "series_unique_id": series_unique_id,
               "arm_date": _date(arm_time), "channels": [CHANNEL]}  # fmt: skip
    message.update({key: value for key, value in fields.items() if value is not None})
    return cbor2.dumps(message, datetime_as_timestamp=False, timezone=datetime.timezone.utc)


def image_message(
    series_id: int,
    series_unique_id: str,
    series_time: float,
    image_id: int,
    frame_number: int,
    receive_time: float,
    exposure: float,
    array: cbor2.CBORTag,
    extra: Mapping[str, object] | None = None,
) -> bytes:
    """One ``image`` message: image ``image_id`` (0-based in the acquisition), ``array`` from :func:`image_array`.

    ``start_time`` is when the image's first packet arrived, relative to the series (``series_time``, the
    arm time); ``stop_time`` adds the exposure (``count_time`` when given, else 0), ``real_time`` is it.
    Beyond the specification: ``frame_number`` (the detector's), and ``extra`` (e.g. ``results``)."""
    start = receive_time - series_time
    message = {
        "type": "image",
        "series_id": series_id,
        "series_unique_id": series_unique_id,
        "series_date": _date(series_time),
        "image_id": image_id,
        "frame_number": frame_number,
        "start_time": rational(start),
        "stop_time": rational(start + exposure),
        "real_time": rational(exposure),
        "data": {CHANNEL: array},
    }
    if extra:
        message.update(extra)
    return cbor2.dumps(message, datetime_as_timestamp=False, timezone=datetime.timezone.utc)


def end_message(series_id: int, series_unique_id: str, images_dropped: int, images_sent: int) -> bytes:
    """The ``end`` message, with the images the stream sent and dropped (beyond the specification)."""
    message = {"type": "end", "series_id": series_id, "series_unique_id": series_unique_id,
               "images_dropped": images_dropped, "images_sent": images_sent}  # fmt: skip
    return cbor2.dumps(message)
