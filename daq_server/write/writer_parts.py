"""One acquisition written by several writer processes: their part files and the master file.

With ``n`` processes, image *k* of the acquisition goes to process *k mod n*, which writes it as
image *k div n* of part file ``<stem>.writer<i><suffix>`` (a complete file of its own, with its
metadata and pixel mask). ``output_file`` is the master file: ``/entry/data/data`` is an HDF5
virtual dataset whose image *k* is that image of that part (a strided mapping per part), and the
per-image datasets (``image_id``, ``n_missing_packets``, ``is_good_frame``, ``timestamp`` and,
when asked, ``image_sum``/``image_max``) are joined in the same order. The master's name is taken
(created, empty) when the acquisition starts, so a request for an existing file is refused at once.
Part files are named relative to the master: the folder can be moved as a whole.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from daq_server.write import nexus_layout
from daq_server.write.hdf5_writer import WriterError, WriteTarget
from daq_server.write.output_file import CreatedFile, OutputPathError, create_output_file, split_output_path

JOINED = ("image_id", "n_missing_packets", "is_good_frame", "timestamp", "image_sum", "image_max")
"""The per-image datasets of a part that the master joins (those present)."""


def part_file_name(output_file: str, index: int) -> str:
    path = Path(output_file)
    return str(path.with_name(f"{path.stem}.writer{index}{path.suffix}"))


def part_targets(target: WriteTarget, n: int) -> list[WriteTarget]:
    """What each of ``n`` processes writes: ``target`` itself for one, else every n-th image into a part."""
    if n == 1:
        return [target]
    return [
        replace(target, output_file=part_file_name(target.output_file, i), n_images=len(range(i, target.n_images, n)))
        for i in range(n)
    ]


def reserve_master(target: WriteTarget) -> CreatedFile:
    """Create the (empty) master file now: the same checks as a single file (data root, no link, new)."""
    root = target.data_root if target.data_root is not None else os.path.dirname(target.output_file)
    try:
        created = create_output_file(split_output_path(target.output_file, root), target.user_id)
    except OutputPathError as error:
        raise WriterError(str(error)) from None
    created.close_folder()
    return created


def write_master(created: CreatedFile, target: WriteTarget, parts: list[WriteTarget], summary: dict | None) -> int:
    """Fill the master file over the closed ``parts``; returns the images it shows. WriterError if a
    part cannot be read (the message names it)."""
    columns: list[dict[str, np.ndarray]] = []
    counts = []
    for part in parts:
        try:
            with h5py.File(part.output_file, "r") as f:
                data = f["/entry/data"]
                n = min(data["data"].shape[0], data["image_id"].shape[0])
                counts.append(n)
                columns.append({key: data[key][:n] for key in JOINED if key in data})
        except (OSError, KeyError) as error:
            raise WriterError(f"part file {part.output_file} cannot be read: {error}") from None
    n_parts = len(parts)
    # image k is in part k mod n: the master shows the images up to the first one a part lacks
    total = min(count * n_parts + i for i, count in enumerate(counts))
    height, width = target.shape
    layout = h5py.VirtualLayout(shape=(total, height, width), dtype=np.dtype(target.dtype))
    for i, part in enumerate(parts):
        mine = len(range(i, total, n_parts))
        if mine:
            name = Path(part.output_file).name
            source = h5py.VirtualSource(name, "/entry/data/data", shape=(counts[i], height, width))
            layout[i:total:n_parts] = source[:mine]
    with created.open_hdf5(mode="w", libver="latest") as f:
        entry = f.create_group("entry")
        entry.attrs.update(
            {
                **target.entry_attributes(),
                "n_images_written": total,
                "stop_time": time.time(),
                "parts": json.dumps([Path(part.output_file).name for part in parts]),
            }
        )
        for key, value in (summary or {}).items():
            entry.attrs[str(key)] = value if isinstance(value, str | int | float | bool) else json.dumps(value)
        data = entry.create_group("data")
        data.attrs.update({"NX_class": "NXdata", "signal": "data"})
        images = data.create_virtual_dataset("data", layout, fillvalue=0)
        for key in JOINED:
            if all(key in c for c in columns):
                joined = np.empty(total, dtype=columns[0][key].dtype)
                for i, c in enumerate(columns):
                    joined[i::n_parts] = c[key][: len(range(i, total, n_parts))]
                data.create_dataset(key, data=joined)
        data["timestamp"].attrs["units"] = "s"
        start = float(entry.attrs["stop_time"])
        nexus_layout.build(f, images, target.config, target.nexus, start, target.config.get("nexus") or {})
        nexus_layout.finish(entry, start)
    return total
