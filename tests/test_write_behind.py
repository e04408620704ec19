"""A long acquisition never crowds the machine's memory: its image chunks bypass the page cache
(O_DIRECT, daq_server/write/direct_file.py) or, where the file system refuses that, leave it once they
are on disk (daq_server/write/write_behind.py). Read with util-linux's ``fincore``, which counts the
file's pages in the page cache."""

from __future__ import annotations

import shutil
import subprocess

import h5py
import pytest

N_IMAGES = 160  # 2 MiB each (2 Jungfrau modules): 320 MiB, ten steps of write-behind


def cached_bytes(path) -> int:
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return int(out.split()[0])


def file_system_type(path) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("fincore") is None, reason="fincore (util-linux) reads the page cache")
def test_a_long_acquisition_leaves_little_in_the_page_cache(daq):
    if file_system_type(daq.data_root) in ("tmpfs", "ramfs"):
        pytest.skip("a file in memory has no page cache to leave")
    status, output = daq.acquire("long.h5", N_IMAGES, rate_hz=200)
    assert status["acquisition"]["message"] == "Completed."
    size = output.stat().st_size
    assert size > N_IMAGES * 2 * 1024 * 1024
    assert cached_bytes(output) < size / 2, "the images written back a step earlier left the page cache"
    with h5py.File(output, "r") as f:  # and the file reads back whole from disk
        assert f["entry/data/data"].shape == (N_IMAGES, 1024, 1024)
        assert f["entry/data/is_good_frame"][:].all()
