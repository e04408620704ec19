"""cffi build of the image pipeline: ``daq_server.pipeline._pipeline`` (run by the package build; needs liblz4)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _cdef import make_builder  # noqa: E402

FOLDER = "pipeline"
SOURCES = ["image_pipeline.c", "jungfrau_conversion.c", "jungfrau_pedestal.c", "image_results.c"]  # the pool, stages
SOURCES += ["chunk_compression.c", "bitshuffle.c", "lz4_runs.c"]  # the compress stage: bitshuffle+LZ4

ffibuilder = make_builder(
    "daq_server.pipeline._pipeline",
    FOLDER,
    "jungfrau_conversion.h",  # first: image_pipeline.h uses its types
    SOURCES,
    extra_headers=("jungfrau_pedestal.h", "chunk_compression.h", "image_results.h", "image_pipeline.h"),
    libraries=("lz4",),
    formats=False,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
