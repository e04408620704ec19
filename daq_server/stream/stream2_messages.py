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


def cbor_value(value: object) -> object:
    """``value`` as cbor2 encodes it: numpy arrays as tag 40 ``[dims, typed array]`` (little-endian), numpy
    scalars as Python numbers, mappings and sequences item by item (e.g. per-image results)."""
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
        typed = cbor2.CBORTag(typed_array_tag(array.dtype), array.tobytes())
        return cbor2.CBORTag(MULTI_DIM_ARRAY, [list(array.shape), typed])
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {key: cbor_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [cbor_value(item) for item in value]
    return value


def _head(major: int, value: int) -> bytes:
    """The head of a CBOR data item (RFC 8949 section 3): major type and argument."""
    if value < 24:
        return bytes([major << 5 | value])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes([major << 5 | info]) + value.to_bytes(size, "big")
    raise ValueError(f"{value} does not fit a CBOR head")


def array_head(shape: tuple[int, int], dtype: np.dtype, n_bytes: int, compressed: bool) -> bytes:
    """The CBOR of an image's tag 40 ``[dims, typed array]`` up to its ``n_bytes`` of data, which follow it:
    the raw pixels, or (``compressed``) the bitshuffle+LZ4 chunk in HDF5 framing, inside DECTRIS tag 56500
    ``["bslz4", itemsize, chunk]``. Built around the data so that a message copies it once."""
    dtype = np.dtype(dtype)
    head = _head(6, MULTI_DIM_ARRAY) + _head(4, 2) + cbor2.dumps(list(shape)) + _head(6, typed_array_tag(dtype))
    if compressed:
        head += _head(6, DECTRIS_COMPRESSION) + _head(4, 3) + cbor2.dumps("bslz4") + cbor2.dumps(dtype.itemsize)
    return head + _head(2, n_bytes)


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
    image: tuple[tuple[int, int], np.dtype, memoryview, bool],
    extra: Mapping[str, object] | None = None,
) -> bytes:
    """One ``image`` message: image ``image_id`` (0-based in the acquisition); ``image`` is (shape, dtype,
    data, compressed) as :func:`array_head` takes them, ``data`` a buffer of bytes (copied once, here).

    ``start_time`` is when the image's first packet arrived, relative to the series (``series_time``, the
    arm time); ``stop_time`` adds the exposure (``count_time`` when given, else 0), ``real_time`` is it.
    Beyond the specification: ``frame_number`` (the detector's), and ``extra`` (e.g. ``results``)."""
    start = receive_time - series_time
    fields = {
        "type": "image",
        "series_id": series_id,
        "series_unique_id": series_unique_id,
        "series_date": _date(series_time),
        "image_id": image_id,
        "frame_number": frame_number,
        "start_time": rational(start),
        "stop_time": rational(start + exposure),
        "real_time": rational(exposure),
        **(extra or {}),
    }
    fields.pop("data", None)
    encoded = cbor2.dumps(fields, datetime_as_timestamp=False, timezone=datetime.timezone.utc)
    shape, dtype, data, compressed = image
    data = memoryview(data).cast("B")
    # the map with one more item, "data" last: {"default": array} with the pixels at the very end
    pairs = encoded[len(_head(5, len(fields))) :]
    data_item = (
        cbor2.dumps("data") + _head(5, 1) + cbor2.dumps(CHANNEL) + array_head(shape, dtype, data.nbytes, compressed)
    )
    return b"".join((_head(5, len(fields) + 1), pairs, data_item, data))


def end_message(series_id: int, series_unique_id: str, images_dropped: int, images_sent: int) -> bytes:
    """The ``end`` message, with the images the stream sent and dropped (beyond the specification)."""
    message = {"type": "end", "series_id": series_id, "series_unique_id": series_unique_id,
               "images_dropped": images_dropped, "images_sent": images_sent}  # fmt: skip
    return cbor2.dumps(message)
