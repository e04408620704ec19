"""The REST API of ``../shared/spec/rest-api.md``: one module per resource, thin handlers.

Every handled request answers HTTP 200 with ``{"status": "ok"|"error", "message", <payload>}``;
non-200 only for what is not an API request (unknown path, body not JSON, no or wrong token,
cross-site request: see ``guards``), always with a JSON ``message``. ``/openapi.json``
describes it all.
"""

from __future__ import annotations

from flask import Flask

from daq_server.serve.api import config, deployment, gate, live, logs, openapi, page, simulation, stats, writer
from daq_server.serve.api._envelope import install_error_envelope
from daq_server.serve.api.backend import DaqBackend
from daq_server.serve.api.guards import AccessPolicy, install_guards

DETECTOR_RESOURCES = (writer, config, stats, logs, deployment)
"""What makes sense for any DAQ, a whole scale-out detector included (``DaqBackend``)."""
HOST_RESOURCES = (simulation, live, page, openapi, gate)
"""What only a receiver host has: its simulated detector, its live images, its page, software triggers."""


def create_app(
    backend: DaqBackend, policy: AccessPolicy | None = None, host_resources: bool = True, name: str = "daq_server"
) -> Flask:
    """The Flask app of ``backend`` (the server's service; the coordinator with ``host_resources=False``);
    ``policy``: token and origins (default: open, same origin only)."""
    app = Flask(name)
    app.config["service"] = backend
    install_guards(app, policy or AccessPolicy())
    for module in DETECTOR_RESOURCES + (HOST_RESOURCES if host_resources else ()):
        app.register_blueprint(module.blueprint)

    install_error_envelope(app)
    return app
