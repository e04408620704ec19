"""The one home of the output file layout (``../shared/spec/hdf5-layout.md``): dataset paths, the ``/entry``
attributes, the single writer's file, and both kinds of master file. Every HDF5 file the project writes is
created here, through the symlink-safe ``output_file.create_output_file``, as ``writer_user_id``.

* The file of one writer: ``/entry/data/data`` holds the images, one chunk per image, and beside it one
  entry per image in each of :data:`PER_IMAGE` (and, when the request asks for them, ``image_sum`` and
  ``image_max``). The NeXus/NXmx description around them comes from ``nxmx``.
* A master over writer processes: ``n`` processes write every ``n``-th image into part files; the master's
  ``/entry/data/data`` is a virtual dataset whose image *k* is image *k div n* of part *k mod n*.
* A master over receiver hosts (scale-out): each host writes the images of its modules into a part file;
  the master's images are the whole detector, joined by ``image_id`` (the detector's frame number).

Parts follow one naming rule, :func:`part_output`: ``<stem>.part<i><suffix>`` next to the master, named in
it relative to it (the folder can be moved as a whole); a host's part written by several processes has
parts of its own by the same rule.

Two files have layouts of their own, created here too (:func:`create_new`): a Jungfrau pedestal
acquisition's pedestal file (``pedestal_file``) and the HDF5 form of Jungfrau gain maps (``gain_map_file``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import h5py
import hdf5plugin
import numpy as np

from daq_server import __version__
from daq_server.config import as_dict
from daq_server.receive.image_source import RECEIVER_COUNTERS
from daq_server.write import nxmx, results_file
from daq_server.write.image_statistics import ImageStatistics
from daq_server.write.output_file import (
    CreatedFile,
    OutputPath,
    OutputPathError,
    create_output_file,
    open_hdf5_below_root,
)
from daq_server.write.pixel_mask import GZIP_LEVEL, LOST_DESCRIPTION
from daq_server.write.request import Share, WriteRequest, WriteTarget
from daq_server.write.results_file import ResultsDatasets

IMAGES = "/entry/data/data"
DATA_GROUP = "/entry/data"
DETECTOR = "/entry/instrument/detector"
PER_IMAGE: dict[str, tuple[type, dict]] = {
    "image_id": (np.uint64, {"description": "the detector's frame number"}),
    "n_missing_packets": (np.uint32, {"description": "packets of the image that never arrived"}),
    "is_good_frame": (bool, {"description": "true when no packet of the image was lost"}),
    "timestamp": (np.float64, {"units": "s", "description": "unix time the image's first packet arrived"}),
}
"""The per-image datasets of ``/entry/data`` (name -> dtype, attributes), one entry per image."""
STATISTICS = ("image_sum", "image_max")
"""Per-image datasets present when the request asked for image statistics."""
LOST_PIXEL_MASK = "/entry/data/lost_pixel_mask"
"""Per image, the pixels of lost packets (``daq_server.write.pixel_mask``)."""
STREAM_SUMMARY = ("stream_images_sent", "stream_images_dropped")
"""With the Stream2 image stream on: the images it sent and dropped, ``/entry`` attributes written at close."""
RESULTS_SUMMARY = ("images_without_results",)
"""With per-image results configured: the images that went without them (the DAQ behind), written at close."""
SUMMARY = (*RECEIVER_COUNTERS, *STREAM_SUMMARY, *RESULTS_SUMMARY)
"""The acquisition's receiver counters (and the stream's, the results'), ``/entry`` attributes written at close."""
METADATA_CHUNK = 4096
"""Entries per chunk of the per-image datasets."""


class LayoutError(OSError):
    """A file of the layout cannot be made (a part unreadable, the name taken); the message says why."""


def part_output(output: OutputPath, index: int) -> OutputPath:
    """Part ``index`` of ``output``: ``<stem>.part<index><suffix>`` in the same folder."""
    stem, dot, suffix = output.name.rpartition(".")
    name = f"{stem}.part{index}.{suffix}" if dot and stem else f"{output.name}.part{index}"
    return OutputPath(root=output.root, folders=output.folders, name=name)


def share_targets(target: WriteTarget, n: int) -> list[WriteTarget]:
    """What each of ``n`` writer processes writes: ``target`` itself for one, else every n-th image into a part."""
    if n == 1:
        return [target]
    return [replace(target, share=Share(i, n, part_output(target.output, i))) for i in range(n)]


def entry_attributes(request: WriteRequest, config: dict) -> dict:
    """The ``/entry`` attributes every file of an acquisition carries (``config``: the detector config)."""
    return {
        "NX_class": "NXentry",
        "run_id": request.run_id,
        "detector_name": config["detector_name"],
        "detector_type": config["detector_type"],
        "software_version": __version__,
        "config": json.dumps(config),
        "n_images_requested": request.n_images,
    }


