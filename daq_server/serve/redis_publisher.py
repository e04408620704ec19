"""Status streams on Redis PUB/SUB (optional: only with ``--redis-url``).

Channels, per detector: ``std_daq:<detector_name>:status`` (every writer/acquisition state
change), ``:stats`` (1 Hz), ``:acquisition`` (each record added to the acquisition log) and
``:config`` (each applied config). Each message is JSON: ``{"kind", "detector_name", "time",
"data"}`` where ``data`` is exactly the object the matching REST call returns. The format is
an implementation detail: clients use ``std_daq_client.redis_parsers``.

Publishing never blocks the DAQ: messages go through a bounded queue to one thread; while
Redis is unreachable they are dropped (and that is logged once per outage).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable

import redis

from std_daq_client.redis_parsers import channel  # channel names: defined once, beside the parsers

_log = logging.getLogger("daq_server.redis")


class RedisPublisher:
    def __init__(self, url: str, detector_name: Callable[[], str]):
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._detector_name = detector_name
        self._queue: queue.Queue = queue.Queue(maxsize=10_000)
        self._thread = threading.Thread(target=self._run, name="redis-publisher", daemon=True)
        self._thread.start()

    def publish(self, kind: str, data: object) -> None:
        """Queue a message; dropped if the queue is full (Redis far behind or gone)."""
        message = {"kind": kind, "detector_name": self._detector_name(), "time": time.time(), "data": data}
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            pass

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._redis.close()

    def _run(self) -> None:
        healthy = True
        while (message := self._queue.get()) is not None:
            try:
                self._redis.publish(channel(message["detector_name"], message["kind"]), json.dumps(message))
                if not healthy:
                    _log.warning("Redis reachable again; publishing resumed")
                healthy = True
            except redis.RedisError as error:
                if healthy:
                    _log.warning("Redis unreachable, status messages are dropped: %s", error)
                healthy = False
