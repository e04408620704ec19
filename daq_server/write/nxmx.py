"""NeXus/NXmx description of an output file, built around the writer's own datasets (part of the file
layout: only ``daq_server.write.file_layout`` calls it).

* the ``@default`` chain ``/`` -> ``entry`` -> ``data`` -> ``data`` (``interpretation = image``), which silx,
  nexpy and tiled follow to the image stack;
* the NXmx application definition: ``/entry/definition``, ISO 8601 ``start_time`` / ``end_time``, the run's
  identity (``entry_identifier``, ``entry_identifier_uuid``, ``title``, ``/entry/run``), ``/entry/source``,
  ``/entry/instrument`` with ``beam`` and the NXdetector (a hard link to the images, pixel size, sensor,
  saturation value, exposure, the 2-D pixel mask, one NXdetector_module per module) and ``/entry/sample``.

Geometry (docs/nexus.rst): the lab frame is McStas (z along the beam, y up, x to the left seen along the
beam, the sample at the origin). The assembled image is one rigid plane: its fast axis (columns) is -x, its
slow axis (rows) -y, for every module alike (a mirrored module's rows are already turned by the receiver).
The point of the image at the beam centre (``beam_center_x``, ``beam_center_y`` in pixels, measured from the
outer corner of pixel (0, 0), as dxtbx and pyFAI count) lies on the beam at ``detector_distance``; an
optional ``two_theta`` arm rotates the whole plane about -x (positive: the detector rises). Each module's
``module_offset`` places the outer corner of its first pixel in the image; its pixels follow along the
fast and slow directions, chip and module gaps included.

Values come from the write request (:data:`REQUEST_FIELDS`), else from the config's beamline defaults
(``nexus`` keys, ``daq_server.config.NEXUS_CONFIG_FIELDS``), else: the beam centre is the image's centre,
the distance and the wavelength are NaN (unknown, said in a ``note`` attribute), the sample is "unknown".
"""

from __future__ import annotations

import datetime
import math
from typing import TYPE_CHECKING

import h5py
import numpy as np

import detectors
from daq_server.write.pixel_mask import DESCRIPTION as PIXEL_MASK_DESCRIPTION
from daq_server.write.pixel_mask import GAP_PIXEL, GZIP_LEVEL

if TYPE_CHECKING:
    from daq_server.write.request import WriteRequest

REQUEST_FIELDS: dict[str, tuple[type, str]] = {
    "detector_distance": (float, "mm"),
    "beam_center_x": (float, "pixel"),
    "beam_center_y": (float, "pixel"),
    "incident_wavelength": (float, "angstrom"),
    "incident_energy": (float, "keV"),
    "count_time": (float, "s"),
    "frame_time": (float, "s"),
    "sample_name": (str, ""),
}
"""Optional NXmx fields of a write request: name -> (type, unit of the value)."""

HC_KEV_ANGSTROM = 12.398419843320026
"""h c in keV x angstrom (CODATA 2018)."""

DETECTOR = "/entry/instrument/detector"
TRANSFORMATIONS = DETECTOR + "/transformations"
FAST, SLOW = (-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)
"""Lab directions of the image's fast (column) and slow (row) axes."""
TWO_THETA_AXIS = (-1.0, 0.0, 0.0)
TIME_LENGTH = 40
"""Characters kept for the ISO 8601 end time (written in place at close, with readers open)."""


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


def _transformation(group: h5py.Group, name: str, value: float, units: str, kind: str, vector, depends_on: str):
    dataset = _number(group, name, value, units)
    dataset.attrs.update({"transformation_type": kind, "vector": np.asarray(vector, float), "depends_on": depends_on})
    return dataset


def module_rectangles(config: dict) -> list[tuple[int, int, int, int]]:
    """(x0, y0, width, height) of each module's span inside the image, in module order."""
    rectangles = []
    for key in sorted(config.get("module_positions") or {}, key=int):
        sx, sy, ex, ey = (int(v) for v in config["module_positions"][key])
        rectangles.append((min(sx, ex), min(sy, ey), abs(ex - sx) + 1, abs(ey - sy) + 1))
    return rectangles


