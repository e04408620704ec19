"""The NXmx pixel mask through the real chain: an Eiger (gaps between its ports) sends with packet loss,
the file's mask has bit 0 on the gaps and, per image, bit 1 exactly where a lost packet left no data."""

import h5py
import numpy as np
from conftest import nxvalidate_report
from expected import expected_image

from detectors import config_format

MISSING = 0xFFFF  # 16 bit: every bit set


def module_area(config: dict) -> np.ndarray:
    """True inside the box of any module of ``module_positions`` (chip gaps inside a port included)."""
    inside = np.zeros((config["image_pixel_height"], config["image_pixel_width"]), dtype=bool)
    for sx, sy, ex, ey in config["module_positions"].values():
        inside[min(sy, ey) : max(sy, ey) + 1, min(sx, ex) : max(sx, ex) + 1] = True
    return inside


def test_lost_packets_are_masked_per_image(eiger):
    config = eiger.config
    nxmx = {"sample_name": "lysozyme", "incident_wavelength": 1.0}  # what NXmx requires beside the images
    status, output = eiger.acquire("lossy.h5", 30, nxmx, first_frame=1, loss=0.004, seed=3)
    assert status["acquisition"]["message"] == "Completed."
    fmt = config_format(config)
    pixels_per_packet = fmt.module_width * fmt.module_height // fmt.packets_per_frame
    inside = module_area(config)
    with h5py.File(output, "r") as f:
        mask_dataset = f["entry/instrument/detector/pixel_mask"]
        assert mask_dataset.shape == (30, *inside.shape) and mask_dataset.dtype == np.uint32
        assert mask_dataset.chunks == (1, *inside.shape) and mask_dataset.compression == "gzip"
        assert "bit 1 (value 2) no valid data in this image" in mask_dataset.attrs["description"]
        mask = mask_dataset[:]
        images = f["entry/data/data"][:]
        missing = f["entry/data/n_missing_packets"][:]
        frames = f["entry/data/image_id"][:]
    assert 0 < np.count_nonzero(missing) < 30, "some images lost packets, some did not"
    assert not (mask & ~np.uint32(3)).any()
    for i in range(30):
        assert np.array_equal((mask[i] & 1) != 0, ~inside), f"gap bit of image {i}"
        lost = (mask[i] & 2) != 0
        if missing[i] == 0:
            assert not lost.any(), f"image {i} lost nothing"
            continue
        assert np.array_equal(lost, (images[i] == MISSING) & inside), f"image {i}"
        expected = expected_image(config, int(frames[i]))
        assert lost[images[i] != expected].all(), "every pixel that differs from what was sent is masked"
        genuine = np.count_nonzero(expected == MISSING)  # the ramp's own 0xFFFF pixels
        assert missing[i] * pixels_per_packet <= np.count_nonzero(lost) <= missing[i] * pixels_per_packet + genuine
    report = nxvalidate_report(output)
    assert "Total number of errors: 0" in report, report[-2000:]


def test_a_lossless_acquisition_keeps_one_gap_mask(eiger):
    status, output = eiger.acquire("clean.h5", 10, first_frame=1)
    assert status["acquisition"]["message"] == "Completed."
    with h5py.File(output, "r") as f:
        assert not f["entry/data/n_missing_packets"][:].any()
        mask = f["entry/instrument/detector/pixel_mask"][()]
    assert mask.shape == (514, 1030) and mask.dtype == np.uint32
    assert np.array_equal(mask, (~module_area(eiger.config)).astype(np.uint32))


def test_a_long_file_with_lost_packets_gets_the_right_mask_per_image(tmp_path):
    from conftest import write_target

    from daq_server.write.hdf5_writer import Hdf5Writer

    config = {"detector_name": "t", "detector_type": "eiger", "bit_depth": 16,
              "module_positions": {"0": [0, 0, 6, 15], "1": [15, 0, 9, 15]}}  # fmt: skip
    n = 20_000
    writer = Hdf5Writer(write_target(tmp_path / "long.h5", n, (16, 16), np.uint16, config))
    good, bad = np.ones((16, 16), np.uint16), np.ones((16, 16), np.uint16)
    bad[4:8, :] = MISSING  # a lost packet of 4 rows: the gap columns 7 and 8 hold it too, unmasked
    for i in range(n):
        writer.write(bad if i % 1000 == 7 else good, i, int(i % 1000 == 7), 0.0)
    writer.close()  # how long it takes is measured, not asserted (docs/nexus.rst)
    with h5py.File(tmp_path / "long.h5", "r") as f:
        mask = f["entry/instrument/detector/pixel_mask"]
        assert mask.shape == (n, 16, 16)
        gap = np.zeros((16, 16), np.uint32)
        gap[:, 7:9] = 1
        lost = gap.copy()
        lost[4:8, :7] |= 2
        lost[4:8, 9:] |= 2
        for i in (0, 6, 7, 8, 1007, n - 1):
            assert np.array_equal(mask[i], lost if i % 1000 == 7 else gap), i


def test_every_way_a_lossy_image_mask_is_built_gives_the_exact_mask(tmp_path):
    """A few lost packets (bands recompressed), losses spread over every band (one stream) and very many
    runs (one pass): each image's mask read back from the file is the gap mask plus bit 1 on exactly its
    missing pixels outside the gaps."""
    from conftest import write_target

    from daq_server.write.hdf5_writer import Hdf5Writer
    from daq_server.write.pixel_mask import BAND_ROWS, MANY_RUNS

    height, width = 4 * BAND_ROWS, 64
    config = {"detector_name": "t", "detector_type": "eiger", "bit_depth": 16,
              "module_positions": {"0": [0, 0, 30, height - 1], "1": [33, 0, 63, height - 1]}}  # fmt: skip
    gap = np.zeros((height, width), np.uint32)
    gap[:, 31:33] = 1
    images = [np.full((height, width), 7, np.uint16) for _ in range(4)]
    images[1][5:9, :] = MISSING  # one packet: one band
    for band in range(4):  # spread: every band
        images[2][band * BAND_ROWS + 3, :] = MISSING
    images[3][:, ::2] = MISSING  # a run per other pixel: far more than MANY_RUNS
    for image in images:
        image[gap == 1] = 0  # the receiver leaves gap pixels 0
    assert np.count_nonzero(images[3] == MISSING) > MANY_RUNS
    writer = Hdf5Writer(write_target(tmp_path / "ways.h5", 4, (height, width), np.uint16, config))
    for i, image in enumerate(images):
        writer.write(image, i, 0 if i == 0 else 1, 0.0)
    writer.close()
    with h5py.File(tmp_path / "ways.h5", "r") as f:
        mask = f["entry/instrument/detector/pixel_mask"][()]
    assert mask.shape == (4, height, width)
    for i, image in enumerate(images):
        want = gap.copy()
        want[image == MISSING] |= 2
        assert np.array_equal(mask[i], want), i
