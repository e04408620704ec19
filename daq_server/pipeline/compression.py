"""Image compression outside the GIL: bitshuffle+LZ4 chunks, in native code.

The chunks are in the format of HDF5 filter 32008 (bitshuffle with LZ4, as written by
``hdf5plugin.Bitshuffle(cname="lz4")``), so the writer stores them as they are with
``write_direct_chunk`` and any reader with ``hdf5plugin`` (or the bitshuffle HDF5 plugin)
decompresses them. The C side is ``csrc/pipeline/chunk_compression.c`` (cffi module
``daq_server.pipeline._pipeline``, linked with the system's liblz4). :func:`compress` makes one chunk in
the calling thread; an acquisition's images are compressed by the threads of the image pipeline
(``daq_server.pipeline.image_pipeline``).
"""

from __future__ import annotations

import os

import numpy as np

from daq_server.pipeline._pipeline import ffi, lib

BITSHUFFLE_LZ4 = "bitshuffle-lz4"
HDF5_FILTER_ID = 32008
MAX_THREADS: int = lib.IP_MAX_THREADS
"""Threads one image pipeline runs at most."""


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