def gap_mask(config: dict, shape: tuple[int, int]) -> np.ndarray:
    """NXmx pixel mask (uint32): GAP_PIXEL where no sensor lies behind the pixel: outside every module,
    and between the chips of a module whose span holds chip gaps. Zeros if the config places no modules."""
    rectangles = module_rectangles(config)
    if not rectangles:
        return np.zeros(shape, dtype=np.uint32)
    fmt = detectors.config_format(config)
    mask = np.full(shape, GAP_PIXEL, dtype=np.uint32)
    for x0, y0, width, height in rectangles:
        rows = detectors.chip_runs(height, fmt.module_height)
        columns = detectors.chip_runs(width, fmt.module_width)
        for r0, r1 in rows:
            for c0, c1 in columns:
                mask[y0 + r0 : y0 + r1, x0 + c0 : x0 + c1] = 0
    return mask


class Geometry:
    """Where the image lies: the request's values, else the config's beamline defaults (see the module)."""

    def __init__(self, config: dict, request: WriteRequest, shape: tuple[int, int]):
        defaults = config.get("nexus") or {}
        kind = detectors.describe(str(config["detector_type"]))

        def value(name: str):
            given = getattr(request.nexus, name)
            return given if given is not None else defaults.get(name)

        self.notes: dict[str, str] = {}
        x_size = defaults.get("x_pixel_size", kind.pixel_size_um)
        self.pixel_x = float("nan") if x_size is None else float(x_size) * 1e-6
        self.pixel_y = float(defaults.get("y_pixel_size", x_size if x_size is not None else "nan")) * 1e-6
        centre = (value("beam_center_x"), value("beam_center_y"))
        if None in centre:
            self.notes["beam_center"] = "not given: the image's centre (give beam_center_x/y in the request)"
        self.beam_x = float(centre[0]) if centre[0] is not None else shape[1] / 2
        self.beam_y = float(centre[1]) if centre[1] is not None else shape[0] / 2
        distance = value("detector_distance")
        self.distance = float("nan") if distance is None else float(distance) * 1e-3
        if distance is None:
            self.notes["distance"] = "unknown: give detector_distance (mm) in the request or the config's nexus"
        self.two_theta = float(defaults.get("two_theta", 0.0))
        self.wavelength = request.nexus.incident_wavelength
        if self.wavelength is None and request.nexus.incident_energy is not None:  # E [keV] = hc / wavelength
            self.wavelength = HC_KEV_ANGSTROM / request.nexus.incident_energy
        if self.wavelength is None:
            self.wavelength = defaults.get("incident_wavelength")
        self.sample_name = value("sample_name")

    def offset_of(self, x0: int, y0: int) -> tuple[float, tuple[float, float, float]]:
        """(length in m, unit vector) from the beam centre's point of the plane to the outer corner of
        pixel (y0, x0)."""
        dx, dy = (x0 - self.beam_x) * self.pixel_x, (y0 - self.beam_y) * self.pixel_y
        v = np.array(FAST) * dx + np.array(SLOW) * dy
        length = float(np.linalg.norm(v))
        if not length or not math.isfinite(length):
            return 0.0, (1.0, 0.0, 0.0)
        return length, tuple(float(c) for c in v / length)


