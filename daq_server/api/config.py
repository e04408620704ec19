"""/daq/config: read and change the detector config."""

from flask import Blueprint

from daq_server.api._envelope import answer, json_body, service

blueprint = Blueprint("config", __name__, url_prefix="/daq")


@blueprint.get("/config")
@answer("config", "Current config.")
def get_config():
    return service().get_config()


@blueprint.post("/config")
@answer("config", "Config applied.")
def set_config():
    return service().set_config(json_body())
