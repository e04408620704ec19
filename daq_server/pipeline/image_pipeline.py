"""Per-image work outside the GIL: a pool of native threads runs each image through its stages, in order.

Stages (``csrc/pipeline/image_pipeline.c``), each reading what the previous one left:

1. **convert** (optional): raw gain-switching words to photon counts or keV
   (``daq_server.pipeline.jungfrau_conversion``), into a buffer of the job;
2. **results** (optional): ROI sums, radial profile, spot count of that image
   (``daq_server.pipeline.image_results``), into :attr:`PipelineResult.results`;
3. **compress** (optional): a bitshuffle+LZ4 chunk (``daq_server.pipeline.compression``).

The images stay in the ring buffer while the threads work on them (no copy): :meth:`ImagePipeline.submit`
queues an image, :meth:`ImagePipeline.next` hands back the results strictly in the order the images
were submitted: the chunk, or (no compression) the converted image, valid until :meth:`ImagePipeline.done`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daq_server.pipeline._pipeline import ffi, lib
from daq_server.pipeline.compression import MAX_THREADS
from daq_server.pipeline.image_results import ImageResults
from daq_server.pipeline.jungfrau_conversion import JungfrauConversion, counts_dict


@dataclass
class PipelineResult:
    """One image's result: write ``data`` (valid until :meth:`ImagePipeline.done`)."""

    job: int
    tag: int
    data: memoryview
    raw_bytes: int
    compressed: bool
    """``data`` is a chunk in the dataset's filter format; else the (converted) image itself."""
    image: memoryview
    """The image before compression: the converted one (the job's buffer), or the submitted one."""
    counts: dict[str, int] | None
    """The conversion's counts of this image (None without a conversion)."""
    results: dict | None = None
    """The image's results (:meth:`ImageResults.unpack`: ``radial_profile``, ``roi_sums``, ``spot_count``, as
    configured), None without a results stage."""


class ImagePipeline:
    """``n_threads`` native threads running images of at most ``max_bytes`` of ``itemsize``-byte pixels
    through ``conversion`` (a converting pipeline takes raw uint16 images of the conversion's shape),
    ``results`` (its tables must be of the images after the conversion) and, with ``compress``,
    bitshuffle+LZ4."""

    def __init__(
        self,
        n_threads: int,
        max_bytes: int,
        itemsize: int,
        in_flight: int | None = None,
        conversion: JungfrauConversion | None = None,
        compress: bool = True,
        results: ImageResults | None = None,
    ):
        if not 1 <= n_threads <= MAX_THREADS:
            raise ValueError(f"compression threads must be 1 to {MAX_THREADS}, not {n_threads}")
        if conversion is None and results is None and not compress:
            raise ValueError("an image pipeline without stages has nothing to do")
        err = ffi.new("char[256]")
        stages = ffi.new("ip_stages *")
        stages.conversion = conversion.tables if conversion is not None else ffi.NULL
        stages.compress = int(compress)
        stages.results = results.tables if results is not None else ffi.NULL
        self.in_flight = in_flight or 2 * n_threads + 2
        self._conversion = conversion  # its tables must outlive the threads
        self._results = results  # so must these
        self._pool = lib.ip_create(n_threads, self.in_flight, max_bytes, itemsize, stages, err, len(err))
        if self._pool == ffi.NULL:
            raise RuntimeError(ffi.string(err).decode())
        self.n_threads = n_threads
        self.max_bytes = max_bytes
        self.compress = compress
        self._result = ffi.new("ip_result *")
        self._raw_bytes: dict[int, int] = {}
        self.final_counters: dict[str, int] = {}

    def submit(self, image: np.ndarray, tag: int, results: bool = True) -> None:
        """Queue ``image`` (it must stay valid until its result comes back); waits while ``in_flight``
        images are queued or being worked on, so take (:meth:`next`) and give back (:meth:`done`)
        results before submitting more than ``in_flight``. ``results`` False: this image goes without the
        results stage (its result's ``results`` is None)."""
        if self._pool is None:
            raise RuntimeError("the image pipeline is closed")
        job = lib.ip_submit(self._pool, ffi.from_buffer(image), image.nbytes, tag, int(not results))
        if job < 0:
            raise ValueError(f"an image of {image.nbytes} bytes does not fit the pipeline's {self.max_bytes}")
        self._raw_bytes[job] = image.nbytes

    def next(self, timeout: float = 0.0) -> PipelineResult | None:
        """The oldest submitted image's result once done (waits up to ``timeout`` s), else None."""
        if self._pool is None or not lib.ip_next(self._pool, int(timeout * 1000), self._result):
            return None
        r = self._result
        if r.size == 0:
            raise RuntimeError("an image could not be compressed")
        counts = counts_dict(r.counts) if self._conversion is not None else None
        data = memoryview(ffi.buffer(r.data, r.size))
        image = memoryview(ffi.buffer(r.image, r.image_bytes))
        results = None
        if self._results is not None and r.results != ffi.NULL:
            results = self._results.unpack(ffi.buffer(r.results, 8 * self._results.n_values))
        return PipelineResult(
            r.job, int(r.tag), data, self._raw_bytes.pop(r.job), self.compress, image, counts, results
        )

    def done(self, result: PipelineResult) -> None:
        """The result was written: its buffer may be reused."""
        result.data.release()
        result.image.release()
        lib.ip_done(self._pool, result.job)

    @property
    def pending(self) -> int:
        """Images submitted whose results were not taken yet."""
        return lib.ip_pending(self._pool) if self._pool is not None else 0

    def counters(self) -> dict[str, int]:
        """Images, bytes in and out, and the CPU nanoseconds the threads spent on the stages."""
        out = ffi.new("ip_counters *")
        if self._pool is not None:
            lib.ip_get_counters(self._pool, out)
        return {name: int(getattr(out, name)) for name, _ in ffi.typeof("ip_counters").fields}

    def close(self) -> None:
        """Finish the queued images and stop the threads; the counters stay in ``final_counters``."""
        if self._pool is not None:
            final = ffi.new("ip_counters *")
            lib.ip_destroy(self._pool, final)
            self._pool = None
            self.final_counters = {name: int(getattr(final, name)) for name, _ in ffi.typeof("ip_counters").fields}
