"""NeXus/NXmx description of an output file, built around the writer's own datasets.

The writer keeps its datasets where they always were (``/entry/data/data``, ``image_id`` …); this module
adds what NeXus readers look for:

* the ``@default`` chain ``/`` -> ``entry`` -> ``data`` -> ``data`` (``interpretation = image``), which
  silx, nexpy and tiled follow to the image stack;
* the NXmx application definition: ``/entry/definition``, ISO 8601 ``start_time`` / ``end_time``,
  ``/entry/source``, ``/entry/instrument`` with ``beam`` and the NXdetector (a hard link to the images, pixel
  size, sensor, saturation value, pixel mask of the gap pixels, one NXdetector_module per module) and
  ``/entry/sample``. At close the pixel mask gains the pixels of lost packets, per image, when an image
  lost packets (``daq_server.write.pixel_mask``).

Values come from the detector config (``nexus`` keys, see ``daq_server.config.NEXUS_CONFIG_FIELDS``) and
from the write request (:data:`REQUEST_FIELDS`); a field whose value is not known is left out.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import h5py
import numpy as np

if TYPE_CHECKING:
    from daq_server.write.request import NexusValues

from daq_server.write.pixel_mask import DESCRIPTION as PIXEL_MASK_DESCRIPTION
from daq_server.write.pixel_mask import GAP_PIXEL, GZIP_LEVEL

REQUEST_FIELDS: dict[str, tuple[type, str]] = {
    "detector_distance": (float, "mm"),
    "beam_center_x": (float, "pixel"),
    "beam_center_y": (float, "pixel"),
    "incident_wavelength": (float, "angstrom"),
    "count_time": (float, "s"),
    "frame_time": (float, "s"),
    "sample_name": (str, ""),
}
"""Optional NXmx fields of a write request: name -> (type, unit of the value)."""


PIXEL_SIZE_UM = {"jungfrau": 75.0, "eiger": 75.0, "gigafrost": 11.0}
"""Pixel pitch of the known detectors, used when the config does not give one."""

SENSOR = {"jungfrau": ("Si", 320.0), "eiger": ("Si", 450.0)}
"""Usual sensor material and thickness (um) of the known detectors, used when the config gives none."""


def iso_time(unix_time: float) -> str:
    """ISO 8601 with the UTC offset, e.g. ``2026-01-02T03:04:05.678901+00:00``."""
    return datetime.datetime.fromtimestamp(unix_time, datetime.timezone.utc).isoformat()


def _text(group: h5py.Group, name: str, value: str) -> h5py.Dataset:
    return group.create_dataset(name, data=value, dtype=h5py.string_dtype())


def _number(group: h5py.Group, name: str, value: float, units: str = "") -> h5py.Dataset:
    dataset = group.create_dataset(name, data=value)
    if units:
        dataset.attrs["units"] = units
    return dataset


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.require_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def _module_rectangles(config: dict) -> list[tuple[int, int, int, int, bool]]:
    """(x0, y0, width, height, rows_flipped) of each module inside the image, in module order."""
    rectangles = []
    for key in sorted(config.get("module_positions") or {}, key=int):
        sx, sy, ex, ey = (int(v) for v in config["module_positions"][key])
        x0, y0 = min(sx, ex), min(sy, ey)
        rectangles.append((x0, y0, abs(ex - sx) + 1, abs(ey - sy) + 1, sy > ey))
    return rectangles


def gap_mask(config: dict, shape: tuple[int, int]) -> np.ndarray:
    """NXmx pixel mask (uint32): GAP_PIXEL where no module lies; zeros if the config places no modules."""
    rectangles = _module_rectangles(config)
    if not rectangles:
        return np.zeros(shape, dtype=np.uint32)
    mask = np.full(shape, GAP_PIXEL, dtype=np.uint32)
    for x0, y0, width, height, _ in rectangles:
        mask[y0 : y0 + height, x0 : x0 + width] = 0
    return mask


def build(
    file: h5py.File, images: h5py.Dataset, config: dict, request: NexusValues, start_time: float, nexus_config: dict
) -> None:
    """Add the @default chain and the NXmx groups to a new file whose images are ``images``."""
    entry = images.parent.parent
    data = images.parent
    file.attrs["default"] = entry.name.lstrip("/")
    file.attrs["NX_class"] = "NXroot"
    entry.attrs["default"] = data.name.rsplit("/", 1)[-1]
    data.attrs["signal"] = images.name.rsplit("/", 1)[-1]
    images.attrs["interpretation"] = "image"
    _text(entry, "definition", "NXmx")
    _text(entry, "start_time", iso_time(start_time))

    detector_type = str(config.get("detector_type", ""))
    instrument = _group(entry, "instrument", "NXinstrument")
    _text(instrument, "name", str(nexus_config.get("instrument_name") or config.get("detector_name", "")))
    source = _group(entry, "source", "NXsource")
    _text(source, "name", str(nexus_config.get("source_name") or "unknown"))
    beam = _group(instrument, "beam", "NXbeam")
    if request.incident_wavelength is not None:
        _number(beam, "incident_wavelength", float(request.incident_wavelength), "angstrom")

    detector = _group(instrument, "detector", "NXdetector")
    detector["data"] = images  # a hard link: the NXdetector's data are the image stack
    _text(detector, "description", f"{detector_type} {config.get('detector_name', '')}".strip())
    _text(detector, "depends_on", "/entry/instrument/detector/transformations/translation")
    x_size = nexus_config.get("x_pixel_size", PIXEL_SIZE_UM.get(detector_type))
    y_size = nexus_config.get("y_pixel_size", x_size)
    if x_size is not None:
        _number(detector, "x_pixel_size", float(x_size) * 1e-6, "m")
        _number(detector, "y_pixel_size", float(y_size) * 1e-6, "m")
    material, thickness = SENSOR.get(detector_type, (None, None))
    material = nexus_config.get("sensor_material", material)
    thickness = nexus_config.get("sensor_thickness", thickness)
    if material is not None:
        _text(detector, "sensor_material", str(material))
    if thickness is not None:
        _number(detector, "sensor_thickness", float(thickness) * 1e-6, "m")
    saturation = nexus_config.get("saturation_value")
    if saturation is None and "bit_depth" in config:
        saturation = (1 << int(config["bit_depth"])) - 1
    if saturation is not None:
        _number(detector, "saturation_value", int(saturation))
    if "bit_depth" in config:
        _number(detector, "bit_depth_readout", int(config["bit_depth"]))
    distance = request.detector_distance
    if distance is not None:
        _number(detector, "distance", float(distance) * 1e-3, "m")
    for axis in ("x", "y"):
        if getattr(request, f"beam_center_{axis}") is not None:
            _number(detector, f"beam_center_{axis}", float(getattr(request, f"beam_center_{axis}")), "pixel")
    for name in ("count_time", "frame_time"):
        if getattr(request, name) is not None:
            _number(detector, name, float(getattr(request, name)), "s")
    shape = tuple(int(n) for n in images.shape[1:])
    mask = detector.create_dataset("pixel_mask", data=gap_mask(config, shape), compression="gzip",
                                   compression_opts=GZIP_LEVEL)  # fmt: skip
    mask.attrs["description"] = PIXEL_MASK_DESCRIPTION
    _transformations(detector, 0.0 if distance is None else float(distance) * 1e-3)
    _modules(detector, config, shape)

    sample = _group(entry, "sample", "NXsample")
    if request.sample_name:
        _text(sample, "name", str(request.sample_name))
    _text(sample, "depends_on", ".")


def _transformations(detector: h5py.Group, distance_m: float) -> None:
    """The detector's position: one translation along the beam (z) by the detector distance."""
    transformations = _group(detector, "transformations", "NXtransformations")
    translation = _number(transformations, "translation", distance_m, "m")
    translation.attrs.update({"transformation_type": "translation", "vector": [0.0, 0.0, 1.0], "depends_on": "."})


