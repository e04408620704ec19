"""What a long stream of compressed chunks costs the writer, with and without write-behind.

    python benchmarks/write_behind.py              # 4 GB per row into the temp folder
    python benchmarks/write_behind.py --gb 8 --dir /data

Writes ``--gb`` of 110 kB chunks (a 1-megapixel 16-bit image compressed 9x) with ``pwrite`` into a
new file, as the writer does, three ways: the page cache left to the kernel; write-back started
every 32 MiB (``sync_file_range``); and daq_server's ``WriteBehind`` (write-back started, and the
range before dropped from the cache). Prints the CPU and wall time per chunk in the first and in the
last gigabyte of each row, beside the disk's fsync'd sequential rate measured in the same run.
Nothing asserts.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import tempfile
import time
from pathlib import Path

from sustained import disk_rate  # the same probe as the sustained rows (benchmarks/ is on sys.path)

from daq_server.write.write_behind import STEP_BYTES, WriteBehind

CHUNK_BYTES = 110_000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_long, ctypes.c_uint]


class WriteBackOnly:
    """Write-back started every STEP_BYTES, pages left in the cache."""

    def __init__(self, fd: int):
        self.fd, self.written_back = fd, 0

    def advance(self, size: int) -> None:
        if size - self.written_back >= STEP_BYTES:
            _libc.sync_file_range(self.fd, self.written_back, size - self.written_back, 2)
            self.written_back = size


class KernelOnly:
    def __init__(self, fd: int):
        pass

    def advance(self, size: int) -> None:
        pass


def stream(folder: Path, n_bytes: int, policy) -> dict:
    """Write ``n_bytes`` in chunks; µs of CPU and wall per chunk over the first and the last GB."""
    chunk = os.urandom(CHUNK_BYTES)
    fd, path = tempfile.mkstemp(prefix="std_daq_bench_stream_", dir=folder)
    behind = policy(fd)
    per_gb = int(1e9) // CHUNK_BYTES
    marks = []  # (wall, cpu) at each GB
    offset = 0
    t0, c0 = time.perf_counter(), time.thread_time()
    while offset < n_bytes:
        os.pwrite(fd, chunk, offset)
        offset += CHUNK_BYTES
        behind.advance(offset)
        if (offset // CHUNK_BYTES) % per_gb == 0:
            marks.append((time.perf_counter(), time.thread_time()))
    os.close(fd)
    os.unlink(path)
    first, last = marks[0], (marks[-1][0] - marks[-2][0], marks[-1][1] - marks[-2][1])
    return {
        "first_wall": (first[0] - t0) / per_gb * 1e6,
        "first_cpu": (first[1] - c0) / per_gb * 1e6,
        "last_wall": last[0] / per_gb * 1e6,
        "last_cpu": last[1] / per_gb * 1e6,
        "gbps": offset / (marks[-1][0] - t0) / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=4.0, help="bytes per row, GB (at least 2)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    n_bytes = int(max(args.gb, 2.0) * 1e9)
    disk = disk_rate(args.dir, 1 << 30)
    print(f"disk: sequential write + fsync {disk:.2f} GB/s; {n_bytes / 1e9:.0f} GB of {CHUNK_BYTES} B chunks per row")
    print(f"{'page cache':<34} {'first GB us/chunk':>18} {'last GB us/chunk':>17} {'GB/s':>6}")
    print(f"{'':<34} {'cpu':>8} {'wall':>9} {'cpu':>8} {'wall':>8}")
    for label, policy in (("left to the kernel", KernelOnly), ("write-back started every 32 MiB", WriteBackOnly),
                          ("WriteBehind (write-back + drop)", WriteBehind)):  # fmt: skip
        r = stream(args.dir, n_bytes, policy)
        print(f"{label:<34} {r['first_cpu']:8.0f} {r['first_wall']:9.0f} {r['last_cpu']:8.0f} {r['last_wall']:8.0f}"
              f" {r['gbps']:6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
