"""File naming: where the next acquisition's HDF5 file goes."""

from __future__ import annotations

import time
import uuid
from pathlib import PurePosixPath
from typing import Protocol, runtime_checkable


@runtime_checkable
class PathProvider(Protocol):
    """Anything that returns a new absolute output file path (a ``str``) each time it is called.

    The DAQ refuses to overwrite a file, so every call must give a name that does not exist yet. The
    path is a path on the DAQ server: it must lie inside the server's data root (``--data-root``), and
    its folder must already exist there.
    """

    def __call__(self) -> str: ...


class UniqueFilePathProvider:
    """Names ``<directory>/<prefix>_<YYYYmmdd-HHMMSS>_<8 hex digits>.h5``, a new one per call; within a run
    (``run`` = ``<scan_id>_<uid8>``, :func:`~ophyd_stddaq.run_file_stem`) ``<directory>/<run>_<prefix>.h5``,
    then ``<run>_<prefix>_2.h5`` … for further acquisitions of the same run.

    The time stamp sorts the files of a day; the random part (from :func:`uuid.uuid4`) makes names
    unique without looking at the DAQ's file system, which the ophyd host usually cannot see; a run's
    uid makes its names unique.

    Parameters
    ----------
    directory:
        Absolute folder on the DAQ server, inside its data root; it must exist.
    prefix:
        Start of every file name (no ``/``).
    suffix:
        File name extension, ``.h5`` by default.
    """

    def __init__(self, directory: str, prefix: str = "stddaq", suffix: str = ".h5") -> None:
        folder = PurePosixPath(str(directory))
        if not folder.is_absolute():
            raise ValueError(f"directory must be an absolute path on the DAQ server, not {str(directory)!r}")
        if not prefix or "/" in prefix:
            raise ValueError(f"prefix must be a non-empty file name part without '/', not {prefix!r}")
        if not suffix.startswith("."):
            raise ValueError(f"suffix must start with '.', not {suffix!r}")
        self.directory = str(folder)
        self.prefix = prefix
        self.suffix = suffix
        self._run: tuple[str, int] | None = None  # the last run named, and how many files it got

    def __call__(self, run: str | None = None) -> str:
        if run:
            count = self._run[1] + 1 if self._run is not None and self._run[0] == run else 1
            self._run = (run, count)
            repeat = f"_{count}" if count > 1 else ""
            return str(PurePosixPath(self.directory) / f"{run}_{self.prefix}{repeat}{self.suffix}")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return str(PurePosixPath(self.directory) / f"{self.prefix}_{stamp}_{uuid.uuid4().hex[:8]}{self.suffix}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(directory={self.directory!r}, prefix={self.prefix!r}, suffix={self.suffix!r})"
