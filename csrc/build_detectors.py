"""cffi build of the detector descriptions: ``detectors._formats`` (run by the package build)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _cdef import make_builder  # noqa: E402

ffibuilder = make_builder("detectors._formats", "detectors", "detector_formats.h", [])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
