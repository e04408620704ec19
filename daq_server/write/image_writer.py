"""An acquisition's images into its file, in order: written straight from the ring buffer, or first run
through the native image pipeline (``daq_server.pipeline.image_pipeline``) while they stay in the ring
buffer: converted to photons or keV (a Jungfrau with a conversion), compressed, or both; then written
as pre-compressed chunks or from the pipeline's converted image.

:func:`open_writer` picks the writer of a target: this one, or a pedestal acquisition's
(``daq_server.write.pedestal_writer``)."""

from __future__ import annotations

import logging
import time
from collections import deque

import numpy as np

from daq_server.config import as_dict
from daq_server.pipeline.compression import BITSHUFFLE_LZ4, default_threads
from daq_server.pipeline.image_pipeline import ImagePipeline
from daq_server.receive.image_source import ReceivedImage
from daq_server.stream.stream2_feed import Stream2Feed
from daq_server.write.conversion import open_conversion
from daq_server.write.hdf5_writer import Hdf5Writer
from daq_server.write.pedestal_writer import PedestalWriter
from daq_server.write.request import WriteTarget
from daq_server.write.results_file import open_results

_log = logging.getLogger("daq_server.write.image_writer")


class ImageWriter:
    """Writes images into a new file for ``target``; ``compression_threads`` 0 picks a default."""

    def __init__(self, target: WriteTarget, compression_threads: int = 0):
        self.target = target
        self._pool: ImagePipeline | None = None
        self._waiting: deque[ReceivedImage] = deque()  # submitted to the pool, in order
        self.compression: dict[str, int] = {}
        self._conversion_counts: dict[str, int] = {}
        opened = open_conversion(target.conversion, as_dict(target.config), target.shape) if target.conversion else None
        self._input_dtype = np.dtype(np.uint16) if opened is not None else np.dtype(target.dtype)
        self._flagged = int(np.count_nonzero(opened.flags)) if opened is not None else 0
        """Pixels the pedestal flagged: no data in every image (in pixel_mask, not per image)."""
        compress = target.compression == BITSHUFFLE_LZ4
        flags = opened.flags if opened is not None else None
        results = open_results(target.config, target.request, target.shape, target.dtype, flags)
        self._has_results = results is not None
        self._results_delay = target.config.results.max_delay_s if results is not None else None
        self._results_behind = False
        self._without_results = 0  # images that went without their results (late, or not through the pipeline)
        if compress or opened is not None or results is not None:  # first the pool: no file is left if it fails
            threads = compression_threads or default_threads()
            conversion = opened.conversion if opened is not None else None
            self._pool = ImagePipeline(
                threads, target.raw_image_bytes, self._input_dtype.itemsize, conversion=conversion, compress=compress,
                results=results,
            )  # fmt: skip
        try:
            self.file = Hdf5Writer(target, opened, results)
        except BaseException:
            if self._pool is not None:
                self._pool.close()
            raise
        self.summary_counts: dict[str, int] = {}
        """What this writer counted besides its images, once closed, also in the file's ``/entry`` attributes:
        the images it put on the Stream2 stream and those the stream dropped, ``images_without_results``."""
        self._stream = None
        if target.stream is not None:
            share = target.share
            index, count = (share.index, share.count) if share is not None else (0, 1)
            self._stream = Stream2Feed(target.stream, target.shape, target.dtype, index, count)

    @property
    def n_written(self) -> int:
        """Images the file records (pixels and metadata flushed): what the status reports."""
        return self.file.n_recorded

    @property
    def last_image(self) -> dict | None:
        """The last image written and its statistics (only when the request asked for them)."""
        return self.file.last_image

    def put(self, image: ReceivedImage) -> None:
        """Write ``image`` now, or hand it to the pool (it is held until its result is written)."""
        data = image.data
        if self._pool is None or data.dtype != self._input_dtype or not data.flags.c_contiguous:
            if self.target.conversion is not None:
                raise ValueError(f"a converting acquisition takes C-contiguous uint16 images, not {data.dtype}")
            self.drain(wait=True)  # e.g. a big-endian bsread image: h5py's filter converts it, in order
            self._without_results += 1
            self.file.write(data, image.frame_number, image.n_missing_packets, image.receive_time)
            if self._stream is not None:
                self._stream.send(image.frame_number, image.receive_time, data, compressed=False)
            return
        if len(self._waiting) >= self._pool.in_flight:  # the pool is full: write the oldest first
            self.drain(wait=True, keep=self._pool.in_flight - 1)
        late = self._behind(image)
        if late:  # the DAQ is behind: this image goes without its results, never the image for them
            self._without_results += 1
        image.hold()
        self._waiting.append(image)
        try:
            self._pool.submit(data, image.frame_number, results=not late)
        except Exception:
            self._waiting.pop().drop()
            raise
        self.drain()

    def _behind(self, image: ReceivedImage) -> bool:
        """Is the DAQ behind (results left out)? From an image later than ``max_delay_s`` until one within half
        of it: resuming at once would let each image with results push the backlog back up."""
        if self._results_delay is not None:
            age = time.time() - image.receive_time
            if age > self._results_delay:
                self._results_behind = True
            elif age < self._results_delay / 2:
                self._results_behind = False
        return self._results_behind

    def drain(self, wait: bool = False, keep: int = 0) -> None:
        """Write the images the pool finished, in submission order; with ``wait``, until only ``keep``
        images are left in flight."""
        while len(self._waiting) > keep:
            result = self._pool.next(timeout=0.5 if wait else 0.0)
            if result is None:
                if wait:
                    continue
                return
            image = self._waiting.popleft()
            written = image.data  # the image itself, or its conversion (also for the statistics)
            no_data = False  # pixels beyond the flagged ones without a valid value (e.g. the gain code 10)
            try:
                if self.target.conversion is not None:
                    no_data = result.counts["no_data_pixels"] > self._flagged
                    written = np.frombuffer(result.image, dtype=self.target.dtype).reshape(self.target.shape)
                    for key, value in result.counts.items():
                        self._conversion_counts[key] = self._conversion_counts.get(key, 0) + value
                chunk = result.data if result.compressed else None
                meta = (image.frame_number, image.n_missing_packets, image.receive_time)
                self.file.write(written, *meta, chunk=chunk, no_data=no_data, results=result.results)
                if self._stream is not None:  # the chunk written into the file, or the (converted) image
                    data = chunk if chunk is not None else written
                    self._stream.send(image.frame_number, image.receive_time, data, chunk is not None, result.results)
            finally:
                written = None  # no view of the pipeline's buffer may outlive done()
                self._pool.done(result)
                image.drop()

    def idle(self) -> None:
        """No image for a while: write what the pool finished and record it in the file."""
        self.drain()
        self.file.flush_if_quiet()

    def close(self, write_pending: bool = True, summary: dict | None = None) -> None:
        """Write (or, after a failure, drop) the images in flight, stop the pool, close the file with
        the ``summary`` items as /entry attributes."""
        try:
            if write_pending and self._pool is not None:
                self.drain(wait=True)
        finally:
            if self._pool is not None:
                self._pool.close()  # its threads are done: the counters are final
                self.compression = self._pool.final_counters | self._conversion_counts
                self._pool = None
                while self._waiting:
                    self._waiting.popleft().drop()
                self._log_compression()
            if self._stream is not None:  # after the last image, before the file records the stream's counts
                self.summary_counts.update(self._stream.finish())
            if self._has_results:
                self.summary_counts["images_without_results"] = self._without_results
            self.file.close({**(summary or {}), **self.summary_counts})

    def _log_compression(self) -> None:
        c = self.compression
        if c.get("images"):
            _log.info(
                "pipeline: %d images, %.3f GB -> %.3f GB (%.1fx), %.2f GB/s per core",
                c["images"], c["bytes_in"] / 1e9, c["bytes_out"] / 1e9, c["bytes_in"] / max(c["bytes_out"], 1),
                c["bytes_in"] / max(c["busy_ns"], 1),
            )  # fmt: skip


def open_writer(target: WriteTarget, compression_threads: int = 0):
    """The writer of ``target``: an ImageWriter, or a PedestalWriter for a pedestal acquisition."""
    if target.request.pedestal:
        return PedestalWriter(target, compression_threads)
    return ImageWriter(target, compression_threads)
