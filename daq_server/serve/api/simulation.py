"""/simulation/*: drive the built-in simulated detector.

``GET /simulation/status`` reads; ``POST /simulation/start`` with a JSON body
``{"rate_hz": 100, "n_images": 0, "content": "ramp", "trigger_mode": "free"}`` (all optional; n_images 0:
until stopped; also as query parameters), ``POST /simulation/settings`` with ``{"frame_period": s,
"exposure_time": s}`` (a controller's period and exptime), ``POST /simulation/trigger`` and ``POST /simulation/stop``
change state (they were GET in the original API: a GET never
changes anything here).
"""

from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daq_server.serve.api._envelope import answer, daq_service, json_body
from daq_server.serve.errors import AdminError
from sim.detector import CONTENTS

CONTENT_NAMES = tuple(CONTENTS)

blueprint = Blueprint("simulation", __name__, url_prefix="/simulation")


class SimulationStartBody(BaseModel):
    """The JSON body of ``POST /simulation/start``."""

    model_config = ConfigDict(extra="forbid")

    rate_hz: Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False)] = 100.0
    """Images per second."""
    n_images: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    """Images to send, then stop (0: until stopped)."""
    content: Literal[CONTENT_NAMES] = "ramp"
    """Pixel content: the ramp formula, photon counts or Jungfrau raw words (docs/simulator.rst)."""
    trigger_mode: Literal["free", "software"] = "free"
    """free: send by itself; software: armed, send exactly the frames each ``/simulation/trigger`` asks for."""


class SimulationTriggerBody(BaseModel):
    """The JSON body of ``POST /simulation/trigger``."""

    model_config = ConfigDict(extra="forbid")

    n_images: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 1
    """Frames to send for this trigger."""
    rate_hz: Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False)] | None = None
    """Their rate (default: ``1 / frame_period`` of the settings, else 100 Hz)."""


class SimulationSettingsBody(BaseModel):
    """The JSON body of ``POST /simulation/settings`` (both optional)."""

    model_config = ConfigDict(extra="forbid")

    frame_period: Annotated[float, Field(ge=1e-4, le=1, allow_inf_nan=False)] | None = None
    """Seconds from one frame to the next (the rate is its inverse)."""
    exposure_time: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    """Seconds of exposure of each frame (at most the frame period)."""


def _body(model: type[BaseModel], route: str, from_query: bool = False) -> BaseModel:
    """The request's fields: its JSON body, or (``from_query``) also query parameters, as the original
    GET API took them (``POST /simulation/start?rate_hz=10``); the body wins where both give one."""
    body = json_body()
    if not isinstance(body, dict):
        raise AdminError(f'The body of /simulation/{route} must be a JSON object, e.g. {{"rate_hz": 100}}')
    if from_query:
        body = {key: request.args[key] for key in request.args} | body
    try:
        return model.model_validate(body)
    except ValidationError as error:
        item = error.errors()[0]
        field = ".".join(str(p) for p in item["loc"]) or "body"
        raise AdminError(f"{field}: {item['msg']}, not {str(item.get('input'))[:40]!r}") from None


@blueprint.get("/status")
@answer("simulator", "Simulated detector status.")
def status():
    return daq_service().simulator.status()


@blueprint.post("/start")
@answer("simulator", "Simulated detector started.")
def start():
    body = _body(SimulationStartBody, "start", from_query=True)
    simulator = daq_service().simulator
    return simulator.start(
        daq_service().get_config(), body.rate_hz, body.n_images, content=body.content, trigger_mode=body.trigger_mode
    )


@blueprint.post("/settings")
@answer("simulator", "Simulated detector settings applied.")
def settings():
    body = _body(SimulationSettingsBody, "settings")
    return daq_service().simulator.settings(daq_service().get_config(), body.frame_period, body.exposure_time)


@blueprint.post("/trigger")
@answer("simulator", "Simulated detector triggered.")
def trigger():
    """Software trigger: JSON body ``{"n_images": 1, "rate_hz": 100}`` (both optional); the frames are sent
    before the answer."""
    body = _body(SimulationTriggerBody, "trigger")
    return daq_service().simulator.trigger(daq_service().get_config(), n_images=body.n_images, rate_hz=body.rate_hz)


@blueprint.post("/stop")
@answer("simulator", "Simulated detector stopped.")
def stop():
    return daq_service().simulator.stop()
