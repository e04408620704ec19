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
    return service().simulator.start(service().get_config(), rate, n_images)


@blueprint.post("/trigger")
@answer("simulator", "Simulated detector triggered.")
def trigger():
    """Software trigger: JSON body ``{"n_images": 1, "rate_hz": 100}`` (both optional); the frames are sent
    before the answer."""
    body = request.get_json(silent=True)
    if body is None and request.get_data():
        raise AdminError('The trigger body must be JSON, e.g. {"n_images": 1}')
    body = {} if body is None else body
    if not isinstance(body, dict) or set(body) - {"n_images", "rate_hz"}:
        raise AdminError("The trigger body must be a JSON object with at most the fields n_images and rate_hz")
    options = {key: body[key] for key in ("n_images", "rate_hz") if key in body}
    return service().simulator.trigger(service().get_config(), **options)


@blueprint.get("/stop")
@answer("simulator", "Simulated detector stopped.")
def stop():
    return service().simulator.stop()
