"""cffi build of the simulated detector: ``sim._sender`` (run by the package build)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _cdef import make_builder  # noqa: E402

FOLDER = "sim"
SOURCES = ["sim_sender.c", "sim_content.c", "sim_jungfrau.c"]

ffibuilder = make_builder("sim._sender", FOLDER, "sim_sender.h", SOURCES, ("sim_content.h", "sim_jungfrau.h"))

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