def build(file: h5py.File, images: h5py.Dataset, config: dict, request: WriteRequest, start_time: float) -> None:
    """Add the @default chain and the NXmx groups to a new file whose images are ``images``."""
    entry, data = images.parent.parent, images.parent
    nexus_config = config.get("nexus") or {}
    file.attrs["default"] = entry.name.lstrip("/")
    file.attrs["NX_class"] = "NXroot"
    entry.attrs["default"] = data.name.rsplit("/", 1)[-1]
    data.attrs["signal"] = images.name.rsplit("/", 1)[-1]
    images.attrs["interpretation"] = "image"
    _text(entry, "definition", "NXmx")
    _text(entry, "start_time", iso_time(start_time))
    for name in ("end_time", "end_time_estimated"):  # written in place at close: no reopen with readers open
        entry.create_dataset(name, data="", dtype=h5py.string_dtype(length=TIME_LENGTH))
    _run_identity(entry, request)
    shape = (int(images.shape[1]), int(images.shape[2]))
    geometry = Geometry(config, request, shape)

    instrument = _group(entry, "instrument", "NXinstrument")
    _text(instrument, "name", str(nexus_config.get("instrument_name") or config.get("detector_name", "")))
    source = _group(entry, "source", "NXsource")
    _text(source, "name", str(nexus_config.get("source_name") or "unknown"))
    beam = _group(instrument, "beam", "NXbeam")
    known = geometry.wavelength is not None
    wavelength = _number(beam, "incident_wavelength", float(geometry.wavelength if known else "nan"), "angstrom")
    if geometry.wavelength is None:
        wavelength.attrs["note"] = "unknown: give incident_wavelength in the request or the config's nexus"
    _detector(instrument, images, config, request, geometry)
    sample = _group(entry, "sample", "NXsample")
    _text(sample, "name", str(geometry.sample_name or "unknown"))
    _text(sample, "depends_on", ".")


def _run_identity(entry: h5py.Group, request: WriteRequest) -> None:
    """``entry_identifier`` (the run's scan_id, else the DAQ's run_id), ``entry_identifier_uuid`` (the run's
    uid), ``title`` (its plan), and every value of the run in ``/entry/run``."""
    run = request.run
    scan_id = run.scan_id if run is not None else None
    _text(entry, "entry_identifier", str(scan_id if scan_id is not None else request.run_id))
    if run is None:
        return
    if run.uid:
        _text(entry, "entry_identifier_uuid", run.uid)
    if run.plan_name:
        _text(entry, "title", run.plan_name)
    group = _group(entry, "run", "NXcollection")
    group.attrs["description"] = "the bluesky run this acquisition belongs to (start document)"
    values = {"uid": run.uid, "scan_id": run.scan_id, "plan_name": run.plan_name, **run.metadata}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, str):
            _text(group, key, value)
        else:
            group.create_dataset(key, data=value)


def _detector(instrument: h5py.Group, images: h5py.Dataset, config: dict, request, geometry: Geometry) -> None:
    nexus_config = config.get("nexus") or {}
    kind = detectors.describe(str(config["detector_type"]))
    detector = _group(instrument, "detector", "NXdetector")
    detector["data"] = images  # a hard link: the NXdetector's data are the image stack
    _text(detector, "description", f"{kind.name} {config.get('detector_name', '')}".strip())
    if math.isfinite(geometry.pixel_x):
        _number(detector, "x_pixel_size", geometry.pixel_x, "m")
        _number(detector, "y_pixel_size", geometry.pixel_y, "m")
    material = nexus_config.get("sensor_material", kind.sensor_material)
    thickness = nexus_config.get("sensor_thickness", kind.sensor_thickness_um)
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
    distance = _number(detector, "distance", geometry.distance, "m")
    for axis, centre in (("x", geometry.beam_x), ("y", geometry.beam_y)):
        _number(detector, f"beam_center_{axis}", centre, "pixel")
    if "distance" in geometry.notes:
        distance.attrs["note"] = geometry.notes["distance"]
    if "beam_center" in geometry.notes:
        for axis in ("x", "y"):
            detector[f"beam_center_{axis}"].attrs["note"] = geometry.notes["beam_center"]
    for name in ("count_time", "frame_time"):
        if getattr(request.nexus, name) is not None:
            _number(detector, name, float(getattr(request.nexus, name)), "s")
    shape = (int(images.shape[1]), int(images.shape[2]))
    mask = detector.create_dataset("pixel_mask", data=gap_mask(config, shape), compression="gzip",
                                   compression_opts=GZIP_LEVEL)  # fmt: skip
    mask.attrs["description"] = PIXEL_MASK_DESCRIPTION
    _transformations(detector, geometry)
    _modules(detector, config, shape, geometry)


