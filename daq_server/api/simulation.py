"""/simulation/*: drive the built-in simulated detector (GET, as in the original API)."""

from flask import Blueprint, request

from daq_server.api._envelope import answer, service
from daq_server.errors import AdminError

blueprint = Blueprint("simulation", __name__, url_prefix="/simulation")


def _number(name: str, default: float, kind: type) -> float:
    try:
        return kind(request.args.get(name, default))
    except ValueError:
        raise AdminError(f"{name} must be a number, not {request.args.get(name)!r}") from None


@blueprint.get("/status")
@answer("simulator", "Simulated detector status.")
def status():
    return service().simulator.status()


@blueprint.get("/start")
@answer("simulator", "Simulated detector started.")
def start():
    rate = _number("rate_hz", 100.0, float)
    n_images = int(_number("n_images", 0, int))
    content = (request.get_json(silent=True) or {}).get("content") or request.args.get("content", "ramp")
    return service().simulator.start(service().get_config(), rate, n_images, content=content)


@blueprint.get("/stop")
@answer("simulator", "Simulated detector stopped.")
def stop():
    return service().simulator.stop()
