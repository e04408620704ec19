"""The web page for people at ``/`` and the latest image it shows.

``GET /`` answers the page (plain HTML + JavaScript from ``daq_server/serve/static``, no build step, nothing
fetched from elsewhere); its script polls the JSON endpoints every second. ``GET /ui/<file>`` serves the
page's script and style sheet. ``GET /daq/live/latest.png?scale=linear|log`` answers the latest image as
a colour PNG; the headers ``X-Frame-Number`` (empty before the first image), ``X-Scale-Min`` and
``X-Scale-Max`` (pixel values at both ends of the colour scale) describe it.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, jsonify, request, send_from_directory

from daq_server.serve.api._envelope import daq_service
from daq_server.serve.preview_render import SCALES, render

STATIC = Path(__file__).resolve().parent.parent / "static"

blueprint = Blueprint("page", __name__)


@blueprint.get("/")
def page():
    return send_from_directory(STATIC, "index.html", max_age=0)


@blueprint.get("/ui/<path:name>")
def page_file(name: str):
    return send_from_directory(STATIC, name, max_age=0)


@blueprint.get("/daq/live/latest.png")
def latest_image():
    scale = request.args.get("scale", "linear")
    if scale not in SCALES:
        return jsonify({"status": "error", "message": f"scale must be one of {', '.join(SCALES)}, not {scale!r}"}), 400
    frame, pixels = daq_service().preview.latest()
    image = render(pixels, scale)
    response = Response(image.png, mimetype="image/png")
    response.headers["X-Frame-Number"] = "" if frame is None else str(frame)
    response.headers["X-Scale-Min"] = f"{image.low:g}"
    response.headers["X-Scale-Max"] = f"{image.high:g}"
    response.headers["Cache-Control"] = "no-store"
    return response