def _transformations(detector: h5py.Group, geometry: Geometry) -> None:
    """The image plane's place: along the beam by the distance, then the two-theta arm (if any)."""
    transformations = _group(detector, "transformations", "NXtransformations")
    last = "."
    if geometry.two_theta:
        _transformation(transformations, "two_theta", geometry.two_theta, "deg", "rotation", TWO_THETA_AXIS, ".")
        last = TRANSFORMATIONS + "/two_theta"
    _transformation(transformations, "translation", geometry.distance, "m", "translation", (0, 0, 1), last)
    _text(detector, "depends_on", TRANSFORMATIONS + "/translation")


def _modules(detector: h5py.Group, config: dict, shape: tuple[int, int], geometry: Geometry) -> None:
    """One NXdetector_module per module (the whole image if the config places none), all in one plane."""
    rectangles = module_rectangles(config) or [(0, 0, shape[1], shape[0])]
    for index, (x0, y0, width, height) in enumerate(rectangles):
        module = _group(detector, f"module{index}", "NXdetector_module")
        module.create_dataset("data_origin", data=np.array([y0, x0], dtype=np.int64))
        module.create_dataset("data_size", data=np.array([height, width], dtype=np.int64))
        module.create_dataset("data_stride", data=np.array([1, 1], dtype=np.int64))
        length, vector = geometry.offset_of(x0, y0)
        _transformation(module, "module_offset", length, "m", "translation", vector, TRANSFORMATIONS + "/translation")
        offset = module.name + "/module_offset"
        pixel_x = geometry.pixel_x if math.isfinite(geometry.pixel_x) else 0.0
        pixel_y = geometry.pixel_y if math.isfinite(geometry.pixel_y) else 0.0
        _transformation(module, "fast_pixel_direction", pixel_x, "m", "translation", FAST, offset)
        _transformation(module, "slow_pixel_direction", pixel_y, "m", "translation", SLOW, offset)


CONVERSION_MASK_NOTE = (
    " The conversion to photons or keV also flags the pixels its pedestal does not trust: bit 1 (value 2) dead "
    "(pedestal out of range or wrong gain stage), bit 4 (value 16) noisy; they hold the no-data value in every image."
)


def describe_conversion(images: h5py.Dataset, record: dict, flags: np.ndarray) -> None:
    """Images converted to photons or keV: their unit, the pedestal's ``flags`` (NXmx bits) in the pixel
    mask, and ``/entry/conversion`` (NXprocess) with the ``record`` (pedestal and gain map files, sha256,
    photon energy, rounding, fill values). Call before the file goes into SWMR mode."""
    entry = images.parent.parent
    images.attrs["units"] = record["output"]
    detector = entry["instrument/detector"]
    mask = detector["pixel_mask"]
    mask[...] = mask[()] | flags.astype(np.uint32)
    mask.attrs["description"] = str(mask.attrs.get("description", "")) + CONVERSION_MASK_NOTE
    if record["output"] == "photons":
        if "saturation_value" in detector:
            del detector["saturation_value"]
        _number(detector, "saturation_value", int(record["saturated_value"]))
    process = _group(entry, "conversion", "NXprocess")
    _text(process, "program", "std-daq Jungfrau conversion")
    _text(process, "description", "energy = (ADC - pedestal[gain stage]) / gain[gain stage], per pixel")
    for key, value in record.items():
        if value is None or value == "":
            continue
        if isinstance(value, list):
            process.create_dataset(key, data=[str(v) for v in value], dtype=h5py.string_dtype())
        elif isinstance(value, str):
            _text(process, key, value)
        else:
            _number(process, key, value, "keV" if key == "photon_energy_kev" else "")


def finish(entry: h5py.Group, end_time: float) -> None:
    """At close: the ISO 8601 end time, written in place (the file may stay in SWMR mode, readers open)."""
    for name in ("end_time", "end_time_estimated"):
        entry[name][()] = iso_time(end_time)
