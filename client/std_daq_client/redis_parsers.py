"""Parsers for the DAQ's Redis PUB/SUB status streams.

The client does not talk to Redis for you; subscribe with any Redis client and pass each
message here. The parsers turn it into the same objects the REST calls return, so code does
not depend on how the server encodes messages (an implementation detail that may change).

Example with redis-py::

    import redis
    from std_daq_client.redis_parsers import channel, parse_status

    pubsub = redis.Redis(host="daq-host").pubsub()
    pubsub.subscribe(channel("JF1M", "status"))
    for message in pubsub.listen():
        if message["type"] == "message":
            status = parse_status(message)      # same dict as StdDaqClient.get_status()
"""

from __future__ import annotations

import json

KINDS = ("status", "stats", "acquisition", "config")
"""Streams published per detector: writer status, 1 Hz stats, acquisition log records, config."""


def channel(detector_name: str, kind: str) -> str:
    """The channel name of one stream of one detector (``kind`` from :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    return f"std_daq:{detector_name}:{kind}"


def all_channels(detector_name: str) -> list[str]:
    """Every channel of one detector."""
    return [channel(detector_name, kind) for kind in KINDS]


def parse_message(message: object) -> tuple[str, object]:
    """(kind, object) of a message: a redis-py message dict, or its ``data`` (bytes or str)."""
    data = message.get("data") if isinstance(message, dict) and "type" in message else message
    if isinstance(data, bytes | bytearray):
        data = data.decode()
    try:
        decoded = json.loads(data)
        return decoded["kind"], decoded["data"]
    except (TypeError, ValueError, KeyError) as error:
        raise RuntimeError(f"not a std-daq status message: {str(data)[:120]!r} ({error})") from None


def _parse(message: object, kind: str) -> object:
    got, data = parse_message(message)
    if got != kind:
        raise RuntimeError(f"expected a '{kind}' message, got '{got}'")
    return data


def parse_status(message: object) -> dict:
    """A ``status`` message as the DAQ status object (like ``get_status()``)."""
    return _parse(message, "status")


def parse_stats(message: object) -> dict:
    """A ``stats`` message as the statistics object (like ``get_stats()``)."""
    return _parse(message, "stats")


def parse_acquisition(message: object) -> dict:
    """An ``acquisition`` message as one acquisition log record (an item of ``get_logs()``)."""
    return _parse(message, "acquisition")


def parse_config(message: object) -> dict:
    """A ``config`` message as the config object (like ``get_config()``)."""
    return _parse(message, "config")