def _summary_attributes(entry: h5py.Group, summary: dict | None) -> None:
    for key, value in (summary or {}).items():
        entry.attrs[str(key)] = value if isinstance(value, str | int | float | bool) else json.dumps(value)


def _create(output: OutputPath, uid: int) -> CreatedFile:
    try:
        return create_output_file(output, uid)
    except OutputPathError as error:
        raise LayoutError(str(error)) from None


def create_new(output: OutputPath, uid: int) -> CreatedFile:
    """Create a file of a layout of its own (the pedestal file ``pedestal_file``) the same safe way;
    LayoutError if it cannot be. Publish it once filled."""
    return _create(output, uid)


@contextmanager
def new_file(output: OutputPath, uid: int) -> Iterator[CreatedFile]:
    """A file of a layout of its own (the HDF5 gain maps ``gain_map_file``), created the same safe way and
    filled in the ``with`` block: named when the block ends well, removed when it fails."""
    created = _create(output, uid)
    try:
        yield created
        created.publish()
    except OutputPathError as error:
        raise LayoutError(str(error)) from None
    except BaseException:
        created.remove()
        raise
    finally:
        created.close_folder()
        created.close()


@dataclass
class FileDatasets:
    """The growing datasets of a writer's file."""

    images: h5py.Dataset
    per_image: dict[str, h5py.Dataset]
    statistics: ImageStatistics | None
    lost_pixels: h5py.Dataset
    results: ResultsDatasets | None = None


# ---- the file of one writer ----------------------------------------------------------------------
def create_file(target: WriteTarget) -> CreatedFile:
    """Create the (empty) file of ``target``; LayoutError if it cannot be."""
    return _create(target.output, target.user_id)


def create_layout(
    file: h5py.File, target: WriteTarget, start_time: float, conversion=None, results=None
) -> FileDatasets:
    """Groups, attributes and the (empty, growing) datasets of a new file; nothing may be added once the
    file is in SWMR mode. ``conversion``: a converting acquisition's open conversion (``record``, ``flags``;
    ``daq_server.write.conversion``), described by ``nxmx.describe_conversion``; ``results``: the acquisition's
    ``ImageResults`` (``/entry/results``, ``results_file``)."""
    config = as_dict(target.config)
    entry = file.create_group("entry")
    entry.attrs.update({**entry_attributes(target.request, config), "start_time": start_time})
    # what the close writes, made now: nothing can be added in SWMR mode, and the file is never reopened
    entry.attrs.update({"stop_time": 0.0, "n_images_written": np.int64(0)})
    left_out = (*(() if target.stream else STREAM_SUMMARY), *(() if results is not None else RESULTS_SUMMARY))
    entry.attrs.update({key: np.int64(0) for key in SUMMARY if key not in left_out})
    data = entry.create_group("data")
    data.attrs.update({"NX_class": "NXdata", "signal": "data"})
    compression = hdf5plugin.Bitshuffle(cname="lz4") if target.compression == "bitshuffle-lz4" else {}
    images = data.create_dataset(
        "data", shape=(0, *target.shape), maxshape=(None, *target.shape), chunks=(1, *target.shape),
        dtype=target.dtype, **compression,
    )  # fmt: skip
    chunk = (min(max(target.n_images, 1), METADATA_CHUNK),)
    per_image = {}
    for name, (dtype, attributes) in PER_IMAGE.items():
        per_image[name] = data.create_dataset(name, shape=(0,), maxshape=(None,), chunks=chunk, dtype=dtype)
        per_image[name].attrs.update(attributes)
    statistics = ImageStatistics(data, np.dtype(target.dtype), chunk[0]) if target.request.image_statistics else None
    lost = data.create_dataset(
        "lost_pixel_mask", shape=(0, *target.shape), maxshape=(None, *target.shape), chunks=(1, *target.shape),
        dtype=np.uint8, compression="gzip", compression_opts=GZIP_LEVEL,
    )  # fmt: skip
    lost.attrs["description"] = LOST_DESCRIPTION
    nxmx.build(file, images, config, target.request, start_time)
    if conversion is not None:
        nxmx.describe_conversion(images, conversion.record, conversion.flags)
    datasets = ResultsDatasets(entry, results, target.config, chunk[0]) if results is not None else None
    return FileDatasets(images, per_image, statistics, lost, datasets)


