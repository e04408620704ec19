"""Write-behind for a file written as one long stream: its pages go to disk steadily, and leave
the page cache once they are there.

Left to the kernel, a stream written at hundreds of MB/s collects gigabytes of dirty pages that are
then flushed in one burst, taking the CPU and stalling writes for seconds while the ring buffer
fills. And pages that stay cached after their write-back fill the machine's memory with data
nobody reads back soon: every new page must then be reclaimed from them first, which made each
write about seven times as costly after the first gigabytes here (40 µs per 110 kB chunk before,
300 µs after; ``benchmarks/write_behind.py``). So every :data:`STEP_BYTES` the write-back of the new
range is started (``sync_file_range``, no waiting), and the range whose write-back was started a step
earlier is dropped from the cache (``posix_fadvise(DONTNEED)``: pages still dirty or under write-back
stay, nothing waits). A reader of the live file reads those images from disk instead.
"""

from __future__ import annotations

import ctypes
import os

STEP_BYTES = 32 << 20
"""Every this many bytes written, the write-back of the new range starts and the older one leaves the cache."""

_libc = ctypes.CDLL(None, use_errno=True)
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_long, ctypes.c_uint]
_SYNC_FILE_RANGE_WRITE = 2


class WriteBehind:
    """Call :meth:`advance` with the file's growing size; failures only lose the smoothing."""

    def __init__(self, fd: int):
        self.fd = fd
        self.written_back = 0  # write-back started up to here
        self.dropped = 0  # dropped from the page cache up to here

    def advance(self, size: int) -> None:
        """The file is written up to ``size`` bytes."""
        if size - self.written_back < STEP_BYTES:
            return
        if self.written_back > self.dropped:
            try:
                os.posix_fadvise(self.fd, self.dropped, self.written_back - self.dropped, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            self.dropped = self.written_back
        _libc.sync_file_range(self.fd, self.written_back, size - self.written_back, _SYNC_FILE_RANGE_WRITE)
        self.written_back = size


__all__ = ["STEP_BYTES", "WriteBehind"]
