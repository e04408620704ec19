"""/simulation/*: drive the built-in simulated detector.

``GET /simulation/status`` reads; ``POST /simulation/start`` with a JSON body
``{"rate_hz": 100, "n_images": 0}`` (both optional; n_images 0: until stopped) and
``POST /simulation/stop`` change state (they were GET in the original API: a GET never
changes anything here).
"""

from __future__ import annotations

from typing import Annotated

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daq_server.api._envelope import answer, json_body, service
from daq_server.errors import AdminError

blueprint = Blueprint("simulation", __name__, url_prefix="/simulation")


class SimulationStartBody(BaseModel):
    """The JSON body of ``POST /simulation/start``."""

    model_config = ConfigDict(extra="forbid")

    rate_hz: Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False)] = 100.0
    """Images per second."""
    n_images: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    """Images to send, then stop (0: until stopped)."""


def _start_body() -> SimulationStartBody:
    body = json_body()
    if not isinstance(body, dict):
        raise AdminError('The body of /simulation/start must be a JSON object, e.g. {"rate_hz": 100}')
    try:
        return SimulationStartBody.model_validate(body)
    except ValidationError as error:
        item = error.errors()[0]
        field = ".".join(str(p) for p in item["loc"]) or "body"
        raise AdminError(f"{field}: {item['msg']}, not {str(item.get('input'))[:40]!r}") from None


@blueprint.get("/status")
@answer("simulator", "Simulated detector status.")
def status():
    return service().simulator.status()


@blueprint.post("/start")
@answer("simulator", "Simulated detector started.")
def start():
    body = _start_body()
    return service().simulator.start(service().get_config(), body.rate_hz, body.n_images)


@blueprint.post("/stop")
@answer("simulator", "Simulated detector stopped.")
def stop():
    return service().simulator.stop()
