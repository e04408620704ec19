"""HDF5 writer: where files are written (layout in ``../shared/spec/hdf5-layout.md``).

``/entry/data/data`` holds the images, one chunk per image; beside it one entry per image in
``image_id``, ``n_missing_packets``, ``is_good_frame`` and ``timestamp``.

A full disk never surprises the HDF5 library: the writer keeps disk blocks reserved ahead of
the file's end (``fallocate`` with ``FALLOC_FL_KEEP_SIZE``: reserved, but the file does not
grow) for the next images plus HDF5's own metadata. A request whose first reservation fails
is refused with a clear message; when the reservation cannot be extended during an
acquisition, the writer stops *before* writing into unreserved space, so the acquisition ends
FAILED with "disk full" and a file that closes cleanly with every image written so far.

Uncompressed images go from the ring buffer into their chunk with ``write_direct_chunk`` (no
copy in Python, no type conversion); so do chunks compressed by the native pool
(``daq_server.compression``); other compressed ones go through h5py's filter pipeline. The small
metadata datasets are written once a second and at the end, with an HDF5 flush, so what was
written survives a crash of the server (the kernel keeps the pages; power loss is not
covered). An acquisition that ends early shrinks every dataset to the images written.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
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
METADATA_SLACK_BYTES = 4 << 20  # always reserved past the images, for HDF5's metadata at close
RESERVE_STEP_BYTES = 256 << 20  # how far ahead of the images the disk is reserved

_FALLOC_FL_KEEP_SIZE = 1
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]

_QUARANTINE: list = []
"""h5py objects of files whose HDF5 writes failed anyway (an I/O error). The HDF5 library is not
safe to use on such a file again: even releasing its objects can crash the process, so they
are kept, unreleased, for the life of the server (a few handles per failed file)."""


class WriterError(OSError):
    """The file cannot be written (no space, no permission …); the message says why."""


class DiskFull(WriterError):
    """No disk space could be reserved for the next image; nothing was written past the reservation."""


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

    @property
    def image_bytes(self) -> int:
        return self.shape[0] * self.shape[1] * np.dtype(self.dtype).itemsize


def reserve(fd: int, offset: int, length: int) -> None:
    """Reserve disk blocks without changing the file size (Python's posix_fallocate cannot)."""
    if _libc.fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        code = ctypes.get_errno()
        if code == errno.EOPNOTSUPP:  # a file system without fallocate: nothing to reserve with
            return
        raise OSError(code, os.strerror(code))


def free_bytes(folder: Path) -> int:
    """Bytes available to an unprivileged user in ``folder``'s file system."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def has_quarantined_files() -> bool:
    """Did any HDF5 write fail in this process (see _QUARANTINE)?"""
    return bool(_QUARANTINE)


class Hdf5Writer:
    """One open output file; ``write`` one image at a time, then ``close``."""

    def __init__(self, target: WriteTarget):
        self.target = target
        self.n_written = 0
        self._last_flush = time.monotonic()
        n = target.n_images
        self._frame_numbers = np.zeros(n, dtype=np.uint64)
        self._n_missing = np.zeros(n, dtype=np.uint32)
        self._timestamps = np.zeros(n, dtype=np.float64)
        self._flushed = 0  # metadata entries already in the file
        self._broken = False  # an HDF5 write failed: the file must not be touched again
        self._fd: int | None = None
        self._reserved_end = 0
        self._size_bound = 0  # the file's size is at most this (refreshed when a reservation is made)
        self._direct = target.compression == "none"
        self._dtype = np.dtype(target.dtype)
        with as_file_user(target.user_id):
            self._file = h5py.File(target.output_file, "w-")
            try:
                self._create_layout()
                self._file.flush()  # a valid (empty) file on disk from the first moment
                self._fd = os.open(target.output_file, os.O_WRONLY)  # for fallocate only
                self._reserve_ahead()
            except (OSError, RuntimeError) as error:  # h5py reports a failed HDF5 write as either
                self._abandon()
                raise WriterError(self._no_room(describe_error(error))) from None
            except Exception:
                self._abandon()
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
        n, shape = t.n_images, (t.n_images, *t.shape)
        self.images = data.create_dataset(
            "data", shape=shape, maxshape=shape, chunks=(1, *t.shape), dtype=t.dtype, **compression
        )
        self.image_id = data.create_dataset("image_id", shape=(n,), maxshape=(n,), dtype=np.uint64)
        self.n_missing = data.create_dataset("n_missing_packets", shape=(n,), maxshape=(n,), dtype=np.uint32)
        self.is_good = data.create_dataset("is_good_frame", shape=(n,), maxshape=(n,), dtype=bool)
        self.timestamp = data.create_dataset("timestamp", shape=(n,), maxshape=(n,), dtype=np.float64)
        self.timestamp.attrs["units"] = "s"
        self.timestamp.attrs["description"] = "unix time the image's first packet arrived"

    def _reserve_ahead(self) -> None:
        """Keep the disk reserved for the next images and the metadata of the close: a step ahead
        where the disk allows, else at least the next image; OSError if not even that fits."""
        remaining = (self.target.n_images - self.n_written) * self.target.image_bytes
        size = self._size_bound = os.fstat(self._fd).st_size
        for ahead in (min(remaining, RESERVE_STEP_BYTES), self.target.image_bytes):
            end = size + ahead + METADATA_SLACK_BYTES
            if end <= self._reserved_end:
                return
            try:
                reserve(self._fd, self._reserved_end, end - self._reserved_end)
            except OSError:
                if ahead == self.target.image_bytes:
                    raise
                continue
            self._reserved_end = end
            return

    def _no_room(self, reason: str) -> str:
        folder = Path(self.target.output_file).parent
        return f"cannot write in {folder} ({free_bytes(folder) / 1e9:.2f} GB free): {reason}"

    def _abandon(self) -> None:
        """Creation failed: remove the partial file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            self._file.close()
        except Exception:  # noqa: BLE001 - h5py raises OSError or RuntimeError here; the file goes anyway
            pass
        finally:
            Path(self.target.output_file).unlink(missing_ok=True)

    def write(
        self,
        image: np.ndarray,
        frame_number: int,
        n_missing_packets: int,
        receive_time: float,
        chunk: memoryview | bytes | None = None,
    ) -> None:
        """Write the next image and its metadata; DiskFull (nothing written) when no space is left.

        ``chunk``: the image already compressed in the dataset's filter format (see
        daq_server.compression), written as it is."""
        i = self.n_written
        image_bytes = self.target.image_bytes if chunk is None else len(chunk)
        # no system call per image: each image grows the file by at most image_bytes
        if self._size_bound + image_bytes + METADATA_SLACK_BYTES > self._reserved_end:
            try:
                self._reserve_ahead()
            except OSError as error:
                raise DiskFull(self._no_room(f"the disk is full after {i} images ({error.strerror})")) from None
        try:
            if chunk is not None:
                self.images.id.write_direct_chunk((i, 0, 0), chunk)  # compressed by the pool
            elif self._direct and image.dtype == self._dtype and image.flags.c_contiguous:
                self.images.id.write_direct_chunk((i, 0, 0), image)  # straight from the ring buffer
            else:  # compressed, or bytes in another order (a big-endian bsread source): convert
                self.images[i] = image
        except Exception:
            self._broken = True
            raise
        self._frame_numbers[i] = frame_number
        self._n_missing[i] = n_missing_packets
        self._timestamps[i] = receive_time
        self.n_written += 1
        self._size_bound += image_bytes
        now = time.monotonic()
        if now - self._last_flush > FLUSH_INTERVAL_S:
            self._flush_metadata()
            self._last_flush = now

    def _flush_metadata(self) -> None:
        start, end = self._flushed, self.n_written
        if end > start:
            self.image_id[start:end] = self._frame_numbers[start:end]
            self.n_missing[start:end] = self._n_missing[start:end]
            self.is_good[start:end] = self._n_missing[start:end] == 0
            self.timestamp[start:end] = self._timestamps[start:end]
            self._flushed = end
        self._file.flush()  # to the page cache: the file survives a crash of the server

    def close(self) -> None:
        """Write the metadata, shrink the datasets to the images written, stamp the stop time, close."""
        if self._broken:
            self._quarantine()
            raise WriterError(f"the file was left as it was when writing failed ({self._flushed} images recorded)")
        if self._file is None or not self._file.id.valid:
            return
        try:
            self._flush_metadata()
            n = self.n_written
            if n < self.target.n_images:
                for dataset in (self.images, self.image_id, self.n_missing, self.is_good, self.timestamp):
                    dataset.resize(n, axis=0)
            entry = self._file["entry"]
            entry.attrs["stop_time"] = time.time()
            entry.attrs["n_images_written"] = n
        finally:
            self._file.close()
            self._release_reservation()

    def _release_reservation(self) -> None:
        """Blocks reserved past the end of the closed file go back to the file system."""
        if self._fd is None:
            return
        try:  # growing then shrinking frees every block past the end, reserved ones included
            size = self._size_bound = os.fstat(self._fd).st_size
            os.ftruncate(self._fd, size + 1)
            os.ftruncate(self._fd, size)
        except OSError:
            pass  # the reservation only costs space until the file is rewritten
        os.close(self._fd)
        self._fd = None

    def _quarantine(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        _QUARANTINE.extend([self._file, self.images, self.image_id, self.n_missing, self.is_good, self.timestamp])
        self._file = self.images = self.image_id = self.n_missing = self.is_good = self.timestamp = None


def describe_error(error: BaseException) -> str:
    """One line for the user: ours whole, HDF5's without the pages of detail it appends."""
    if isinstance(error, WriterError):
        return str(error)
    text = getattr(error, "strerror", None) or str(error)
    return text.split(" (")[0].splitlines()[0]
