"""/daq/live: the latest images as a multipart MJPEG stream (open it in a browser).

``?n_frames=N`` ends the stream after N pictures (default: until the client disconnects).
"""

from flask import Blueprint, Response, request

from daq_server.api._envelope import service

blueprint = Blueprint("live", __name__, url_prefix="/daq")
BOUNDARY = "std-daq-live"


@blueprint.get("/live")
def live():
    preview = service().preview
    limit = request.args.get("n_frames", default=0, type=int)

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

    return Response(stream(), mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY}")
