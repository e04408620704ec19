"""cffi build of the receiver: ``daq_server.receive._receiver`` (run by the package build)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _cdef import make_builder  # noqa: E402

FOLDER = "receiver"
SOURCES = [
    "socket_rx.c",
    "frame_assembly.c",
    "held_packets.c",
    "image_assembly.c",
    "image_completion.c",
    "ring_buffer.c",
    "receiver.c",
]

ffibuilder = make_builder("daq_server.receive._receiver", FOLDER, "receiver.h", SOURCES, libraries=("rt",))

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
