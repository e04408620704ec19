"""Gain maps: PSI's binary form and the HDF5 form are read per module and stage; bad maps are refused clearly."""

import h5py
import numpy as np
import pytest
from conftest import jungfrau_config

from detectors.gain_maps import GainMapError, file_sha256, read_gain_maps
from sim import configs
from sim.jungfrau import module_calibration, write_gain_maps


def test_both_forms_give_the_simulators_maps(tmp_path):
    config = jungfrau_config(2)
    truth = np.stack([module_calibration(config, m, seed=3).gains for m in (0, 1)])
    write_gain_maps(tmp_path / "maps.h5", config, seed=3)
    from_hdf5 = read_gain_maps(str(tmp_path / "maps.h5"), config)
    assert from_hdf5.gains.shape == (2, 3, 512, 1024) and np.array_equal(from_hdf5.gains, truth)
    assert from_hdf5.sha256 == (file_sha256(tmp_path / "maps.h5"),)
    files = [str(f) for f in write_gain_maps(tmp_path / "maps.bin", config, seed=3)]
    from_binary = read_gain_maps(files, config)
    assert np.array_equal(from_binary.gains, truth)
    assert from_binary.describe()["files"] == files and len(from_binary.sha256) == 2


def test_a_psi_file_of_three_maps_is_read_too(tmp_path):
    config = jungfrau_config(1)
    gains = module_calibration(config, 0, seed=1).gains
    gains.astype("<f8").tofile(tmp_path / "old.bin")
    assert np.array_equal(read_gain_maps(str(tmp_path / "old.bin"), config).gains[0], gains)


def bad_file(tmp_path, gains: np.ndarray) -> str:
    path = tmp_path / "bad.bin"
    gains.astype("<f8").tofile(path)
    return str(path)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda g: g.__setitem__((1, 5, 7), np.nan), "module 0 G1 are not a finite number .first at row 5, column 7"),
        (lambda g: g.__setitem__((2, 0, 3), 0.0), "G2 are zero"),
        (lambda g: g.__setitem__((0, 9, 9), -40.0), "G0 are not positive"),
        (lambda g: g.__setitem__((0, 1, 1), np.inf), "G0 are not a finite number"),
    ],
)
def test_unusable_values_are_refused_with_where(tmp_path, change, message):
    config = jungfrau_config(1)
    gains = module_calibration(config, 0, seed=1).gains
    change(gains)
    with pytest.raises(GainMapError, match=message):
        read_gain_maps(bad_file(tmp_path, gains), config)


def test_wrong_sizes_and_counts_are_refused(tmp_path):
    config = jungfrau_config(1)
    np.zeros(1000).tofile(tmp_path / "short.bin")
    with pytest.raises(GainMapError, match="not 3 to 6 maps of 512 x 1024 float64"):
        read_gain_maps(str(tmp_path / "short.bin"), config)
    with pytest.raises(GainMapError, match="No such file"):
        read_gain_maps(str(tmp_path / "absent.bin"), config)
    write_gain_maps(tmp_path / "one.bin", config, seed=1)
    with pytest.raises(GainMapError, match="one .bin file per module: name 2"):
        read_gain_maps(str(tmp_path / "one.bin"), jungfrau_config(2))
    write_gain_maps(tmp_path / "one.h5", config, seed=1)
    with pytest.raises(GainMapError, match=r"shape \(3, 512, 1024\), expected \(3 to 6, 1024, 1024\)"):
        read_gain_maps(str(tmp_path / "one.h5"), jungfrau_config(2))
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(GainMapError, match="no dataset 'gains'"):
        read_gain_maps(str(tmp_path / "other.h5"), config)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(GainMapError, match="text.h5"):
        read_gain_maps(str(tmp_path / "text.h5"), config)
    with pytest.raises(GainMapError, match="no gain stages"):
        read_gain_maps(str(tmp_path / "one.h5"), configs.eiger_config(16, 50000))
