"""/daq/config: read and change the detector config."""

from flask import Blueprint, jsonify

from daq_server.serve.api._envelope import answer, json_body, service
from daq_server.serve.errors import AdminError

blueprint = Blueprint("config", __name__, url_prefix="/daq")


@blueprint.get("/config")
@answer("config", "Current config.")
def get_config():
    return service().get_config()


@blueprint.post("/config")
def set_config():
    """The envelope's message says what the change restarted or stopped."""
    try:
        config, message = service().apply_config(json_body())
    except AdminError as error:
        return jsonify({"status": "error", "message": str(error)})
    return jsonify({"status": "ok", "message": message, "config": config})
