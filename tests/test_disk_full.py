"""A disk that fills up: refused or FAILED with a clear message, earlier files and the server intact."""

import subprocess

import h5py
import numpy as np
import pytest
from conftest import RunningDaq, jungfrau_config
from expected import expected_image

from std_daq_client import StdDaqAdminException

IMAGE_BYTES = 2 * 1024 * 1024  # 2 Jungfrau modules, uint16


@pytest.fixture
def small_disk_daq(tmp_path):
    """The data root is a real 16 MiB file system (tmpfs): room for about 6 images."""
    data = tmp_path / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(data)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    daq = RunningDaq(tmp_path, jungfrau_config()).start()
    detector = daq.simulator(first_frame=1)
    detector.start()
    yield daq
    detector.stop()
    daq.stop()
    subprocess.run(["umount", str(data)], check=True)


def test_full_disk_ends_the_acquisition_with_a_readable_file(small_disk_daq):
    daq = small_disk_daq
    first = daq.data_root / "fits.h5"
    done = daq.client.start_writer_sync({"output_file": str(first), "n_images": 3})
    assert done["acquisition"]["message"] == "Completed."

    second = daq.data_root / "too_big.h5"
    status = daq.client.start_writer_sync({"output_file": str(second), "n_images": 50})
    acquisition = status["acquisition"]
    assert status["state"] == "READY", "the writer takes new requests after the failure"
    assert acquisition["state"] == "FAILED"
    assert "the disk is full after" in acquisition["message"]
    n_written = acquisition["stats"]["n_write_completed"]
    assert 0 < n_written < 50
    assert daq.client.get_logs(1)[0]["state"] == "FAILED"

    for path, n in ((first, 3), (second, n_written)):  # both files close cleanly, every image intact
        with h5py.File(path, "r") as f:
            frames = f["entry/data/image_id"][:]
            assert len(frames) == n == f["entry"].attrs["n_images_written"]
            for i, frame in enumerate(frames):
                assert np.array_equal(f["entry/data/data"][i], expected_image(daq.config, int(frame)))

    # nothing fits any more: the next request is refused up front, nothing is left behind
    third = daq.data_root / "no_room.h5"
    with pytest.raises(StdDaqAdminException, match="No space left on device"):
        daq.client.start_writer_async({"output_file": str(third), "n_images": 5})
    assert not third.exists()
    assert daq.client.get_status()["state"] == "READY"


def test_failing_hdf5_writes_fail_the_acquisition_not_the_server(tmp_path):
    """Writes that fail anyway (here: the process's file size limit, EFBIG) leave the server running."""
    compressed = ["--compression", "bitshuffle-lz4"]
    daq = RunningDaq(tmp_path, jungfrau_config(), max_file_bytes=200_000, extra_args=compressed).start()
    try:
        status, _ = daq.acquire("full.h5", 300, first_frame=1)
        assert status["state"] == "READY"
        assert status["acquisition"]["state"] == "FAILED"
        assert status["acquisition"]["message"].startswith("ERROR: Writing the image failed")
        assert "\n" not in status["acquisition"]["message"]
        assert daq.client.get_logs(1)[0]["state"] == "FAILED"
        again, _ = daq.acquire("small.h5", 1, first_frame=1000)
        assert again["state"] == "READY", "the server is alive and takes requests"
    finally:
        daq.stop()
    assert daq.proc.returncode == 0, "a clean shutdown even with a damaged file open"