def _modules(detector: h5py.Group, config: dict, shape: tuple[int, int]) -> None:
    """One NXdetector_module per module (the whole image if the config places none)."""
    rectangles = _module_rectangles(config) or [(0, 0, shape[1], shape[0], False)]
    for index, (x0, y0, width, height, flipped) in enumerate(rectangles):
        module = _group(detector, f"module{index}", "NXdetector_module")
        module.create_dataset("data_origin", data=np.array([y0, x0], dtype=np.int64))
        module.create_dataset("data_size", data=np.array([height, width], dtype=np.int64))
        module.create_dataset("data_stride", data=np.array([1, 1], dtype=np.int64))
        offset = _number(module, "module_offset", 0.0, "m")
        offset.attrs.update(
            {
                "transformation_type": "translation",
                "vector": [0.0, 0.0, 0.0],
                "depends_on": "/entry/instrument/detector/transformations/translation",
            }
        )
        fast = _number(module, "fast_pixel_direction", pitch(detector, "x"), "m")
        fast.attrs.update(
            {
                "transformation_type": "translation",
                "vector": [-1.0, 0.0, 0.0],
                "depends_on": module.name + "/module_offset",
            }
        )
        slow = _number(module, "slow_pixel_direction", pitch(detector, "y"), "m")
        slow.attrs.update(
            {
                "transformation_type": "translation",
                "vector": [0.0, 1.0 if flipped else -1.0, 0.0],
                "depends_on": module.name + "/module_offset",
            }
        )


def pitch(detector: h5py.Group, axis: str) -> float:
    """The pixel size along ``axis`` in metres, 0 when unknown."""
    dataset = detector.get(f"{axis}_pixel_size")
    return 0.0 if dataset is None else float(dataset[()])


def finish(entry: h5py.Group, end_time: float) -> None:
    """At close: the ISO 8601 end time (the file must be open for writing, not in SWMR mode)."""
    for name in ("end_time", "end_time_estimated"):
        if name in entry:
            del entry[name]
        _text(entry, name, iso_time(end_time))
