"""Serve a Flask app with waitress until SIGTERM or Ctrl-C, then close what it serves."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable

from flask import Flask
from waitress import create_server


def serve(app: Flask, host: str, port: int, threads: int, program: str, close: Callable[[], None]) -> None:
    """Run until SIGTERM/SIGINT; ``close`` runs in every case. Exits with a message if the port is not free."""
    try:
        server = create_server(app, host=host, port=port, threads=threads)
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
