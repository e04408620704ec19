"""The answer envelope and request-body parsing shared by every resource module."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import BadRequest, HTTPException

from daq_server.serve.api.backend import DaqBackend
from daq_server.serve.errors import AdminError
from daq_server.serve.service import DaqService


def service() -> DaqBackend:
    """The DAQ this app serves (the server's service, or the coordinator)."""
    return current_app.config["service"]


def daq_service() -> DaqService:
    """The server's own service, for the resources only a receiver host has (simulator, preview, gate)."""
    return current_app.config["service"]


def json_body() -> object:
    """The request's JSON body; HTTP 400 if it is not JSON (an empty body counts as {})."""
    if not request.get_data():
        return {}
    try:
        return request.get_json(force=True)
    except BadRequest:
        raise BadRequest("The request body is not valid JSON.") from None


def answer(payload_key: str, message: str = "") -> Callable:
    """Wrap a handler returning the payload: ok envelope, or error envelope on AdminError."""

    def decorate(handler: Callable) -> Callable:
        @wraps(handler)
        def wrapper(*args, **kwargs):
            try:
                payload = handler(*args, **kwargs)
            except AdminError as error:
                return jsonify({"status": "error", "message": str(error)})
            return jsonify({"status": "ok", "message": message or "OK", payload_key: payload})

        return wrapper

    return decorate


def install_error_envelope(app: Flask) -> None:
    """Answer what is not an API request (unknown path, bad body, a bug) with a JSON ``message`` too."""
    log = logging.getLogger(app.name)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        response = jsonify({"status": "error", "message": f"{error.code} {error.name}: {error.description}"})
        response.status_code = error.code or 500
        return response

    @app.errorhandler(Exception)
    def server_bug(error: Exception):
        log.exception("unhandled error")
        response = jsonify({"status": "error", "message": f"Internal server error: {error}"})
        response.status_code = 500
        return response
