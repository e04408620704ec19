"""Create files as ``writer_user_id``: the output folder check and the file creation are done
by the kernel with that user's file-system identity, so the file is owned by that user.

Linux's ``setfsuid``/``setfsgid`` change the identity used for file access of the *calling
thread only* (the rest of the server keeps its own). Python has no binding for them, hence ctypes;
no library offers this. They need ``CAP_SETUID`` and ``CAP_SETGID`` -- root has them, and so does a
service user granted just these (docs/security.rst, ``deploy/systemd``): each switch is checked
(``setfsuid(-1)`` reports the identity in force), so a server without them refuses clearly.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()


class FileOwnerError(PermissionError):
    """The server cannot act as the requested user."""


def _primary_gid(uid: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:  # e-accounts may be unknown locally: use a group of the same number
        return uid


@contextmanager
def as_file_user(uid: int) -> Iterator[None]:
    """File access in this thread as ``uid`` (no-op for uid < 1 or the server's own uid)."""
    if uid < 1 or uid == os.geteuid():
        yield
        return
    gid = _primary_gid(uid)
    with _lock:  # h5py may open files from other threads; keep identity switches short and serial
        _libc.setfsgid(gid)
        _libc.setfsuid(uid)
        try:
            if _libc.setfsgid(-1) != gid or _libc.setfsuid(-1) != uid:  # -1 changes nothing, reports the current
                raise FileOwnerError(
                    f"writer_user_id is {uid} but the server (uid {os.geteuid()}) may not act as another user: "
                    "run it as root, or grant it CAP_SETUID and CAP_SETGID (docs/security.rst)"
                )
            yield
        finally:
            _libc.setfsuid(os.geteuid())
            _libc.setfsgid(os.getegid())
