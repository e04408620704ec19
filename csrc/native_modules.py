"""The four cffi modules built from ``csrc/``: which C files each binary compiles and which headers it exposes.

setup.py's ``cffi_modules`` names the functions below (cffi calls a builder function it is given); the
sanitizer tests take the C files of a binary from :data:`MODULES`. ``python csrc/native_modules.py NAME``
compiles one module in place.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _cdef import make_builder  # noqa: E402


@dataclass(frozen=True)
class NativeModule:
    """One compiled module: its import name and the folder of ``csrc/`` holding its sources."""

    name: str
    folder: str
    header: str
    """The header whose declarations the module exposes first."""
    sources: tuple[str, ...] = ()
    extra_headers: tuple[str, ...] = ()
    libraries: tuple[str, ...] = ()
    formats: bool = True
    """Expose the detector formats table (``detectors/detector_formats.h``) too."""

    def builder(self):
        return make_builder(
            self.name, self.folder, self.header, list(self.sources), self.extra_headers, self.libraries, self.formats
        )

    def source_paths(self) -> list[Path]:
        return [Path(__file__).parent / self.folder / name for name in self.sources]


MODULES = {
    "detectors": NativeModule("detectors._formats", "detectors", "detector_formats.h"),
    "receiver": NativeModule(
        "daq_server.receive._receiver",
        "receiver",
        "receiver.h",
        (
            "socket_rx.c",
            "frame_assembly.c",
            "held_packets.c",
            "image_assembly.c",
            "image_completion.c",
            "ring_buffer.c",
            "receiver.c",
        ),
        libraries=("rt",),
    ),
    "sim": NativeModule(
        "sim._sender",
        "sim",
        "sim_sender.h",
        ("sim_sender.c", "sim_content.c", "sim_jungfrau.c", "sim_datagrams.c"),
        ("sim_content.h", "sim_jungfrau.h"),
    ),
    "pipeline": NativeModule(  # needs liblz4
        "daq_server.pipeline._pipeline",
        "pipeline",
        "jungfrau_conversion.h",  # first: image_pipeline.h uses its types
        (
            "image_pipeline.c",
            "chunk_compression.c",
            "bitshuffle.c",
            "lz4_runs.c",
            "jungfrau_conversion.c",
            "jungfrau_pedestal.c",
            "image_results.c",
        ),
        ("jungfrau_pedestal.h", "chunk_compression.h", "image_results.h", "image_pipeline.h"),
        ("lz4",),
        formats=False,
    ),
}


def detectors():
    return MODULES["detectors"].builder()


def receiver():
    return MODULES["receiver"].builder()


def sim():
    return MODULES["sim"].builder()


def pipeline():
    return MODULES["pipeline"].builder()


if __name__ == "__main__":
    MODULES[sys.argv[1]].builder().compile(verbose=True)
