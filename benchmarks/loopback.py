"""The machine's loopback ceiling and a bare receiver for the benchmarks: ``benchmarks/native/loopback_ceiling.c``.

Not part of the product (the simulator module holds only the simulator): cffi compiles it on first
use into a cache folder (``$XDG_CACHE_HOME/std_daq_benchmarks``, else ``~/.cache/...``), named by a
hash of its source, so an edited source is compiled again and a second run starts at once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

NATIVE = Path(__file__).parent / "native"
_lib = None
_ffi = None


def _cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "std_daq_benchmarks"


def _load():
    """The compiled module (compiled now if the cache has no build of this source)."""
    global _ffi, _lib
    if _lib is not None:
        return _ffi, _lib
    from cffi import FFI

    header = (NATIVE / "loopback_ceiling.h").read_text()
    source = (NATIVE / "loopback_ceiling.c").read_text()
    name = "_loopback_" + hashlib.sha256((header + source).encode()).hexdigest()[:16]
    cache = _cache()
    cache.mkdir(parents=True, exist_ok=True)
    built = next(cache.glob(f"{name}.*.so"), None) or next(cache.glob(f"{name}.so"), None)
    if built is None:
        builder = FFI()
        builder.cdef("\n".join(line for line in header.splitlines() if not line.lstrip().startswith("#")))
        builder.set_source(
            name, '#include "loopback_ceiling.h"', sources=[str(NATIVE / "loopback_ceiling.c")],
            include_dirs=[str(NATIVE)], extra_compile_args=["-O2", "-std=gnu11"], libraries=["pthread"],
        )  # fmt: skip
        with tempfile.TemporaryDirectory(dir=cache) as work:  # a concurrent run never sees half a file
            output = Path(builder.compile(tmpdir=work))
            built = cache / output.name
            os.replace(output, built)
    spec = importlib.util.spec_from_file_location(name, built)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _ffi, _lib = module.ffi, module.lib
    return _ffi, _lib


def loopback_ceiling(port: int, packet_size: int, n_packets: int, rcvbuf_bytes: int = 64 << 20) -> dict:
    """Send ``n_packets`` datagrams of ``packet_size`` bytes through loopback and receive them, as bare as
    possible: packets sent and received, bytes received and the seconds it took. RuntimeError if it cannot."""
    ffi, lib = _load()
    result, err = ffi.new("loopback_result *"), ffi.new("char[256]")
    if lib.loopback_ceiling(port, packet_size, n_packets, rcvbuf_bytes, result, err, len(err)) != 0:
        raise RuntimeError(ffi.string(err).decode())
    return {name: getattr(result, name) for name, _ in ffi.typeof("loopback_result").fields}


def bare_receive(ports: list[int], packet_size: int, start_s: float = 30.0, idle_s: float = 1.0,
                 rcvbuf_bytes: int = 64 << 20) -> dict:  # fmt: skip
    """Receive on ``ports`` (loopback) with the barest receiver, one thread per port, until no datagram came
    for ``idle_s``: packets and bytes received and the receiving threads' CPU seconds. The GIL is free
    meanwhile (cffi), so another thread can start the sender. RuntimeError if it cannot."""
    ffi, lib = _load()
    result, err = ffi.new("bare_result *"), ffi.new("char[256]")
    if lib.bare_receive(ports, len(ports), packet_size, rcvbuf_bytes, start_s, idle_s, result, err, len(err)) != 0:
        raise RuntimeError(ffi.string(err).decode())
    return {name: getattr(result, name) for name, _ in ffi.typeof("bare_result").fields}
