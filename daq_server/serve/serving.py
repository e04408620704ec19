"""Serve a Flask app with waitress until SIGTERM or Ctrl-C, then close what it serves.

Why waitress, and how it is set up so that control always answers (``status``, ``stop``), even while
someone holds many connections open without finishing a request (docs/security.rst):

* waitress reads every connection in one asynchronous I/O thread and hands a request to a worker thread
  only once it is complete, so a half-open or slow connection costs a socket, never a worker: the workers
  stay free for control. (Thread-per-connection servers such as cheroot or werkzeug's tie a worker to each
  connection and are locked out by as many slow clients as they have threads.)
* its defaults still give up at 100 connections (then it stops accepting) and use ``select()`` (at most
  1024 descriptors): here it polls (``asyncore_use_poll``), accepts up to :data:`MAX_CONNECTIONS`, and the
  process may open that many descriptors (its soft ``RLIMIT_NOFILE`` is raised to the hard limit);
* a connection that sends nothing for :data:`IDLE_TIMEOUT_S` is closed (checked every
  :data:`CLEANUP_INTERVAL_S`): an incomplete request cannot hold its socket for long.

A per-client cap was not added: on a beamline the control clients and an abuser may share an address (the
same host, a NAT), and a cap would lock the control clients out first.
"""

from __future__ import annotations

import logging
import resource
import signal
import sys
from collections.abc import Callable

from flask import Flask
from waitress import create_server

MAX_CONNECTIONS = 8192
"""Connections held at once; beyond it new ones wait in the listen backlog until one closes."""
IDLE_TIMEOUT_S = 10
"""A connection that sends (or takes) nothing this long is closed: an unfinished request, an idle keep-alive."""
CLEANUP_INTERVAL_S = 2
_log = logging.getLogger("daq_server.serve.serving")


def allow_descriptors(wanted: int) -> int:
    """Raise this process's soft limit of open descriptors towards ``wanted`` (at most the hard limit);
    the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            _log.warning("cannot raise the open-file limit to %d: %s", target, error)
    return soft


def serve(app: Flask, host: str, port: int, threads: int, program: str, close: Callable[[], None]) -> None:
    """Run until SIGTERM/SIGINT; ``close`` runs in every case. Exits with a message if the port is not free."""
    limit = allow_descriptors(MAX_CONNECTIONS + 1024)  # the server's own files, sockets and pipes besides
    try:
        server = create_server(
            app, host=host, port=port, threads=threads, connection_limit=max(100, min(MAX_CONNECTIONS, limit - 512)),
            channel_timeout=IDLE_TIMEOUT_S, cleanup_interval=CLEANUP_INTERVAL_S, asyncore_use_poll=True,
        )  # fmt: skip
    except OSError as error:
        close()
        sys.exit(f"{program}: cannot serve on {host}:{port}: {error}")

    def shutdown(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    logging.getLogger(app.name).info("serving on http://%s:%d", host, port)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        close()
