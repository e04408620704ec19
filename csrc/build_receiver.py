"""cffi build of the receiver: ``daq_server._receiver`` (run by the package build)."""

import sys
from pathlib import Path

from cffi import FFI

sys.path.insert(0, str(Path(__file__).parent))
from _cdef import compile_args, formats_cdef, header_cdef  # noqa: E402

SOURCES = ["socket_rx.c", "frame_assembly.c", "image_assembly.c", "ring_buffer.c", "receiver.c"]

ffibuilder = FFI()
ffibuilder.cdef(formats_cdef() + header_cdef("receiver.h"))
ffibuilder.set_source(
    "daq_server._receiver",
    '#include "receiver.h"',
    sources=[f"csrc/{name}" for name in SOURCES],  # relative to the project root, where the build runs
    include_dirs=["csrc"],
    extra_compile_args=compile_args(),
    libraries=["pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
