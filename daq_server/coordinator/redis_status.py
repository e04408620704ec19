"""The receiver hosts' status as they publish it on Redis (``std_daq:<name>:status``, see
``daq_server.serve.redis_publisher``): every state change reaches the coordinator as it happens."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from std_daq_client.redis_parsers import parse_status

_log = logging.getLogger("daq_server.coordinator.redis")
PATTERN = "std_daq:*:status"


class HostStatusListener:
    """Calls ``on_status(detector_name, status)`` for each status message of any detector."""

    def __init__(self, url: str, on_status: Callable[[str, dict], None]):
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._on_status = on_status
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="coordinator-redis", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(PATTERN)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None:
                        continue
                    name = message["channel"].decode().split(":")[1]
                    try:
                        self._on_status(name, parse_status(message))
                    except RuntimeError as error:
                        _log.warning("ignored a status message: %s", error)
                pubsub.close()
            except redis.RedisError as error:
                _log.warning("Redis unreachable, following the hosts by polling only: %s", error)
                self._stop.wait(2.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._redis.close()
