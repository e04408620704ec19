"""The output file as HDF5 sees it: image chunks go to the disk with ``O_DIRECT``, the rest through the
page cache.

Written through the page cache, every byte of an image is copied once more by the kernel (into the
cache), then written back and dropped again, which costs about as much CPU as receiving it. With
``O_DIRECT`` the disk reads the bytes straight from our buffer: the ring buffer slot of an uncompressed
image, or the compression pool's chunk. h5py's ``fileobj`` driver hands each of HDF5's file reads and
writes to this object, so the file stays an ordinary HDF5 file, written by HDF5 (SWMR included), and
h5py and SWMR readers open it as any other. Only a write of whole aligned blocks -- in practice an
image chunk: the file is created with HDF5's ``alignment`` so that every large allocation starts on a
:data:`BLOCK` boundary -- goes by the ``O_DIRECT`` descriptor; the unaligned head or tail of a chunk,
HDF5's metadata and all reads use the ordinary one (the kernel keeps the two coherent). A buffer that is
not itself aligned is copied into an aligned one first (a plain memcpy, still cheaper than the page
cache).

Why not the alternatives: h5py offers no direct driver of HDF5 (its wheels are built without it), and a
chunk's file space cannot be had from HDF5 without HDF5 writing its bytes; pre-allocated chunks would
serve uncompressed images only.

A file system that refuses ``O_DIRECT`` (ramfs; tmpfs before Linux 6.6) is written through the page
cache as before; so is the rest of a file after the disk refused an ``O_DIRECT`` write for its alignment.
``direct`` says which way a file went.

One thing HDF5 does differently through this driver: it marks the superblock "open for writing" only
for drivers that can lock the file, and a SWMR reader refuses a file marked "SWMR writing" but not "open
for writing". So when HDF5 writes a version 3 superblock marked for SWMR writing, the write-access flag is
added here (and the superblock's checksum made again): exactly the flags HDF5's own driver writes.
"""

from __future__ import annotations

import errno
import logging
import os

import numpy as np

BLOCK = 4096
"""Alignment of ``O_DIRECT`` writes in the file and in memory (a multiple of any disk's logical block)."""
DIRECT_MIN_BYTES = 64 << 10
"""Smaller writes (HDF5's metadata) go through the page cache; also HDF5's alignment threshold."""
_BOUNCE_BYTES = 8 << 20

_log = logging.getLogger("daq_server.write.direct_file")


_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_WRITE_ACCESS, _SWMR_WRITE_ACCESS = 0x01, 0x04