def finish(file: h5py.File, n_written: int, summary: dict | None) -> None:
    """At close, in place (the file may be in SWMR mode, readers open): the stop and end time, the images
    written, the counters of :data:`SUMMARY` given in ``summary`` (other keys are not kept)."""
    entry = file["entry"]
    stop = time.time()
    entry.attrs.modify("stop_time", stop)
    entry.attrs.modify("n_images_written", np.int64(n_written))
    for key in SUMMARY:
        if key in (summary or {}) and key in entry.attrs:
            entry.attrs.modify(key, np.int64(summary[key]))
    nxmx.finish(entry, stop)


def trim_crashed_file(path: str) -> int:
    """A file whose writer died (``crash_recovery``, run as its owner, after ``h5clear``): cut the image stack
    and the per-image masks to the images whose metadata it holds, record that count, return it."""
    with h5py.File(path, "r+") as f:
        data = f[DATA_GROUP]
        n = min(data[name].shape[0] for name in PER_IMAGE if name in data)
        n = min(n, f[IMAGES].shape[0])
        for name in (IMAGES, LOST_PIXEL_MASK, *(f"{DATA_GROUP}/{key}" for key in data if data[key].ndim >= 1)):
            dataset = f.get(name)
            if isinstance(dataset, h5py.Dataset) and dataset.maxshape[0] is None and dataset.shape[0] > n:
                dataset.resize(n, axis=0)
        f["entry"].attrs["n_images_written"] = np.int64(n)
    return n


# ---- a master over writer processes -----------------------------------------------------------------
def reserve_master(target: WriteTarget) -> CreatedFile:
    """Create the (empty) master file now, under its temporary name: the same checks as a single file (data
    root, no link, a new name); :func:`write_writers_master` fills it and gives it its name."""
    return _create(target.request.output, target.user_id)


def write_writers_master(
    created: CreatedFile, target: WriteTarget, parts: list[WriteTarget], summary: dict | None
) -> int:
    """Fill the master file over the closed ``parts`` (one per writer process); returns the images it shows.
    LayoutError if a part cannot be read (the message names it)."""
    joined = (*PER_IMAGE, *STATISTICS)
    columns: list[dict[str, np.ndarray]] = []
    results: list[dict | None] = []
    counts = []
    for part in parts:
        try:
            with open_hdf5_below_root(part.output, target.user_id) as f:
                data = f[DATA_GROUP]
                n = min(data["data"].shape[0], data["image_id"].shape[0])
                counts.append(n)
                columns.append({key: data[key][:n] for key in joined if key in data})
                results.append(results_file.read_part(f, n))
        except (OSError, KeyError, OutputPathError) as error:
            raise LayoutError(f"part file {part.output.path} cannot be read: {error}") from None
    n_parts = len(parts)
    # image k is in part k mod n: the master shows the images up to the first one a part lacks
    total = min(count * n_parts + i for i, count in enumerate(counts))
    height, width = target.shape
    layouts = {IMAGES: np.dtype(target.dtype), LOST_PIXEL_MASK: np.dtype(np.uint8)}
    for path, dtype in layouts.items():
        layouts[path] = layout = h5py.VirtualLayout(shape=(total, height, width), dtype=dtype)
        for i, part in enumerate(parts):
            mine = len(range(i, total, n_parts))
            if mine:
                source = h5py.VirtualSource(part.output.name, path, shape=(counts[i], height, width))
                layout[i:total:n_parts] = source[:mine]
    config = as_dict(target.config)
    with created.open_hdf5(mode="w", libver="latest") as f:
        entry = f.create_group("entry")
        stop = time.time()
        entry.attrs.update(
            {
                **entry_attributes(target.request, config),
                "n_images_written": total,
                "stop_time": stop,
                "parts": json.dumps([part.output.name for part in parts]),
            }
        )
        _summary_attributes(entry, summary)
        data = entry.create_group("data")
        data.attrs.update({"NX_class": "NXdata", "signal": "data"})
        images = data.create_virtual_dataset("data", layouts[IMAGES], fillvalue=0)
        data.create_virtual_dataset("lost_pixel_mask", layouts[LOST_PIXEL_MASK], fillvalue=0)
        data["lost_pixel_mask"].attrs["description"] = LOST_DESCRIPTION
        for key in joined:
            if all(key in c for c in columns):
                values = np.empty(total, dtype=columns[0][key].dtype)
                for i, c in enumerate(columns):
                    values[i::n_parts] = c[key][: len(range(i, total, n_parts))]
                data.create_dataset(key, data=values)
                data[key].attrs.update(PER_IMAGE.get(key, (None, {}))[1])
        results_file.write_joined(entry, results, total)
        nxmx.build(f, images, config, target.request, stop)
        nxmx.finish(entry, stop)
    try:
        created.publish()
    except OutputPathError as error:
        raise LayoutError(str(error)) from None
    return total


