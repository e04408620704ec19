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
from daq_server.serve.api.guards import AccessPolicy, install_guards
from daq_server.serve.service import DaqService


def create_app(service: DaqService, policy: AccessPolicy | None = None) -> Flask:
    """The Flask app of ``service``; ``policy``: token and origins (default: open, same origin only)."""
    app = Flask("daq_server")
    app.config["service"] = service
    install_guards(app, policy or AccessPolicy())
    for module in (writer, config, stats, logs, deployment, simulation, live, page, openapi, gate):
        app.register_blueprint(module.blueprint)

    install_error_envelope(app)
    return app
