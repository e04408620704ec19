"""HDF5 writer: where files are written (layout in ``../shared/spec/hdf5-layout.md``).

``/entry/data/data`` holds the images, one chunk per image; beside it one entry per image in
``image_id``, ``n_missing_packets``, ``is_good_frame`` and ``timestamp`` (and, when the request asks for
them, ``image_sum`` and ``image_max``: ``image_statistics``). The NeXus/NXmx description around them
comes from ``nxmx``, the whole layout from ``file_layout``; the pixels of lost packets are marked per
image in ``lost_pixel_mask`` at each flush (``pixel_mask``).

Live files: the file is created under a hidden name, laid out, switched to HDF5 SWMR mode and only then
given its name, so a reader that opens it with ``swmr=True`` the moment it appears succeeds. Every dataset
starts empty and grows with the images (the image stack per image, the per-image datasets at each flush),
so a file left by a crashed server holds what was flushed, not the requested size. Nothing can be added in
SWMR mode, so what the close writes (end time, counters) is made empty at creation and written in place:
the file is never reopened, and readers holding it open never stand in the close's way.

A full disk never surprises the HDF5 library: the writer keeps disk blocks reserved ahead of
the file's end (``fallocate`` with ``FALLOC_FL_KEEP_SIZE``: reserved, but the file does not
grow) for the next images plus HDF5's own metadata. A request whose first reservation fails
is refused with a clear message; when the reservation cannot be extended during an
acquisition, the writer stops *before* writing into unreserved space, so the acquisition ends
FAILED with "disk full" and a file that closes cleanly with every image written so far.

Uncompressed images go from the ring buffer (or the image pipeline's converted image) into their chunk
with ``write_direct_chunk`` (no copy in Python, no type conversion); so do chunks compressed by the native
image pipeline (``daq_server.pipeline.image_pipeline``); other compressed ones go through h5py's filter
pipeline. HDF5 writes the file through ``direct_file.DirectFile``: the image chunks reach the disk with
``O_DIRECT``, straight from the ring buffer or the pipeline (no page cache copy, no write-back), where the
file system allows it (not on ramfs, nor tmpfs before Linux 6.6: there, and for HDF5's metadata, the page
cache as before, with ``write_behind``). The small metadata datasets are written once a second, after an
image that follows a pause (step scans) and at the end, with an HDF5 flush, so SWMR readers see them.

Durability: a chunk written with ``O_DIRECT`` is on the disk when its write returns (in the disk's own
cache at worst), so what was flushed survives a crash of the server; with the page cache, the kernel
keeps the pages, which survives a crash of the server but not of the machine. At the close the file is
``fsync``-ed: an acquisition that ends ``Completed.`` is on the disk, metadata included, whatever
happens to the machine after.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import time
from pathlib import Path

import h5py
import numpy as np

from daq_server.write import file_layout
from daq_server.write.direct_file import BLOCK, DIRECT_MIN_BYTES, DirectFile
from daq_server.write.file_layout import FileDatasets, LayoutError
from daq_server.write.image_statistics import ImageStatistics
from daq_server.write.output_file import CreatedFile, OutputPathError
from daq_server.write.pixel_mask import LostPixels
from daq_server.write.request import WriteTarget
from daq_server.write.results_file import jsonable
from daq_server.write.write_behind import WriteBehind

COMPRESSIONS = ("none", "bitshuffle-lz4")
FLUSH_INTERVAL_S = 1.0
SLOW_IMAGE_S = 0.05  # the first image, and one after a pause this long, is flushed at once (readers see it now)
METADATA_SLACK_BYTES = 4 << 20  # always reserved past the images, for HDF5's metadata at close
RESERVE_STEP_BYTES = 256 << 20  # how far ahead of the images the disk is reserved

_FALLOC_FL_KEEP_SIZE = 1
_log = logging.getLogger("daq_server.write.hdf5_writer")
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

    def __init__(self, target: WriteTarget, conversion=None, results=None):
        """``conversion``: the open conversion of a converting acquisition (its ``record`` and ``flags`` go
        into the file, ``daq_server.write.conversion``); ``results``: the acquisition's ``ImageResults``
        (``/entry/results``, ``daq_server.write.results_file``)."""
        self._results = results
        self.target = target
        self._conversion = conversion
        self.n_written = 0
        self._last_flush = time.monotonic()
        self._last_write = float("-inf")  # the first image is always flushed at once
        self._pending: list[tuple[int, int, float]] = []  # (frame, missing packets, time) not yet in the file
        self._flushed = 0  # metadata entries already in the file
        self._broken = False  # an HDF5 write failed: the file must not be touched again
        self._fd: int | None = None
        self._reserved_end = 0
        self._size_bound = 0  # the file's size is at most this (refreshed when a reservation is made)
        self._write_behind: WriteBehind | None = None
        self._disk: DirectFile | None = None
        self._direct = target.compression == "none"
        self._dtype = np.dtype(target.dtype)
        self._file: h5py.File | None = None
        self._lost = LostPixels(self._dtype)  # the lost pixels of the images that lost packets, for the mask
        self._statistics: ImageStatistics | None = None
        self._last: tuple | None = None  # the last image's (index, frame, missing packets, sum and max, results)
        try:  # created as user_id, no link followed below the data root; HDF5 opens the created file itself
            self._created: CreatedFile = file_layout.create_file(target)
        except LayoutError as error:
            raise WriterError(str(error)) from None
        self._fd = self._created.fd  # also for fallocate and the reopen at close
        self._write_behind = WriteBehind(self._fd)
        self._disk = DirectFile(self._fd, reopen=self._created.reopen)  # as the file's user
        try:  # SWMR needs the latest format; large allocations (the chunks) start on O_DIRECT blocks
            self._file = self._created.open_hdf5(
                fileobj=self._disk, libver="latest", alignment_threshold=DIRECT_MIN_BYTES, alignment_interval=BLOCK
            )
            self._create_layout()
            self._file.flush()  # a valid (empty) file on disk before it has its name
            self._file.swmr_mode = True  # readers may open it with swmr=True from now on
            self._reserve_ahead()
        except (OSError, RuntimeError) as error:  # h5py reports a failed HDF5 write as either
            self._abandon()
            raise WriterError(self._no_room(describe_error(error))) from None
        except Exception:
            self._abandon()
            raise
        try:  # only now the name: a reader that opens it at once finds it readable (SWMR), not locked
            self._created.publish()
        except OutputPathError as error:
            self._abandon()
            raise WriterError(str(error)) from None
        self._created.close_folder()

    @property
    def bytes_direct(self) -> int:
        """Bytes of image chunks written with O_DIRECT so far (0: the file system refused it)."""
        return self._disk.bytes_direct if self._disk is not None else 0

    def _create_layout(self) -> None:
        """Groups, attributes and the (empty, growing) datasets; nothing may be added once in SWMR mode."""
        self._datasets: FileDatasets = file_layout.create_layout(
            self._file, self.target, time.time(), self._conversion, self._results
        )
        self.images = self._datasets.images
        self._statistics = self._datasets.statistics

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
        folder = Path(self.target.output.folder)
        return f"cannot write in {folder} ({free_bytes(folder) / 1e9:.2f} GB free): {reason}"

    def _abandon(self) -> None:
        """Creation failed: remove the partial file (only the one created here) and its descriptors."""
        try:
            if self._file is not None:
                self._file.close()
        except Exception:  # noqa: BLE001 - h5py raises OSError or RuntimeError here; the file goes anyway
            pass
        finally:
            self._file = None
            if self._disk is not None:
                self._disk.close()
            self._created.remove()
            self._created.close_folder()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def write(
        self,
        image: np.ndarray,
        frame_number: int,
        n_missing_packets: int,
        receive_time: float,
        chunk: memoryview | bytes | None = None,
        no_data: bool = False,
        results: dict | None = None,
    ) -> None:
        """Write the next image and its metadata; DiskFull (nothing written) when no space is left.

        ``chunk``: the image already compressed in the dataset's filter format (see
        daq_server.pipeline.compression), written as it is. ``no_data``: a conversion gave pixels of this
        image the no-data value (they go to ``lost_pixel_mask`` as lost packets' pixels do); ``results``: the
        image's results (if the file has ``/entry/results``; None: not computed for this image)."""
        i = self.n_written
        image_bytes = self.target.image_bytes if chunk is None else len(chunk)
        image_bytes += BLOCK  # no system call per image: each grows the file by at most its aligned chunk
        if self._size_bound + image_bytes + METADATA_SLACK_BYTES > self._reserved_end:
            try:
                self._reserve_ahead()
            except OSError as error:
                raise DiskFull(self._no_room(f"the disk is full after {i} images ({error.strerror})")) from None
        try:
            self.images.resize(i + 1, axis=0)  # the dataset grows with the images (SWMR readers see it)
            if chunk is not None:
                self.images.id.write_direct_chunk((i, 0, 0), chunk)  # compressed by the pool
            elif self._direct and image.dtype == self._dtype and image.flags.c_contiguous:
                self.images.id.write_direct_chunk((i, 0, 0), image)  # straight from the ring buffer
            else:  # compressed, or bytes in another order (a big-endian bsread source): convert
                self.images[i] = image
        except Exception:
            self._broken = True
            raise
        self._pending.append((frame_number, n_missing_packets, receive_time))
        missing = self._lost.note(i, image) if n_missing_packets or no_data else None  # only images without data
        if self._statistics is not None or self._datasets.results is not None:
            sum_max = None
            if self._statistics is not None:
                sum_max = self._statistics.add(image, missing, self._lost.missing_value)
            if self._datasets.results is not None:
                self._datasets.results.add(results)
            self._last = (i, frame_number, n_missing_packets, sum_max, results)  # made JSON when asked for
        self.n_written += 1
        self._size_bound += image_bytes
        if not self._disk.direct:  # with O_DIRECT, no image is in the page cache
            self._write_behind.advance(self._size_bound)
        now = time.monotonic()
        last = self.n_written == self.target.n_images
        if last or now - self._last_flush > FLUSH_INTERVAL_S or now - self._last_write > SLOW_IMAGE_S:
            self._flush_metadata()
            self._last_flush = now
        self._last_write = now

    @property
    def last_image(self) -> dict | None:
        """Index, frame, missing packets, sum and max of the last image written (with image statistics), and its
        ``results`` (with results in the config); None before the first. Made when asked for (once per batch of
        images, not per image)."""
        if self._last is None:
            return None
        index, frame_number, n_missing_packets, sum_max, results = self._last
        last = {"index": index, "image_id": frame_number, "n_missing_packets": n_missing_packets}
        if sum_max is not None:
            last |= {"sum": sum_max[0], "max": sum_max[1]}
        if self._datasets.results is not None:
            last["results"] = jsonable(results)
        return last

    def flush_if_quiet(self) -> None:
        """No image for a while: record what was written (a burst's last images are not left unrecorded)."""
        if self._flushed < self.n_written and not self._broken and time.monotonic() - self._last_write > SLOW_IMAGE_S:
            try:
                self._flush_metadata()
            except Exception:
                self._broken = True
                raise
            self._last_flush = time.monotonic()

    @property
    def n_recorded(self) -> int:
        """Images the file records: their pixels and metadata reached it with the last flush. This is what a
        crash leaves (``crash_recovery``), so it is what the status reports."""
        return self._flushed

    def _flush_metadata(self) -> None:
        if os.fstat(self._fd).st_nlink == 0:  # its folder was removed, or the file: writing on would be in vain
            self._broken = True
            raise WriterError(
                f"{self.target.output.path} was removed (or its folder) while it was written: "
                f"{self._flushed} images had been recorded in it"
            )
        start, end = self._flushed, self.n_written
        if end > start:
            frames, missing, times = zip(*self._pending, strict=True)
            columns = {"image_id": frames, "n_missing_packets": missing, "is_good_frame": np.array(missing) == 0,
                       "timestamp": times}  # fmt: skip
            for name, values in columns.items():
                dataset = self._datasets.per_image[name]
                dataset.resize(end, axis=0)
                dataset[start:end] = np.asarray(values, dtype=dataset.dtype)
            if self._statistics is not None:
                self._statistics.flush(start, end)
            if self._datasets.results is not None:
                self._datasets.results.flush(start, end)
            self._lost.flush(self._datasets.lost_pixels, end)
            self._pending.clear()
            self._flushed = end
        self._file.flush()  # to the page cache for SWMR readers; the file survives a crash of the server

    def close(self, summary: dict | None = None) -> None:
        """Write the metadata, stamp the stop time, close; the datasets hold exactly the images written.

        ``summary`` (the receiver counters of ``file_layout.SUMMARY``) goes into the ``/entry`` attributes made
        for it at creation. Everything is written in SWMR mode, in place: the file is never reopened, so
        readers holding it open (``swmr=True``) never block the close."""
        if self._broken:
            self._quarantine()
            raise WriterError(f"the file was left as it was when writing failed ({self._flushed} images recorded)")
        if self._file is None or not self._file.id.valid:
            return
        try:
            self._flush_metadata()
            n = self.n_written
            if self.images.shape[0] != n:  # an image whose write failed: not part of the file
                self.images.resize(n, axis=0)
            file_layout.finish(self._file, n, summary)
            self._file.flush()
        finally:
            try:
                self._file.close()
            finally:
                self._disk.close()
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
        try:
            os.fsync(self._fd)  # the durability promise: a closed file is on the disk
        except OSError as error:
            _log.warning("%s: fsync failed (%s)", self.target.output.path, error.strerror)
        os.close(self._fd)
        self._fd = None

    def _quarantine(self) -> None:
        self._disk.close()  # HDF5 keeps the object (quarantined below) but writes nothing more
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        _QUARANTINE.extend([self._file, self._disk, self.images, *self._datasets.per_image.values()])
        if self._datasets.results is not None:
            _QUARANTINE.extend(self._datasets.results.datasets)
        if self._statistics is not None:
            _QUARANTINE.extend(self._statistics.datasets)
            self._statistics = None
        self._file = self.images = self._datasets = None


def describe_error(error: BaseException) -> str:
    """One line for the user: ours whole; HDF5's first line whole (its reason is in the parentheses, e.g.
    "Unable to synchronously open file (unable to lock file, errno = 11 …)"), without the pages of
    detail that may follow."""
    if isinstance(error, WriterError):
        return str(error)
    text = getattr(error, "strerror", None) or str(error)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(error).__name__
