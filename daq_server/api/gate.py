"""/writer/trigger: the software trigger of a gated acquisition (write request with ``"gated": true``).

A gated acquisition writes only the images its triggers ask for, each taken (first packet) after its
trigger, so a free-running detector gives exactly one image per step of a scan.
"""

from flask import Blueprint

from daq_server.api._envelope import answer, json_body, service
from daq_server.errors import AdminError

blueprint = Blueprint("gate", __name__, url_prefix="/writer")


@blueprint.post("/trigger")
@answer("writer", "Writer triggered.")
def trigger():
    """JSON body ``{"n_images": 1}`` (optional): write the next ``n_images`` images taken from now on."""
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"n_images"}:
        raise AdminError("The trigger body must be a JSON object with at most the field n_images")
    return service().trigger_writer(body.get("n_images", 1))
