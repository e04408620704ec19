"""The pedestal the server converts with, kept in its state folder across restarts.

When a pedestal acquisition (write request ``"pedestal": true``) ends complete, its file is copied into
the state folder (``jungfrau_pedestal.h5``, replaced atomically) and described in
``jungfrau_pedestal.json``: the file the acquisition wrote, its sha256, the frames of each gain stage,
the pixels it flagged. Later acquisitions of a config with ``jungfrau_conversion`` convert with it;
the status (``pedestal``) and the acquisition log name it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from daq_server.write.pedestal_file import read_pedestal_file

_log = logging.getLogger("daq_server.acquire.pedestal_store")

FILE_NAME = "jungfrau_pedestal.h5"
INFO_NAME = "jungfrau_pedestal.json"


class PedestalStore:
    """The state folder's pedestal: :meth:`adopt` a new one, :attr:`info` describes the one in use."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / FILE_NAME
        self._lock = threading.Lock()
        self.info: dict | None = None
        """What the pedestal in use is (None: there is none yet)."""
        try:
            info = json.loads((self.state_dir / INFO_NAME).read_text())
            if self.path.exists() and isinstance(info, dict):
                self.info = info
        except (OSError, json.JSONDecodeError):
            pass

    def adopt(self, pedestal_file: str, run_id: int | None = None) -> dict:
        """Copy ``pedestal_file`` into the state folder and use it from now on; returns its description.
        ValueError (the old pedestal kept) if it cannot be read or copied."""
        with self._lock:
            fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".pedestal-", suffix=".h5")
            os.close(fd)
            try:
                shutil.copyfile(pedestal_file, tmp)
                pedestal = read_pedestal_file(tmp)
                info = {
                    "file": pedestal_file,
                    "sha256": pedestal.sha256,
                    "gain_stage_frames": list(pedestal.gain_stage_frames),
                    "flagged_pixels": pedestal.n_flagged,
                    "shape": list(pedestal.shape),
                    "run_id": run_id,
                    "time": time.time(),
                }
                info_tmp = self.state_dir / (INFO_NAME + ".tmp")
                info_tmp.write_text(json.dumps(info, indent=2) + "\n")
                os.replace(tmp, self.path)
                os.replace(info_tmp, self.state_dir / INFO_NAME)
            except (OSError, ValueError) as error:
                Path(tmp).unlink(missing_ok=True)
                raise ValueError(f"the pedestal {pedestal_file} cannot be used: {error}") from None
            self.info = info
            _log.info("pedestal in use: %s (sha256 %s)", pedestal_file, info["sha256"])
            return dict(info)

    def describe(self) -> dict | None:
        """For the status: the pedestal in use, or None."""
        return dict(self.info) if self.info is not None else None
