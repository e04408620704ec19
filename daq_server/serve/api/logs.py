"""/daq/logs/<n>: the last n acquisitions that produced a file, newest first."""

from flask import Blueprint

from daq_server.serve.api._envelope import answer, service

blueprint = Blueprint("logs", __name__, url_prefix="/daq")


@blueprint.get("/logs/<int:n_logs>")
@answer("logs", "Acquisition log, newest first.")
def get_logs(n_logs: int):
    return service().log.last(n_logs)
