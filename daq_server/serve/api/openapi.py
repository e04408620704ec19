"""/openapi.json: an OpenAPI 3.1 description of the REST API.

Request bodies are described by the JSON schemas of the pydantic models that validate them
(``DaqConfig``, ``WriteRequestBody``, ``SimulationStartBody``), so the description and the
validation cannot drift apart. A module adding a route adds its operation to ``OPERATIONS``.
"""

from __future__ import annotations

import copy
from functools import cache

from flask import Blueprint, jsonify
from pydantic import BaseModel

from daq_server import __version__
from daq_server.config import DaqConfig
from daq_server.serve.api.gate import WriterTriggerBody
from daq_server.serve.api.simulation import SimulationSettingsBody, SimulationStartBody, SimulationTriggerBody
from daq_server.write.request import StopRequestBody, WriteRequestBody

blueprint = Blueprint("openapi", __name__)
REF = "#/components/schemas/{model}"


def _schema(model: type[BaseModel], partial: bool = False) -> tuple[dict, dict]:
    """(schema, definitions it refers to) of a model; ``partial``: no field required."""
    schema = copy.deepcopy(model.model_json_schema(ref_template=REF))
    definitions = schema.pop("$defs", {})
    if partial:
        schema.pop("required", None)
        schema["title"] = f"{model.__name__}Change"
        schema["description"] = "The fields to change; the others keep their value."
    return schema, definitions


def _body(name: str) -> dict:
    return {"required": False, "content": {"application/json": {"schema": {"$ref": REF.format(model=name)}}}}


def _op(summary: str, payload: str | None = None, body: str | None = None, params: list | None = None) -> dict:
    """One operation answering the envelope (with ``payload`` beside status and message)."""
    properties = {"status": {"type": "string", "enum": ["ok", "error"]}, "message": {"type": "string"}}
    if payload:
        properties[payload] = {}
    envelope = {"type": "object", "properties": properties, "required": ["status", "message"]}
    json_answer = {"content": {"application/json": {"schema": envelope}}}
    operation = {
        "summary": summary,
        "responses": {
            "200": {"description": "ok, or an error envelope for a refused request", **json_answer},
            "400": {"description": "body is not JSON or nested too deeply", **json_answer},
            "401": {"description": "bearer token missing or wrong", **json_answer},
            "403": {"description": "cross-site request", **json_answer},
            "404": {"description": "no such path", **json_answer},
            "405": {"description": "method not allowed", **json_answer},
            "413": {"description": "body too large", **json_answer},
            "415": {"description": "body is not application/json", **json_answer},
        },
    }
    if body:
        operation["requestBody"] = _body(body)
    if params:
        operation["parameters"] = params
    return operation


_N_LOGS = [{"name": "n_logs", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}]
_N_FRAMES = [{"name": "n_frames", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}}]

OPERATIONS: dict[str, dict[str, dict]] = {
    "/writer/status": {"get": _op("Writer and acquisition status", "writer")},
    "/writer/write_async": {"post": _op("Start an acquisition; answer at once", "writer", "WriteRequestBody")},
    "/writer/write_sync": {"post": _op("Start an acquisition; answer when it ends", "writer", "WriteRequestBody")},
    "/writer/stop": {"post": _op("Stop the acquisition (always allowed)", "writer", "StopRequestBody")},
    "/writer/trigger": {
        "post": _op("Software trigger of a gated acquisition: write the next images", "writer", "WriterTriggerBody")
    },
    "/daq/config": {
        "get": _op("The detector config", "config"),
        "post": _op("Change the detector config (merged, validated whole)", "config", "DaqConfigChange"),
    },
    "/daq/stats": {"get": _op("Throughput of the last second", "stats")},
    "/daq/logs/{n_logs}": {"get": _op("The last n acquisitions, newest first", "logs", params=_N_LOGS)},
    "/daq/deployment": {"get": _op("How the last config change was applied", "deployment")},
    "/daq/live": {
        "get": {
            "summary": "Live preview: multipart MJPEG stream (at most a few at once)",
            "parameters": _N_FRAMES,
            "responses": {
                "200": {"description": "the stream", "content": {"multipart/x-mixed-replace": {}}},
                "429": {"description": "too many live streams open"},
            },
        }
    },
    "/simulation/status": {"get": _op("Built-in simulated detector status", "simulator")},
    "/simulation/start": {"post": _op("Start the built-in simulated detector", "simulator", "SimulationStartBody")},
    "/simulation/stop": {"post": _op("Stop the built-in simulated detector", "simulator")},
    "/simulation/trigger": {"post": _op("Send frames now (software trigger)", "simulator", "SimulationTriggerBody")},
    "/simulation/settings": {
        "post": _op("Frame period and exposure time of the simulated detector", "simulator", "SimulationSettingsBody")
    },
    "/openapi.json": {
        "get": {"summary": "This description", "security": [], "responses": {"200": {"description": "OpenAPI"}}}
    },
}


@cache
def openapi_document() -> dict:
    """The whole OpenAPI document."""
    schemas: dict = {}
    for model, partial, name in (
        (DaqConfig, True, "DaqConfigChange"),
        (WriteRequestBody, False, "WriteRequestBody"),
        (SimulationStartBody, False, "SimulationStartBody"),
        (SimulationTriggerBody, False, "SimulationTriggerBody"),
        (SimulationSettingsBody, False, "SimulationSettingsBody"),
        (StopRequestBody, False, "StopRequestBody"),
        (WriterTriggerBody, False, "WriterTriggerBody"),
    ):
        schema, definitions = _schema(model, partial)
        schemas.update(definitions)
        schemas[name] = schema
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "std-daq REST API",
            "version": __version__,
            "description": "Detector DAQ control. Answers are {status, message, <payload>} envelopes; "
            "see docs/server.rst and docs/security.rst.",
        },
        "paths": OPERATIONS,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }


@blueprint.get("/openapi.json")
def openapi_json():
    return jsonify(openapi_document())
