"""The master file of a scale-out acquisition: one HDF5 virtual dataset over the hosts' part files.

``/entry/data/data`` is a virtual dataset of the whole assembled image: each part file's images are
mapped into their host's box (the bounding box of its modules). Images are joined by ``image_id``
(the detector's frame number): the master holds the first ``n_images`` frames that every part
holds, in the first part's order (a part may hold a few more). ``n_missing_packets`` is summed over
the parts, ``is_good_frame`` is true when it is true in every part, ``timestamp`` is the earliest
arrival. Part files are named relative to the master, so the folder can be moved as a whole.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from daq_server import __version__
from daq_server.serve.host_part import Part
from daq_server.write.file_owner import as_file_user


@dataclass(frozen=True)
class PartFile:
    path: Path
    part: Part
    host: str


def part_file_name(output_file: str | Path, index: int) -> Path:
    """``<stem>.part<index><suffix>`` next to the master file."""
    path = Path(output_file)
    return path.with_name(f"{path.stem}.part{index}{path.suffix}")


def _runs(rows: list[int]) -> list[tuple[int, int, int]]:
    """(master row, part row, length) of each stretch where both advance by one."""
    runs: list[tuple[int, int, int]] = []
    for k, row in enumerate(rows):
        if runs and runs[-1][1] + runs[-1][2] == row and runs[-1][0] + runs[-1][2] == k:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((k, row, 1))
    return runs


def write_master(
    output_file: str, parts: list[PartFile], image_shape: tuple[int, int], info: dict, config: dict
) -> int:
    """Write ``output_file`` over ``parts``; returns the number of whole images. OSError if a part
    cannot be read (the message names it)."""
    metadata = []
    dtype = None
    for part in parts:
        try:
            with h5py.File(part.path, "r") as f:
                data = f["/entry/data"]
                dtype = data["data"].dtype
                n = min(data["data"].shape[0], data["image_id"].shape[0])
                metadata.append({key: data[key][:n] for key in ("image_id", "n_missing_packets", "timestamp")})
        except (OSError, KeyError) as error:
            raise OSError(f"part file {part.path} of host {part.host} cannot be read: {error}") from None
    rows = [{int(image_id): row for row, image_id in enumerate(m["image_id"])} for m in metadata]
    common = [int(i) for i in metadata[0]["image_id"] if all(int(i) in r for r in rows[1:])][: info["n_images"]]
    n = len(common)
    height, width = image_shape
    layout = h5py.VirtualLayout(shape=(n, height, width), dtype=dtype, maxshape=(n, height, width))
    for part, part_rows, m in zip(parts, rows, metadata, strict=True):
        p = part.part
        source = h5py.VirtualSource(part.path.name, "/entry/data/data", shape=(len(m["image_id"]), p.height, p.width))
        for master_row, part_row, length in _runs([part_rows[i] for i in common]):
            layout[master_row : master_row + length, p.top : p.top + p.height, p.left : p.left + p.width] = source[
                part_row : part_row + length
            ]
    picked = [np.array([r[i] for i in common], dtype=np.int64) for r in rows]
    n_missing = sum((m["n_missing_packets"][k].astype(np.uint64) for m, k in zip(metadata, picked, strict=True)))
    timestamps = np.min([m["timestamp"][k] for m, k in zip(metadata, picked, strict=True)], axis=0)
    with as_file_user(int(config.get("writer_user_id", 0))), h5py.File(output_file, "w-") as f:
        entry = f.create_group("entry")
        entry.attrs.update(
            {
                "NX_class": "NXentry",
                "run_id": info["run_id"],
                "detector_name": config["detector_name"],
                "detector_type": config["detector_type"],
                "software_version": __version__,
                "config": json.dumps(config),
                "n_images_requested": info["n_images"],
                "n_images_written": n,
                "stop_time": time.time(),
                "parts": json.dumps(
                    [{"file": x.path.name, "host": x.host, "modules": [x.part.first, x.part.last]} for x in parts]
                ),
            }
        )
        data = entry.create_group("data")
        data.attrs.update({"NX_class": "NXdata", "signal": "data"})
        data.create_virtual_dataset("data", layout, fillvalue=0)
        data.create_dataset("image_id", data=np.array(common, dtype=np.uint64))
        data.create_dataset("n_missing_packets", data=np.asarray(n_missing, dtype=np.uint32).reshape(n))
        data.create_dataset("is_good_frame", data=np.asarray(n_missing, dtype=np.uint64).reshape(n) == 0)
        data.create_dataset("timestamp", data=np.asarray(timestamps, dtype=np.float64).reshape(n))
        data["timestamp"].attrs["units"] = "s"
    return n
