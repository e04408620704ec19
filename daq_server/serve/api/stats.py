"""/daq/stats: detector and writer throughput, aggregated over the last second."""

from flask import Blueprint

from daq_server.serve.api._envelope import answer, service

blueprint = Blueprint("stats", __name__, url_prefix="/daq")


@blueprint.get("/stats")
@answer("stats", "Statistics of the last second.")
def get_stats():
    return service().stats.current()
