"""Per-image results (config ``"results"``, docs/results.rst) of an acquisition: the pipeline's tables made from
the file's geometry and pixel mask, and their place in the file, ``/entry/results``:

* ``radial_profile`` (NXdata): ``intensity`` (n_images, n_bins), the mean of each bin's pixels, NaN where a bin
  kept no pixel; its axis ``q`` (1/nm) or ``two_theta`` (deg), the bins' centres; ``bin_edges``; ``pixels``, the
  pixels of each bin outside the pixel mask;
* ``roi_sums`` (NXdata): one (n_images,) dataset per ROI, named as in the config, ``rectangle`` or ``mask_file``
  as attributes;
* ``spot_count`` (NXdata): ``spot_count`` (n_images,), ``threshold`` and ``min_pixels`` as attributes.

An image written without the pipeline's results (a bsread image in another byte order) has NaN in the
profile and the ROI sums and -1 as its spot count.
"""

from __future__ import annotations

import math

import h5py
import numpy as np

from daq_server.config import DaqConfig, roi_mask_file
from daq_server.pipeline.image_results import UNITS, ImageResults, RadialGeometry, rectangle
from daq_server.write import nxmx
from daq_server.write.request import WriteRequest

GROUP = "/entry/results"


class ResultsRefused(ValueError):
    """The request lacks what the configured results need; the message says what to give."""


def radial_geometry(config: dict, request: WriteRequest, shape: tuple[int, int], unit: str) -> RadialGeometry:
    """The file's geometry for the radial profile; ResultsRefused if a value it needs is unknown."""
    g = nxmx.Geometry(config, request, shape)
    lacking = []
    if not math.isfinite(g.distance) or g.distance <= 0:
        lacking.append("detector_distance (mm)")
    if unit == "q" and not (g.wavelength and g.wavelength > 0):
        lacking.append("incident_wavelength (angstrom) or incident_energy (keV)")
    if not (math.isfinite(g.pixel_x) and math.isfinite(g.pixel_y)):
        lacking.append("x_pixel_size and y_pixel_size (um, in the config's nexus)")
    if lacking:
        raise ResultsRefused(
            f"The config's results ask for a radial profile in {unit}: give {' and '.join(lacking)} in the write "
            "request (or as the beamline's default in the config's nexus)."
        )
    if g.two_theta:
        raise ResultsRefused("A radial profile is computed for a detector facing the beam: the config's two_theta arm "
                             f"is {g.two_theta} deg; remove results.radial_profile or the arm.")  # fmt: skip
    return RadialGeometry(g.beam_x, g.beam_y, g.pixel_x, g.pixel_y, g.distance, float(g.wavelength or "nan"))


def check_request(request: WriteRequest, config: dict) -> None:
    """ResultsRefused (a 4xx) if the config's results cannot be computed for ``request``."""
    profile = (config.get("results") or {}).get("radial_profile")
    if profile and not request.pedestal:
        shape = (int(config["image_pixel_height"]), int(config["image_pixel_width"]))
        radial_geometry(config, request, shape, profile.get("unit", "q"))


def open_results(
    config: DaqConfig, request: WriteRequest, shape: tuple[int, int], dtype, flags: np.ndarray | None = None
) -> ImageResults | None:
    """The results tables of an acquisition (None if the config asks for none): pixels of the NXmx pixel mask
    (gaps, and the conversion's ``flags``) left out."""
    spec = config.results
    if spec is None or (spec.radial_profile is None and not spec.rois and spec.spots is None):
        return None
    as_config = config.model_dump()
    excluded = nxmx.gap_mask(as_config, shape) != 0
    if flags is not None:
        excluded |= flags != 0
    radial = None
    if spec.radial_profile is not None:
        unit = spec.radial_profile.unit
        radial = (radial_geometry(as_config, request, shape, unit), unit, spec.radial_profile.bins)
    rois = {
        name: roi_mask_file(roi, shape) if isinstance(roi, str) else rectangle(shape, *roi)
        for name, roi in (spec.rois or {}).items()
    }
    spots = (spec.spots.threshold, spec.spots.min_pixels) if spec.spots is not None else None
    return ImageResults(shape, np.dtype(dtype), excluded, radial, rois, spots)


def jsonable(results: dict | None) -> dict | None:
    """An image's results for the status (JSON): lists and floats, None for NaN."""
    if results is None:
        return None

    def number(value: float) -> float | None:
        return float(value) if math.isfinite(value) else None

    out: dict = {}
    if "radial_profile" in results:
        out["radial_profile"] = [number(v) for v in results["radial_profile"].tolist()]
    if "roi_sums" in results:
        out["roi_sums"] = {name: number(v) for name, v in results["roi_sums"].items()}
    if "spot_count" in results:
        out["spot_count"] = int(results["spot_count"])
    return out


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    return group


