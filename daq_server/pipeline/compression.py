"""Image compression outside the GIL: bitshuffle+LZ4 chunks made by a pool of native threads.

The chunks are in the format of HDF5 filter 32008 (bitshuffle with LZ4, as written by
``hdf5plugin.Bitshuffle(cname="lz4")``), so the writer stores them as they are with
``write_direct_chunk`` and any reader with ``hdf5plugin`` (or the bitshuffle HDF5 plugin)
decompresses them. The C side is ``csrc/pipeline/compress_pool.c`` (cffi module ``daq_server.pipeline._pipeline``,
linked with the system's liblz4).

The pool compresses images while they stay in the ring buffer (no copy): :meth:`CompressionPool.submit`
queues an image, :meth:`CompressionPool.next` hands back compressed chunks strictly in the order
the images were submitted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from daq_server.pipeline._pipeline import ffi, lib

BITSHUFFLE_LZ4 = "bitshuffle-lz4"
HDF5_FILTER_ID = 32008
MAX_THREADS: int = lib.CP_MAX_THREADS


def default_threads(receive_threads_realtime: bool = False) -> int:
    """One compressing thread per CPU this process may use; one CPU left for the receive threads
    unless they run real-time (then they come first anyway, and the writing may take every CPU
    they leave)."""
    cpus = len(os.sched_getaffinity(0))
    return max(1, min(MAX_THREADS, cpus if receive_threads_realtime else cpus - 1))


def compress(image: np.ndarray) -> bytes:
    """One bitshuffle+LZ4 chunk of ``image`` (C-contiguous), in this thread."""
    image = np.ascontiguousarray(image)
    capacity = lib.cp_bound(image.nbytes, image.itemsize)
    out = ffi.new("uint8_t[]", capacity)
    size = lib.cp_compress(ffi.from_buffer(image), image.nbytes, image.itemsize, out, capacity)
    if size == 0:
        raise ValueError(f"cannot compress {image.dtype} images")
    return ffi.buffer(out, size)[:]


@dataclass
class Chunk:
    """A compressed image from the pool: write ``data`` (valid until :meth:`CompressionPool.done`)."""

    job: int
    tag: int
    data: memoryview
    raw_bytes: int


class CompressionPool:
    """``n_threads`` native threads compressing images of at most ``max_bytes`` of ``itemsize``-byte pixels."""

    def __init__(self, n_threads: int, max_bytes: int, itemsize: int, in_flight: int | None = None):
        if not 1 <= n_threads <= MAX_THREADS:
            raise ValueError(f"compression threads must be 1 to {MAX_THREADS}, not {n_threads}")
        err = ffi.new("char[256]")
        self.in_flight = in_flight or 2 * n_threads + 2
        self._pool = lib.cp_create(n_threads, self.in_flight, max_bytes, itemsize, err, len(err))
        if self._pool == ffi.NULL:
            raise RuntimeError(ffi.string(err).decode())
        self.n_threads = n_threads
        self.max_bytes = max_bytes
        self._result = ffi.new("cp_result *")
        self._raw_bytes: dict[int, int] = {}
        self.final_counters: dict[str, int] = {}

    def submit(self, image: np.ndarray, tag: int) -> None:
        """Queue ``image`` (it must stay valid until its chunk comes back); waits while ``in_flight``
        images are queued or being compressed, so take (:meth:`next`) and give back (:meth:`done`)
        chunks before submitting more than ``in_flight``."""
        if self._pool is None:
            raise RuntimeError("the compression pool is closed")
        job = lib.cp_submit(self._pool, ffi.from_buffer(image), image.nbytes, tag)
        if job < 0:
            raise ValueError(f"an image of {image.nbytes} bytes does not fit the pool's {self.max_bytes}")
        self._raw_bytes[job] = image.nbytes

    def next(self, timeout: float = 0.0) -> Chunk | None:
        """The oldest submitted image's chunk once compressed (waits up to ``timeout`` s), else None."""
        if self._pool is None or not lib.cp_next(self._pool, int(timeout * 1000), self._result):
            return None
        r = self._result
        if r.size == 0:
            raise RuntimeError("an image could not be compressed")
        return Chunk(r.job, int(r.tag), memoryview(ffi.buffer(r.data, r.size)), self._raw_bytes.pop(r.job))

    def done(self, chunk: Chunk) -> None:
        """The chunk was written: its buffer may be reused."""
        chunk.data.release()
        lib.cp_done(self._pool, chunk.job)

    @property
    def pending(self) -> int:
        """Images submitted whose chunks were not taken yet."""
        return lib.cp_pending(self._pool) if self._pool is not None else 0

    def counters(self) -> dict[str, int]:
        """Chunks, bytes in and out, and the CPU nanoseconds the threads spent compressing."""
        out = ffi.new("cp_counters *")
        if self._pool is not None:
            lib.cp_get_counters(self._pool, out)
        return {name: int(getattr(out, name)) for name, _ in ffi.typeof("cp_counters").fields}

    def close(self) -> None:
        """Finish the queued images and stop the threads; the counters stay in ``final_counters``."""
        if self._pool is not None:
            final = ffi.new("cp_counters *")
            lib.cp_destroy(self._pool, final)
            self._pool = None
            self.final_counters = {name: int(getattr(final, name)) for name, _ in ffi.typeof("cp_counters").fields}
