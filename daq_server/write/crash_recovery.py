"""A file left open by a server that died: make it readable by everyone again.

A live (SWMR) HDF5 file carries an "open for writing" mark in its superblock until it is closed; after a
``kill -9`` plain readers (``h5py.File(path, "r")``) refuse it and only ``swmr=True`` readers open it.
HDF5's own tool ``h5clear -s`` (Debian's ``hdf5-tools``, installed by ``scripts/system-packages.sh``)
removes the mark; h5py has no binding for it. It runs as the file's owner, on a regular file only.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess

_log = logging.getLogger("daq_server.write.crash_recovery")


def release_crashed_file(path: str | None) -> str:
    """Clear the open-for-writing mark of the file an interrupted acquisition wrote; a note for the user."""
    if not path:
        return ""
    try:
        info = os.lstat(path)
    except OSError:
        return " The file is gone."
    if not stat.S_ISREG(info.st_mode):
        return " The file's name no longer holds a regular file; it was left alone."
    tool = shutil.which("h5clear")
    if tool is None:
        return " Read it with h5py.File(path, 'r', swmr=True) (h5clear -s would make it readable as usual)."
    try:
        done = subprocess.run(
            [tool, "-s", path], capture_output=True, text=True, timeout=60, user=info.st_uid, group=info.st_gid
        )
    except (OSError, subprocess.SubprocessError) as error:
        done = subprocess.CompletedProcess([tool], 1, "", str(error))
    if done.returncode != 0:
        _log.error("h5clear -s %s failed: %s", path, done.stderr.strip()[:200])
        return " Read it with h5py.File(path, 'r', swmr=True)."
    return " The file's open-for-writing mark was cleared: it reads as usual."
