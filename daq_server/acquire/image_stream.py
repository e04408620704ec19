"""An acquisition seen by the Stream2 image stream: its series, ``start`` and ``end`` messages and counts.

The writer driver asks :meth:`ImageStream.begin` for the stream part of a new acquisition's write target
(the series and where the writers send their images) before any image is written, and calls
:meth:`ImageStream.end` once the file is closed, with the counts the writers reported.
"""

from __future__ import annotations

import math
import time
import uuid

import numpy as np

import detectors
from daq_server.config import DaqConfig, as_dict
from daq_server.pipeline.compression import BITSHUFFLE_LZ4
from daq_server.stream.stream2_feed import StreamSpec
from daq_server.stream.stream2_messages import end_message, start_message
from daq_server.stream.stream2_publisher import Stream2Publisher
from daq_server.write.nxmx import HC_KEV_ANGSTROM, Geometry
from daq_server.write.request import WriteRequest


class ImageStream:
    """The publisher and the series it numbers (1, 2, … since the server started)."""

    def __init__(self, publisher: Stream2Publisher):
        self.publisher = publisher
        self._next_series = 1

    def begin(
        self, request: WriteRequest, config: DaqConfig, shape: tuple[int, int], dtype: str, compression: str
    ) -> StreamSpec:
        """A new series for ``request``: its ``start`` message is queued, its spec returned for the writers."""
        series_id, self._next_series = self._next_series, self._next_series + 1
        exposure = request.nexus.count_time
        spec = StreamSpec(self.publisher.feed_address, series_id, str(uuid.uuid4()), time.time(),
                          float(exposure) if exposure is not None else 0.0, self.publisher.gate.path)  # fmt: skip
        fields = start_fields(request, config, shape, dtype, compression)
        self.publisher.begin(series_id, start_message(series_id, spec.series_unique_id, spec.series_time, fields))
        return spec

    def end(self, spec: StreamSpec, counts: dict[str, int]) -> dict:
        """Queue the ``end`` message; the stream's record of the acquisition (status and log)."""
        sent, dropped = counts.get("stream_images_sent", 0), counts.get("stream_images_dropped", 0)
        self.publisher.end(spec.series_id, end_message(spec.series_id, spec.series_unique_id, dropped, sent))
        seen = self.publisher.counts(spec.series_id)
        return {"address": self.publisher.address, "series_id": spec.series_id, "images_sent": sent,
                "images_dropped": dropped, "start_sent": bool(seen.start_sent)}  # fmt: skip

    def dropped_so_far(self, spec: StreamSpec) -> int:
        """Images of the running series the stream dropped so far: in the publisher, and in the writers as far
        as they recorded them (their exact counts come at the end)."""
        dropped_there = sum(self.publisher.counts(spec.series_id).dropped.values())
        return dropped_there + self.publisher.gate.dropped(spec.series_id)

    def close(self) -> None:
        self.publisher.close()


def start_fields(request: WriteRequest, config: DaqConfig, shape: tuple[int, int], dtype: str, compression: str):
    """The ``start`` message's fields: image and detector geometry (as the file's NXmx), the request's
    NXmx values, pixel type, compression, and the run (``user_data``)."""
    cfg = as_dict(config)
    geometry = Geometry(cfg, request, shape)
    kind = detectors.describe(str(cfg["detector_type"]))
    nexus = cfg.get("nexus") or {}

    def finite(value):
        return float(value) if value is not None and math.isfinite(float(value)) else None

    energy_kev = request.nexus.incident_energy
    if energy_kev is None and geometry.wavelength is not None:
        energy_kev = HC_KEV_ANGSTROM / float(geometry.wavelength)
    saturation = nexus.get("saturation_value")
    if saturation is None and "bit_depth" in cfg:
        saturation = (1 << int(cfg["bit_depth"])) - 1
    thickness = nexus.get("sensor_thickness", kind.sensor_thickness_um)
    return {
        "detector_description": f"{kind.name} {cfg.get('detector_name', '')}".strip(),
        "image_size_x": int(shape[1]),
        "image_size_y": int(shape[0]),
        "pixel_size_x": finite(geometry.pixel_x),
        "pixel_size_y": finite(geometry.pixel_y),
        "beam_center_x": geometry.beam_x,
        "beam_center_y": geometry.beam_y,
        "detector_distance": finite(geometry.distance),
        "incident_wavelength": finite(geometry.wavelength),
        "incident_energy": finite(energy_kev * 1000.0) if energy_kev is not None else None,
        "count_time": finite(request.nexus.count_time),
        "frame_time": finite(request.nexus.frame_time),
        "number_of_images": request.n_images,
        "saturation_value": int(saturation) if saturation is not None else None,
        "sensor_material": nexus.get("sensor_material", kind.sensor_material),
        "sensor_thickness": float(thickness) * 1e-6 if thickness is not None else None,
        "bit_depth_image": np.dtype(dtype).itemsize * 8,
        "image_dtype": str(dtype),
        "compression": "bslz4" if compression == BITSHUFFLE_LZ4 else "none",
        "user_data": {
            "output_file": request.output_file,
            "run_id": request.run_id,
            **({"run": request.run.as_json()} if request.run is not None else {}),
        },
    }
