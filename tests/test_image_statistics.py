"""Per-image statistics on request (``"image_statistics": true``): the file's image_sum and image_max, the
status's last_image, the pixels of lost packets left out; refused when not a boolean."""

import h5py
import hdf5plugin  # noqa: F401 - reads the bitshuffle+LZ4 images
import numpy as np
import pytest
import requests
from conftest import RunningDaq, free_udp_ports, wait_for

from sim import configs as example_configs

MISSING = 0xFFFF  # 16 bit: every bit set


@pytest.fixture(params=["none", "bitshuffle-lz4"])
def lossy_eiger(request, tmp_path):
    """A server for one 16-bit Eiger writing plain or compressed images (the pool holds them while it works)."""
    config = example_configs.eiger_config(16, free_udp_ports(4), "EG-test")
    running = RunningDaq(tmp_path, config, extra_args=["--compression", request.param]).start()
    yield running
    running.stop()


def test_sum_and_max_of_every_image_lost_pixels_left_out(lossy_eiger):
    eiger = lossy_eiger
    status, output = eiger.acquire("stats.h5", 30, {"image_statistics": True}, first_frame=1, loss=0.004, seed=5)
    assert status["acquisition"]["message"] == "Completed."
    with h5py.File(output, "r") as f:
        images = f["entry/data/data"][:]
        missing = f["entry/data/n_missing_packets"][:]
        frames = f["entry/data/image_id"][:]
        sums, maxima = f["entry/data/image_sum"], f["entry/data/image_max"]
        assert sums.dtype == np.uint64 and maxima.dtype == np.uint16
        assert sums.maxshape == maxima.maxshape == (None,) and sums.shape == maxima.shape == (30,)
        sums, maxima = sums[:], maxima[:]
    assert 0 < np.count_nonzero(missing) < 30
    for i, image in enumerate(images):
        valid = image != MISSING if missing[i] else np.ones(image.shape, bool)
        assert sums[i] == image[valid].sum(dtype=np.uint64), i
        assert maxima[i] == image[valid].max(), i
    assert any(images[i].max() == MISSING and maxima[i] < MISSING for i in np.flatnonzero(missing))
    last = status["acquisition"]["stats"]["last_image"]
    assert last == {"index": 29, "image_id": int(frames[-1]), "n_missing_packets": int(missing[-1]),
                    "sum": int(sums[-1]), "max": int(maxima[-1])}  # fmt: skip
    (record,) = eiger.client.get_logs(1)
    assert record["stats"]["last_image"] == last
    with h5py.File(output, "r") as f:  # the images that lost packets have their lost pixels marked
        lost = f["entry/data/lost_pixel_mask"][:]
    for i in np.flatnonzero(missing):
        assert np.array_equal(lost[i] == 1, images[i] == MISSING), i


def test_last_image_is_null_until_the_first_image_and_absent_when_not_asked_for(daq):
    output = daq.data_root / "live.h5"
    status = daq.client.start_writer_async({"output_file": str(output), "n_images": 3, "image_statistics": True})
    assert status["acquisition"]["stats"]["last_image"] is None  # asked for, no image yet
    detector = daq.simulator(n_images=5, first_frame=501)
    detector.start()
    try:
        wait_for(lambda: daq.client.get_status()["state"] == "READY")
    finally:
        detector.stop()
    last = daq.client.get_status()["acquisition"]["stats"]["last_image"]
    with h5py.File(output, "r") as f:
        image = f["entry/data/data"][2]
        assert last["index"] == 2 and last["image_id"] == int(f["entry/data/image_id"][2])
    assert last["sum"] == int(image.sum()) and last["max"] == int(image.max()) and last["n_missing_packets"] == 0

    status, plain = daq.acquire("plain.h5", 2, first_frame=601)
    assert "last_image" not in status["acquisition"]["stats"]
    with h5py.File(plain, "r") as f:
        assert "image_sum" not in f["entry/data"] and "image_max" not in f["entry/data"]


@pytest.mark.parametrize("value", ["yes", 1, "true", None, [True]])
def test_a_value_that_is_not_a_boolean_is_refused(daq, value):
    output = daq.data_root / "refused.h5"
    answer = requests.post(
        daq.url + "/writer/write_async",
        json={"output_file": str(output), "n_images": 2, "image_statistics": value},
        timeout=10,
    )
    assert answer.status_code == 200
    assert answer.json()["status"] == "error" and "image_statistics" in answer.json()["message"]
    assert not output.exists() and daq.client.get_status()["state"] == "READY"


def test_the_openapi_document_describes_it(daq):
    schema = requests.get(daq.url + "/openapi.json", timeout=10).json()["components"]["schemas"]["WriteRequestBody"]
    field = schema["properties"]["image_statistics"]
    assert field["type"] == "boolean" and field["default"] is False and "sum" in field["description"]