# ---- a master over receiver hosts ---------------------------------------------------------------------
@dataclass(frozen=True)
class HostPart:
    """A receiver host's part file of a scale-out acquisition and where its box lies in the whole image."""

    output: OutputPath
    host: str
    first_module: int
    last_module: int
    top: int
    left: int
    height: int
    width: int


def _runs(rows: list[int]) -> list[tuple[int, int, int]]:
    """(master row, part row, length) of each stretch where both advance by one."""
    runs: list[tuple[int, int, int]] = []
    for k, row in enumerate(rows):
        if runs and runs[-1][1] + runs[-1][2] == row and runs[-1][0] + runs[-1][2] == k:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((k, row, 1))
    return runs


def write_hosts_master(request: WriteRequest, config: dict, parts: list[HostPart]) -> int:
    """Create ``request``'s file as the master over the hosts' ``parts``; returns the number of whole
    images: the first ``n_images`` frames every part holds, in the first part's order (a part may hold a
    few more). ``n_missing_packets`` is summed over the parts, ``is_good_frame`` true when true in every
    part, ``timestamp`` the earliest arrival. LayoutError if a part cannot be read or the file made."""
    metadata = []
    dtype = None
    for part in parts:
        try:
            with open_hdf5_below_root(part.output, int(config.get("writer_user_id", 0))) as f:
                data = f[DATA_GROUP]
                dtype = data["data"].dtype
                n = min(data["data"].shape[0], data["image_id"].shape[0])
                metadata.append({key: data[key][:n] for key in ("image_id", "n_missing_packets", "timestamp")})
        except (OSError, KeyError, OutputPathError) as error:
            raise LayoutError(f"part file {part.output.path} of host {part.host} cannot be read: {error}") from None
    rows = [{int(image_id): row for row, image_id in enumerate(m["image_id"])} for m in metadata]
    common = [int(i) for i in metadata[0]["image_id"] if all(int(i) in r for r in rows[1:])][: request.n_images]
    n = len(common)
    height, width = int(config["image_pixel_height"]), int(config["image_pixel_width"])
    layouts = {IMAGES: dtype, LOST_PIXEL_MASK: np.dtype(np.uint8)}
    for path, kind in layouts.items():
        layouts[path] = layout = h5py.VirtualLayout(shape=(n, height, width), dtype=kind)
        for p, part_rows, m in zip(parts, rows, metadata, strict=True):
            source = h5py.VirtualSource(p.output.name, path, shape=(len(m["image_id"]), p.height, p.width))
            for master_row, part_row, length in _runs([part_rows[i] for i in common]):
                box = (
                    slice(master_row, master_row + length),
                    slice(p.top, p.top + p.height),
                    slice(p.left, p.left + p.width),
                )
                layout[box] = source[part_row : part_row + length]
    picked = [np.array([r[i] for i in common], dtype=np.int64) for r in rows]
    n_missing = sum((m["n_missing_packets"][k].astype(np.uint64) for m, k in zip(metadata, picked, strict=True)))
    timestamps = np.min([m["timestamp"][k] for m, k in zip(metadata, picked, strict=True)], axis=0)
    with new_file(request.output, int(config.get("writer_user_id", 0))) as created:
        with created.open_hdf5(mode="w", libver="latest") as f:
            entry = f.create_group("entry")
            hosts = [{"file": p.output.name, "host": p.host, "modules": [p.first_module, p.last_module]} for p in parts]
            entry.attrs.update(
                {**entry_attributes(request, config), "n_images_written": n, "stop_time": time.time(),
                 "parts": json.dumps(hosts)}
            )  # fmt: skip
            data = entry.create_group("data")
            data.attrs.update({"NX_class": "NXdata", "signal": "data"})
            data.create_virtual_dataset("data", layouts[IMAGES], fillvalue=0)
            data.create_virtual_dataset("lost_pixel_mask", layouts[LOST_PIXEL_MASK], fillvalue=0)
            data["lost_pixel_mask"].attrs["description"] = LOST_DESCRIPTION
            values = {
                "image_id": np.array(common, dtype=np.uint64),
                "n_missing_packets": np.asarray(n_missing, dtype=np.uint32).reshape(n),
                "is_good_frame": np.asarray(n_missing, dtype=np.uint64).reshape(n) == 0,
                "timestamp": np.asarray(timestamps, dtype=np.float64).reshape(n),
            }
            for key, column in values.items():
                data.create_dataset(key, data=column)
                data[key].attrs.update(PER_IMAGE[key][1])
    return n
