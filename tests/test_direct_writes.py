"""Image chunks reach the disk with O_DIRECT where the file system allows it, through the page cache where
it does not (ramfs refuses O_DIRECT), and the file is the same ordinary HDF5 file either way
(daq_server/write/direct_file.py)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time

import h5py
import hdf5plugin  # noqa: F401 - the bitshuffle filter for reading back
import numpy as np
import pytest
from conftest import jungfrau_config, write_target

from daq_server.receive.image_source import ReceivedImage
from daq_server.write.image_writer import ImageWriter

COMPRESSIONS = ("none", "bitshuffle-lz4")


def refuses_direct(folder) -> bool:
    probe = os.path.join(folder, ".o_direct_probe")
    try:
        os.close(os.open(probe, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600))
    except OSError:
        return True
    finally:
        if os.path.exists(probe):
            os.unlink(probe)
    return False


def write_and_read_back(folder, compression: str, shape=(512, 1024), offset: int = 0) -> tuple[int, bool]:
    """Bytes written with O_DIRECT, and whether every image reads back as written. ``offset``: the images
    start that many bytes into their buffer (not on a page boundary)."""
    path = os.path.join(folder, f"{compression}.h5")
    target = write_target(path, 12, shape, np.uint16, jungfrau_config(1))
    target = dataclasses.replace(target, compression=compression)
    rng = np.random.default_rng(5)
    images = [rng.poisson(3, shape).astype(np.uint16) for _ in range(12)]
    writer = ImageWriter(target, compression_threads=1)
    for i, image in enumerate(images):
        memory = np.empty(image.nbytes + offset, dtype=np.uint8)
        data = memory[offset:].view(np.uint16).reshape(shape)
        data[...] = image
        writer.put(ReceivedImage(i, 100 + i, 0, 0, time.time(), data))
    direct = writer.file.bytes_direct
    writer.close()
    with h5py.File(path, "r") as f:
        same = all(np.array_equal(f["entry/data/data"][i], images[i]) for i in range(12))
        same = same and list(f["entry/data/image_id"][:]) == list(range(100, 112))
    return direct, same


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_chunks_bypass_the_page_cache_where_the_file_system_allows(tmp_path, compression):
    if refuses_direct(tmp_path):
        pytest.skip(f"the file system of {tmp_path} refuses O_DIRECT")
    direct, same = write_and_read_back(tmp_path, compression)
    assert same
    if compression == "none":
        assert direct == 12 * 512 * 1024 * 2  # every chunk, straight from its buffer
    else:
        assert direct > 0  # the compressed chunks' whole blocks


def test_odd_sizes_and_unaligned_buffers_still_go_direct(tmp_path):
    if refuses_direct(tmp_path):
        pytest.skip(f"the file system of {tmp_path} refuses O_DIRECT")
    direct, same = write_and_read_back(tmp_path, "none", shape=(300, 301), offset=2)  # 180,600 bytes per image
    assert same
    assert direct == 12 * (300 * 301 * 2 // 4096) * 4096  # the whole blocks of each chunk; the tails buffered


@pytest.fixture
def ramfs(tmp_path):
    """A real file system that refuses O_DIRECT."""
    folder = tmp_path / "ramfs"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "ramfs", "ramfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a ramfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_a_file_system_without_o_direct_is_written_through_the_page_cache(ramfs, compression):
    assert refuses_direct(ramfs)
    direct, same = write_and_read_back(ramfs, compression)
    assert same and direct == 0
