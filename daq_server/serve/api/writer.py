"""/writer/*: status, write_async, write_sync, stop."""

from flask import Blueprint

from daq_server.serve.api._envelope import answer, json_body, service

blueprint = Blueprint("writer", __name__, url_prefix="/writer")


@blueprint.get("/status")
@answer("writer", "Writer status.")
def status():
    return service().status()


@blueprint.post("/write_async")
@answer("writer", "Write request accepted.")
def write_async():
    return service().write_async(json_body())


@blueprint.post("/write_sync")
@answer("writer", "Acquisition ended.")
def write_sync():
    return service().write_sync(json_body())


@blueprint.post("/stop")
@answer("writer", "Writer stopped.")
def stop():
    return service().stop_writer(json_body())
