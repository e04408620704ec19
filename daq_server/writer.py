"""HDF5 writer: where files are written (layout in ``../shared/spec/hdf5-layout.md``).

``/entry/data/data`` holds the images, one chunk per image; beside it one entry per image in
``image_id``, ``n_missing_packets``, ``is_good_frame`` and ``timestamp``. The file is flushed
about once a second, so what was written survives a crash of the server; an acquisition
that ends early shrinks every dataset to the images actually written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from daq_server import __version__
from daq_server.file_owner import as_file_user

COMPRESSIONS = ("none", "bitshuffle-lz4")
FLUSH_INTERVAL_S = 1.0


@dataclass(frozen=True)
class WriteTarget:
    """What an acquisition writes: file, image geometry, run metadata."""

    output_file: str
    n_images: int
    run_id: int
    shape: tuple[int, int]
    dtype: np.dtype
    config: dict
    compression: str = "none"
    user_id: int = 0


class Hdf5Writer:
    """One open output file; ``write`` one image at a time, then ``close``."""

    def __init__(self, target: WriteTarget):
        self.target = target
        self.n_written = 0
        self.bytes_written = 0
        self._last_flush = time.monotonic()
        with as_file_user(target.user_id):
            self._file = h5py.File(target.output_file, "w-")
        try:
            self._create_layout()
            self._file.flush()  # a valid (empty) file on disk from the first moment
        except Exception:
            self._file.close()
            Path(target.output_file).unlink(missing_ok=True)
            raise

    def _create_layout(self) -> None:
        t = self.target
        entry = self._file.create_group("entry")
        entry.attrs.update(
            {
                "NX_class": "NXentry",
                "run_id": t.run_id,
                "detector_name": t.config["detector_name"],
                "detector_type": t.config["detector_type"],
                "start_time": time.time(),
                "software_version": __version__,
                "config": json.dumps(t.config),
                "n_images_requested": t.n_images,
            }
        )
        data = entry.create_group("data")
        data.attrs.update({"NX_class": "NXdata", "signal": "data"})
        compression = hdf5plugin.Bitshuffle(cname="lz4") if t.compression == "bitshuffle-lz4" else {}
        self.images = data.create_dataset(
            "data",
            shape=(t.n_images, *t.shape),
            maxshape=(t.n_images, *t.shape),
            chunks=(1, *t.shape),
            dtype=t.dtype,
            **compression,
        )
        n = t.n_images
        self.image_id = data.create_dataset("image_id", shape=(n,), maxshape=(n,), dtype=np.uint64)
        self.n_missing = data.create_dataset("n_missing_packets", shape=(n,), maxshape=(n,), dtype=np.uint32)
        self.is_good = data.create_dataset("is_good_frame", shape=(n,), maxshape=(n,), dtype=bool)
        self.timestamp = data.create_dataset("timestamp", shape=(n,), maxshape=(n,), dtype=np.float64)
        self.timestamp.attrs["units"] = "s"
        self.timestamp.attrs["description"] = "unix time the image's first packet arrived"

    def write(self, image: np.ndarray, frame_number: int, n_missing_packets: int, receive_time: float) -> None:
        """Write the next image and its metadata (the array is copied into the file by HDF5)."""
        i = self.n_written
        self.images[i] = image
        self.image_id[i] = frame_number
        self.n_missing[i] = n_missing_packets
        self.is_good[i] = n_missing_packets == 0
        self.timestamp[i] = receive_time
        self.n_written += 1
        self.bytes_written += image.nbytes
        now = time.monotonic()
        if now - self._last_flush > FLUSH_INTERVAL_S:
            self._file.flush()
            self._last_flush = now

    def close(self) -> None:
        """Shrink the datasets to the images written, stamp the stop time, close the file."""
        if not self._file.id.valid:
            return
        try:
            n = self.n_written
            if n < self.target.n_images:
                for dataset in (self.images, self.image_id, self.n_missing, self.is_good, self.timestamp):
                    dataset.resize(n, axis=0)
            entry = self._file["entry"]
            entry.attrs["stop_time"] = time.time()
            entry.attrs["n_images_written"] = n
        finally:
            self._file.close()