def _rotate(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 hash (hashlittle), which HDF5 uses as the checksum of its metadata."""
    mask = 0xFFFFFFFF
    a = b = c = (0xDEADBEEF + len(data) + initval) & mask
    words = [int.from_bytes(data[i : i + 4].ljust(4, b"\0"), "little") for i in range(0, len(data), 4)]
    full = (len(data) - 1) // 12 if data else 0  # the last block (1-12 bytes) goes to the final mixing
    for block in range(full):
        a, b, c = (a + words[3 * block]) & mask, (b + words[3 * block + 1]) & mask, (c + words[3 * block + 2]) & mask
        for shift_a, shift_b, shift_c in ((4, 6, 8), (16, 19, 4)):  # the mix: two rounds of three steps
            a = ((a - c) & mask) ^ _rotate(c, shift_a)
            c = (c + b) & mask
            b = ((b - a) & mask) ^ _rotate(a, shift_b)
            a = (a + c) & mask
            c = ((c - b) & mask) ^ _rotate(b, shift_c)
            b = (b + a) & mask
    if len(data) == 12 * full:
        return c
    tail = words[3 * full :] + [0, 0]
    a, b, c = (a + tail[0]) & mask, (b + tail[1]) & mask, (c + tail[2]) & mask
    for shift_c, shift_a, shift_b in ((14, 11, 25), (16, 4, 14)):  # the final mixing
        c = ((c ^ b) - _rotate(b, shift_c)) & mask
        a = ((a ^ c) - _rotate(c, shift_a)) & mask
        b = ((b ^ a) - _rotate(a, shift_b)) & mask
    return ((c ^ b) - _rotate(b, 24)) & mask


def _marked_for_writing(view: memoryview) -> memoryview:
    """A version 3 superblock marked "SWMR writing" gets "open for writing" too (see the module's text)."""
    if len(view) < 12 or view[:8] != _SIGNATURE or view[8] != 3:
        return view
    flags, size = view[11], 12 + 4 * view[9]  # four addresses, then the checksum
    if not flags & _SWMR_WRITE_ACCESS or flags & _WRITE_ACCESS or len(view) < size + 4:
        return view
    block = bytearray(view)
    block[11] = flags | _WRITE_ACCESS
    block[size : size + 4] = lookup3(bytes(block[:size])).to_bytes(4, "little")
    return memoryview(block)


def _address(view: memoryview) -> int:
    return np.frombuffer(view, dtype=np.uint8).__array_interface__["data"][0] if len(view) else 0


class DirectFile:
    """A file object over the open file ``fd`` (not closed here) for ``h5py.File(DirectFile(fd), ...)``.

    ``reopen(flags)`` opens a second descriptor of the same file (default: through ``/proc/self/fd``); the
    O_DIRECT one is made with it, and closed here."""

    def __init__(self, fd: int, direct: bool = True, reopen=None):
        self.fd = fd
        self._pos = 0
        self._direct_fd: int | None = None
        self._bounce: np.ndarray | None = None  # an aligned buffer for unaligned ones
        self.bytes_direct = 0
        """Bytes written with O_DIRECT so far."""
        reopen = reopen or (lambda flags: os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC))
        if direct:
            try:  # a second open file description of the same file (/proc names the file itself)
                self._direct_fd = reopen(os.O_RDWR | os.O_DIRECT)
            except OSError as error:  # e.g. EINVAL: ramfs has no O_DIRECT
                _log.debug("no O_DIRECT for this file (%s): written through the page cache", error.strerror)

    @property
    def direct(self) -> bool:
        """Are the image chunks written with O_DIRECT (so far)?"""
        return self._direct_fd is not None

    def close(self) -> None:
        """Close the O_DIRECT descriptor (the file's own ``fd`` stays open)."""
        if self._direct_fd is not None:
            os.close(self._direct_fd)
            self._direct_fd = None
        self._bounce = None

    # the file object protocol h5py's fileobj driver uses
    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._pos = offset if whence == os.SEEK_SET else self._pos + offset if whence == os.SEEK_CUR else self._size()
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _size(self) -> int:
        return os.fstat(self.fd).st_size

    def readinto(self, buffer) -> int:
        n = os.preadv(self.fd, [buffer], self._pos)
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        size = self._size() - self._pos if size < 0 else size
        data = os.pread(self.fd, size, self._pos)
        self._pos += len(data)
        return data

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if size != self._size():  # as HDF5's own driver: only when the end moved (keeps reserved blocks)
            os.ftruncate(self.fd, size)
        return size

    def flush(self) -> None:
        """Nothing is buffered here (readers see every write at once)."""

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        start, n = self._pos, len(view)
        if start == 0:
            view = _marked_for_writing(view)
        first = -(-start // BLOCK) * BLOCK  # the aligned blocks inside [start, start + n)
        last = (start + n) // BLOCK * BLOCK
        if self._direct_fd is not None and n >= DIRECT_MIN_BYTES and last - first >= BLOCK:
            self._pwrite(self.fd, view[: first - start], start)
            if not self._write_direct(view[first - start : last - start], first):
                self._pwrite(self.fd, view[first - start : last - start], first)
            self._pwrite(self.fd, view[last - start :], last)
        else:
            self._pwrite(self.fd, view, start)
        self._pos = start + n
        return n

    @staticmethod
    def _pwrite(fd: int, view: memoryview, offset: int) -> None:
        while len(view):
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written

    def _write_direct(self, view: memoryview, offset: int) -> bool:
        """Whole aligned blocks with O_DIRECT; False (and no O_DIRECT from now on) if the disk refuses."""
        try:
            if _address(view) % BLOCK == 0:
                self._pwrite(self._direct_fd, view, offset)
            else:  # an unaligned buffer: through an aligned copy, a piece at a time
                if self._bounce is None:
                    memory = np.empty(_BOUNCE_BYTES + BLOCK, dtype=np.uint8)
                    skip = -_address(memoryview(memory)) % BLOCK
                    self._bounce = memory[skip : skip + _BOUNCE_BYTES]
                for at in range(0, len(view), _BOUNCE_BYTES):
                    piece = np.frombuffer(view[at : at + _BOUNCE_BYTES], dtype=np.uint8)
                    self._bounce[: len(piece)] = piece
                    self._pwrite(self._direct_fd, memoryview(self._bounce[: len(piece)]), offset + at)
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
            _log.warning("the disk refused an O_DIRECT write (%s): the rest goes through the page cache",
                         error.strerror)  # fmt: skip
            self.close()
            return False
        self.bytes_direct += len(view)
        return True
