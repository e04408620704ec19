"""A file left open by a writer that died (a killed writer process, a killed server): make it readable by
everyone again, and make it say what it holds, so that the status, the log and the file agree.

A live (SWMR) HDF5 file carries an "open for writing" mark in its superblock until it is closed; after a
``kill -9`` plain readers (``h5py.File(path, "r")``) refuse it and only ``swmr=True`` readers open it.
HDF5's own tool ``h5clear -s`` (Debian's ``hdf5-tools``, installed by ``scripts/system-packages.sh``)
removes the mark; h5py has no binding for it. Then the file is trimmed to the images it *records*: those
whose metadata (``image_id`` …) reached the file with the writer's last flush; the image stack may hold
a few more whose metadata never came, and those are cut off. Both steps run as the file's owner, on a
regular file only (``python -m daq_server.write.crash_recovery PATH`` for the trim: the server never opens
a user's path for writing as root).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass

_log = logging.getLogger("daq_server.write.crash_recovery")


@dataclass(frozen=True)
class Recovered:
    """What became of a crashed file: a note for the user, and the images it records (None if unknown)."""

    note: str
    n_images: int | None = None


def release_crashed_file(path: str | None) -> Recovered:
    """Clear the open-for-writing mark of the file an interrupted acquisition wrote and trim it to the images
    it records; a note for the user and that count."""
    if not path:
        return Recovered("")
    try:
        info = os.lstat(path)
    except OSError:
        return Recovered(" The file is gone.")
    if not stat.S_ISREG(info.st_mode):
        return Recovered(" The file's name no longer holds a regular file; it was left alone.")
    tool = shutil.which("h5clear")
    if tool is None:
        return Recovered(" Read it with h5py.File(path, 'r', swmr=True) (h5clear -s would make it readable as usual).")
    owner = {"user": info.st_uid, "group": info.st_gid, "cwd": "/"}
    done = _run([tool, "-s", path], owner)
    if done.returncode != 0:
        _log.error("h5clear -s %s failed: %s", path, done.stderr.strip()[:200])
        return Recovered(" Read it with h5py.File(path, 'r', swmr=True).")
    trimmed = _run([sys.executable, "-m", "daq_server.write.crash_recovery", path], owner)
    try:
        n_images = int(json.loads(trimmed.stdout)["n_images"])
    except (ValueError, KeyError, TypeError):
        _log.error("trimming %s failed: %s", path, (trimmed.stderr or trimmed.stdout).strip()[-300:])
        return Recovered(" The file's open-for-writing mark was cleared: it reads as usual.")
    return Recovered(f" The file's open-for-writing mark was cleared: it reads as usual, with {n_images} images.",
                     n_images)  # fmt: skip


def _run(command: list[str], owner: dict) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=120, **owner)
    except (OSError, subprocess.SubprocessError) as error:
        return subprocess.CompletedProcess(command, 1, "", str(error))


if __name__ == "__main__":  # run as the file's owner by release_crashed_file
    from daq_server.write.file_layout import trim_crashed_file

    print(json.dumps({"n_images": trim_crashed_file(sys.argv[1])}))
