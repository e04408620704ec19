"""The answer envelope and request-body parsing shared by every resource module."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import current_app, jsonify, request
from werkzeug.exceptions import BadRequest

from daq_server.errors import AdminError
from daq_server.service import DaqService


def service() -> DaqService:
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
