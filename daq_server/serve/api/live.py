"""/daq/live: the latest images as a multipart MJPEG stream (open it in a browser).

``?n_frames=N`` ends the stream after N pictures (default: until the client disconnects).
At most ``MAX_LIVE_STREAMS`` streams are open at once (each holds a request thread); one more
is refused with HTTP 429, so ``status`` and ``stop`` always find a free thread.
"""

from __future__ import annotations

import threading

from flask import Blueprint, Response, jsonify, request

from daq_server.serve.api._envelope import daq_service

blueprint = Blueprint("live", __name__, url_prefix="/daq")
BOUNDARY = "std-daq-live"
MAX_LIVE_STREAMS = 3
_streams = threading.BoundedSemaphore(MAX_LIVE_STREAMS)


@blueprint.get("/live")
def live():
    preview = daq_service().preview
    limit = request.args.get("n_frames", default=0, type=int)
    if not _streams.acquire(blocking=False):
        response = jsonify(
            {"status": "error", "message": f"{MAX_LIVE_STREAMS} live streams are open already; close one first."}
        )
        response.status_code = 429
        return response

    def stream():
        frame, sent = None, 0
        while limit <= 0 or sent < limit:
            frame, jpeg = preview.wait_jpeg(after=frame, timeout=1.0)
            yield (
                (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                    f"X-Frame-Number: {frame if frame is not None else ''}\r\n\r\n"
                ).encode()
                + jpeg
                + b"\r\n"
            )
            sent += 1

    response = Response(stream(), mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY}")
    response.call_on_close(_streams.release)  # the server closes every response, ended or disconnected
    return response
