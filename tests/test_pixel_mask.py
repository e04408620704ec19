"""The NXmx pixel mask through the real chain: an Eiger (gaps between its ports and between the chips of a
port) sends with packet loss; the file's pixel_mask is one 2-D image with bit 0 on every gap, and the pixels
of lost packets are marked per image in /entry/data/lost_pixel_mask."""

import h5py
import numpy as np
from conftest import nxvalidate_report
from expected import expected_image

from detectors import config_format

MISSING = 0xFFFF  # 16 bit: every bit set
CHIP = 256  # a chip is 256 x 256 pixels; a span wider than its module holds equal gaps between its chips


def sensor_area(config: dict) -> np.ndarray:
    """True where a chip lies behind the pixel: inside a module's span and not in a gap between its chips."""
    fmt = config_format(config)
    inside = np.zeros((config["image_pixel_height"], config["image_pixel_width"]), dtype=bool)
    for sx, sy, ex, ey in config["module_positions"].values():
        x0, y0, width, height = min(sx, ex), min(sy, ey), abs(ex - sx) + 1, abs(ey - sy) + 1
        for along, span, size in ((0, height, fmt.module_height), (1, width, fmt.module_width)):
            chips = size // CHIP
            gap = (span - size) // (chips - 1) if chips > 1 else 0
            covered = np.zeros(span, dtype=bool)
            for k in range(chips):
                covered[k * (CHIP + gap) : k * (CHIP + gap) + CHIP] = True
            if along == 0:
                rows = covered
            else:
                columns = covered
        inside[y0 : y0 + height, x0 : x0 + width] = rows[:, None] & columns[None, :]
    return inside


def test_lost_packets_are_masked_per_image_apart_from_the_gap_mask(eiger):
    config = eiger.config
    nxmx = {"sample_name": "lysozyme", "incident_wavelength": 1.0}
    status, output = eiger.acquire("lossy.h5", 30, nxmx, first_frame=1, loss=0.004, seed=3)
    assert status["acquisition"]["message"] == "Completed."
    fmt = config_format(config)
    pixels_per_packet = fmt.module_width * fmt.module_height // fmt.packets_per_frame
    inside = sensor_area(config)
    with h5py.File(output, "r") as f:
        gap_mask = f["entry/instrument/detector/pixel_mask"][()]  # one image, as NXmx defines it
        lost_dataset = f["entry/data/lost_pixel_mask"]
        assert lost_dataset.shape == (30, *inside.shape) and lost_dataset.dtype == np.uint8
        assert lost_dataset.chunks == (1, *inside.shape) and lost_dataset.compression == "gzip"
        lost_masks = lost_dataset[:]
        images = f["entry/data/data"][:]
        missing = f["entry/data/n_missing_packets"][:]
        frames = f["entry/data/image_id"][:]
    assert gap_mask.shape == inside.shape and gap_mask.dtype == np.uint32
    assert np.array_equal(gap_mask, (~inside).astype(np.uint32)), "bit 0 on every module and chip gap"
    assert 0 < np.count_nonzero(missing) < 30, "some images lost packets, some did not"
    assert set(np.unique(lost_masks)) <= {0, 1}
    for i in range(30):
        lost = lost_masks[i] == 1
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


def test_a_lossless_acquisition_stores_no_lost_pixel_chunk(eiger):
    status, output = eiger.acquire("clean.h5", 10, first_frame=1)
    assert status["acquisition"]["message"] == "Completed."
    with h5py.File(output, "r") as f:
        assert not f["entry/data/n_missing_packets"][:].any()
        mask = f["entry/instrument/detector/pixel_mask"][()]
        lost = f["entry/data/lost_pixel_mask"]
        assert lost.shape == (10, 514, 1030) and lost.id.get_num_chunks() == 0 and not lost[:].any()
    assert np.array_equal(mask, (~sensor_area(eiger.config)).astype(np.uint32))


def test_a_long_file_with_lost_packets_gets_the_right_mask_per_image(tmp_path):
    from conftest import write_target

    from daq_server.write.hdf5_writer import Hdf5Writer

    config = {"detector_name": "t", "detector_type": "eiger", "bit_depth": 16, "module_positions": {}}
    n = 20_000
    writer = Hdf5Writer(write_target(tmp_path / "long.h5", n, (16, 16), np.uint16, config))
    good, bad = np.ones((16, 16), np.uint16), np.ones((16, 16), np.uint16)
    bad[4:8, :] = MISSING  # a lost packet of 4 rows: the gap columns 7 and 8 hold it too, unmasked
    for i in range(n):
        writer.write(bad if i % 1000 == 7 else good, i, int(i % 1000 == 7), 0.0)
    writer.close()  # how long it takes is measured, not asserted (docs/nexus.rst)
    with h5py.File(tmp_path / "long.h5", "r") as f:
        mask = f["entry/data/lost_pixel_mask"]
        assert mask.shape == (n, 16, 16) and mask.id.get_num_chunks() == n // 1000
        lost = np.zeros((16, 16), np.uint8)
        lost[4:8, :] = 1
        for i in (0, 6, 7, 8, 1007, n - 1):
            assert np.array_equal(mask[i], lost if i % 1000 == 7 else 0 * lost), i


def test_every_way_a_lossy_image_mask_is_built_gives_the_exact_mask(tmp_path):
    """A few lost packets (bands recompressed), losses spread over every band (one stream) and very many
    runs (one pass): each image's lost-pixel mask read back from the file is 1 on exactly its missing pixels."""
    from conftest import write_target

    from daq_server.write.hdf5_writer import Hdf5Writer
    from daq_server.write.pixel_mask import BAND_ROWS, MANY_RUNS

    height, width = 4 * BAND_ROWS, 64
    config = {"detector_name": "t", "detector_type": "eiger", "bit_depth": 16, "module_positions": {}}
    images = [np.full((height, width), 7, np.uint16) for _ in range(4)]
    images[1][5:9, :] = MISSING  # one packet: one band
    for band in range(4):  # spread: every band
        images[2][band * BAND_ROWS + 3, :] = MISSING
    images[3][:, ::2] = MISSING  # a run per other pixel: far more than MANY_RUNS
    assert np.count_nonzero(images[3] == MISSING) > MANY_RUNS
    writer = Hdf5Writer(write_target(tmp_path / "ways.h5", 4, (height, width), np.uint16, config))
    for i, image in enumerate(images):
        writer.write(image, i, 0 if i == 0 else 1, 0.0)
    writer.close()
    with h5py.File(tmp_path / "ways.h5", "r") as f:
        mask = f["entry/data/lost_pixel_mask"][()]
    assert mask.shape == (4, height, width)
    for i, image in enumerate(images):
        assert np.array_equal(mask[i], (image == MISSING).astype(np.uint8)), i
