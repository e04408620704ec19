"""cffi build of the simulated detector: ``sim._sender`` (run by the package build)."""

import sys
from pathlib import Path

from cffi import FFI

sys.path.insert(0, str(Path(__file__).parent))
from _cdef import compile_args, formats_cdef, header_cdef  # noqa: E402

SOURCES = ["sim_sender.c", "loopback_ceiling.c"]

ffibuilder = FFI()
ffibuilder.cdef(formats_cdef() + header_cdef("sim_sender.h"))
ffibuilder.set_source(
    "sim._sender",
    '#include "sim_sender.h"',
    sources=[f"csrc/{name}" for name in SOURCES],  # relative to the project root, where the build runs
    include_dirs=["csrc"],
    extra_compile_args=compile_args(),
    libraries=["pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
