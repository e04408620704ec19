"""/writer/trigger: the software trigger of a gated acquisition (write request with ``"gated": true``).

A gated acquisition writes only the images its triggers ask for, each taken (first packet) after its
trigger, so a free-running detector gives exactly one image per step of a scan.
"""

from __future__ import annotations

from typing import Annotated

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daq_server.serve.api._envelope import answer, daq_service, json_body
from daq_server.serve.errors import AdminError

blueprint = Blueprint("gate", __name__, url_prefix="/writer")


class WriterTriggerBody(BaseModel):
    """The JSON body of ``POST /writer/trigger``."""

    model_config = ConfigDict(extra="forbid")

    n_images: Annotated[int, Field(ge=1, le=1_000_000, strict=True)] = 1
    """Write the next n images taken from now on."""


@blueprint.post("/trigger")
@answer("writer", "Writer triggered.")
def trigger():
    """JSON body ``{"n_images": 1}`` (optional): write the next ``n_images`` images taken from now on."""
    body = json_body()
    if not isinstance(body, dict):
        raise AdminError('The trigger body must be a JSON object, e.g. {"n_images": 1}')
    try:
        parsed = WriterTriggerBody.model_validate(body)
    except ValidationError as error:
        item = error.errors()[0]
        field = ".".join(str(p) for p in item["loc"]) or "body"
        raise AdminError(f"{field}: {item['msg']}, not {str(item.get('input'))[:40]!r}") from None
    return daq_service().trigger_writer(parsed.n_images)
