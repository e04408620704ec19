"""The preview stream: a few images a second on a ZeroMQ PUB socket in PSI's ``array-1.0`` form, which
streamvis-style viewers read (PSI ``htypes``: ``array-1.0``; PSI std_daq's live stream sends the same).

Each message has two parts: a JSON header ``{"htype": "array-1.0", "type": "uint16", "shape": [height,
width], "frame": N, ...}`` (``shape`` row-major, ``frame`` the detector's frame number), then the image's
raw pixels (little-endian, C order). The images are those the live preview keeps
(``daq_server.acquire.live_preview``, rate-limited by ``--preview-rate``): the page and the stream show the
same images. PUB never waits: a subscriber that falls behind loses messages (ZeroMQ's high-water mark).
"""

from __future__ import annotations

import json

import numpy as np
import zmq

QUEUE = 4
"""Preview messages queued per subscriber at most; older ones are dropped by ZeroMQ."""


def array10_header(image: np.ndarray, frame_number: int, extra: dict | None = None) -> bytes:
    """The JSON header part of an ``array-1.0`` message for ``image``."""
    header = {"htype": "array-1.0", "type": np.dtype(image.dtype).name, "shape": list(image.shape),
              "frame": int(frame_number)}  # fmt: skip
    return json.dumps(header | (extra or {})).encode()


class PreviewStream:
    """The PUB socket bound at ``address``; :meth:`publish` sends one image without ever blocking."""

    def __init__(self, address: str):
        self.address = address
        self._socket = zmq.Context.instance().socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, QUEUE)
        self._socket.setsockopt(zmq.LINGER, 0)
        try:
            self._socket.bind(address)
        except zmq.ZMQError as error:
            self._socket.close()
            raise ValueError(f"cannot bind the preview stream at {address}: {error}") from None
        self.sent = 0

    def publish(self, image: np.ndarray, frame_number: int, extra: dict | None = None) -> None:
        """Send ``image`` (called from one thread only: the image consumer's)."""
        data = np.ascontiguousarray(image)
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("<"))
        try:
            self._socket.send_multipart([array10_header(data, frame_number, extra), data], flags=zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            pass

    def close(self) -> None:
        self._socket.close(linger=0)