class ResultsDatasets:
    """``/entry/results`` of a new file (made before SWMR mode) and the values not yet written into it."""

    def __init__(self, entry: h5py.Group, results: ImageResults, config: DaqConfig, chunk: int) -> None:
        self.results = results
        group = _group(entry, "results", "NXcollection")
        self.columns: dict[str, h5py.Dataset] = {}  # key of the pending rows -> dataset
        if results.radial is not None:
            _, unit, n_bins = results.radial
            name, units = UNITS[unit]
            profile = _group(group, "radial_profile", "NXdata")
            profile.attrs.update({"signal": "intensity", "axes": [".", name], f"{name}_indices": 1})
            intensity = profile.create_dataset(
                "intensity", shape=(0, n_bins), maxshape=(None, n_bins), chunks=(max(1, min(chunk, 1024)), n_bins),
                dtype=np.float64,
            )  # fmt: skip
            intensity.attrs["description"] = (
                "mean of the bin's pixels per image (no solid-angle or polarization correction); pixels of the "
                "pixel mask and without data left out; NaN: no pixel"
            )
            axis = profile.create_dataset(name, data=results.axis)
            axis.attrs.update({"units": units, "description": "centre of the bin (equal bins)"})
            edges = profile.create_dataset("bin_edges", data=results.edges)
            edges.attrs["units"] = units
            profile.create_dataset("pixels", data=results.bin_pixels.astype(np.int64)).attrs["description"] = (
                "pixels of the bin outside the pixel mask"
            )
            self.columns["radial_profile"] = intensity
        grow = {"shape": (0,), "maxshape": (None,), "chunks": (chunk,)}
        if results.roi_names:
            sums = _group(group, "roi_sums", "NXdata")
            sums.attrs["signal"] = results.roi_names[0]
            if len(results.roi_names) > 1:
                sums.attrs["auxiliary_signals"] = results.roi_names[1:]
            for name in results.roi_names:
                dataset = sums.create_dataset(name, dtype=np.float64, **grow)
                roi = config.results.rois[name]
                dataset.attrs["mask_file" if isinstance(roi, str) else "rectangle"] = roi
                dataset.attrs["description"] = "sum of the ROI's pixels, masked ones and those without data left out"
                self.columns[f"roi_sums/{name}"] = dataset
        if results.spots is not None:
            spots = _group(group, "spot_count", "NXdata")
            spots.attrs["signal"] = "spot_count"
            dataset = spots.create_dataset("spot_count", dtype=np.int32, **grow)
            dataset.attrs.update({"threshold": results.spots[0], "min_pixels": results.spots[1], "description": (
                "4-connected groups of at least min_pixels pixels above threshold (-1: not computed)")})  # fmt: skip
            self.columns["spot_count"] = dataset
        self._pending: list[dict | None] = []

    def add(self, results: dict | None) -> None:
        """The next image's results (None: the image went without them)."""
        self._pending.append(results)

    def _values(self, key: str, results: dict | None):
        if key == "radial_profile":
            return results["radial_profile"] if results else np.full(self.columns[key].shape[1], np.nan)
        if key == "spot_count":
            return results["spot_count"] if results else -1
        return results["roi_sums"][key.split("/", 1)[1]] if results else np.nan

    def flush(self, start: int, end: int) -> None:
        """Write the pending values as entries ``start`` .. ``end`` - 1."""
        if not self._pending:
            return
        for key, dataset in self.columns.items():
            dataset.resize(end, axis=0)
            dataset[start:end] = np.array([self._values(key, r) for r in self._pending], dtype=dataset.dtype)
        self._pending.clear()

    @property
    def datasets(self) -> list[h5py.Dataset]:
        return list(self.columns.values())


def read_part(file: h5py.File, n: int) -> dict | None:
    """``/entry/results`` of a writer process's part file holding ``n`` images: {path: (values, attributes,
    per image)} of its datasets and {path: attributes} of its groups, for :func:`write_joined`; None without."""
    if GROUP not in file:
        return None
    datasets: dict = {}
    groups = {"": dict(file[GROUP].attrs)}

    def visit(name: str, item) -> None:
        if isinstance(item, h5py.Group):
            groups[name] = dict(item.attrs)
        else:
            per_image = item.maxshape[0] is None
            datasets[name] = (item[:n] if per_image else item[()], dict(item.attrs), per_image)

    file[GROUP].visititems(visit)
    return {"datasets": datasets, "groups": groups}


def write_joined(entry: h5py.Group, parts: list[dict | None], total: int) -> None:
    """``/entry/results`` of the master over writer processes: image *k* of part *k mod n* is row *k*; the
    constant datasets (axis, edges) of the first part."""
    if not parts or any(part is None for part in parts):
        return
    n_parts, first = len(parts), parts[0]
    for name, attributes in sorted(first["groups"].items()):
        group = entry.require_group("results" + (f"/{name}" if name else ""))
        group.attrs.update(attributes)
    for name, (values, attributes, per_image) in first["datasets"].items():
        if per_image:
            joined = np.empty((total, *values.shape[1:]), dtype=values.dtype)
            for i, part in enumerate(parts):
                joined[i::n_parts] = part["datasets"][name][0][: len(range(i, total, n_parts))]
            values = joined
        dataset = entry["results"].create_dataset(name, data=values)
        dataset.attrs.update(attributes)
