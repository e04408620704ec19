"""/daq/deployment: how the last config change was applied."""

from flask import Blueprint

from daq_server.serve.api._envelope import answer, service

blueprint = Blueprint("deployment", __name__, url_prefix="/daq")


@blueprint.get("/deployment")
@answer("deployment", "Deployment status.")
def get_deployment():
    return service().deployment()
