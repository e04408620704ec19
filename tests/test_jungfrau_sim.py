"""The simulated Jungfrau module: gain switching, pedestal mode and gain maps, deterministic from the seed."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import jungfrau_config

from sim import SimulatedDetector, module_pixels
from sim.jungfrau import PEDESTAL_CYCLE, PIXEL_DEAD, PIXEL_NOISY, module_calibration, pedestal_stage, write_gain_maps


def stages_of(words: np.ndarray) -> np.ndarray:
    """Gain stage of raw words (-1 for the invalid code 10), independent of the code under test."""
    return np.array([0, 1, -1, 2])[words >> 14]


def test_pedestal_mode_cycles_through_the_three_gain_stages_with_their_gain_bits():
    config = jungfrau_config(1)
    stages = [pedestal_stage(f) for f in range(1, PEDESTAL_CYCLE + 1)]
    assert (stages.count(0), stages.count(1), stages.count(2)) == (200, 50, 50)
    assert stages[:6] == [0, 0, 1, 0, 0, 1] and stages[150:153] == [0, 0, 2], "2 dynamic frames, then 1 forced"
    assert [pedestal_stage(f + PEDESTAL_CYCLE) for f in range(1, 40)] == stages[:39], "the cycle repeats"
    calibration = module_calibration(config, 0, seed=4)
    working = calibration.states == 0
    for frame in (1, 3, 153):
        words = module_pixels(frame, 0, config, content="jungfrau-pedestal", seed=4)
        stage = pedestal_stage(frame)
        assert (stages_of(words)[working] == stage).all(), f"frame {frame}: every working pixel in gain {stage}"
        adc = (words & 0x3FFF).astype(float)
        error = adc[working] - calibration.pedestals[stage][working]
        assert abs(error.mean()) < 0.5 and 0.5 < error.std() < 12, "dark: the stage's pedestal plus noise"
    assert (
        module_pixels(1, 0, config, content="jungfrau-pedestal", seed=4)[calibration.states == PIXEL_DEAD] == 0
    ).all()


def test_pedestal_frames_carry_fresh_noise_each_frame():
    config = jungfrau_config(1)
    frames = [module_pixels(f, 0, config, content="jungfrau-pedestal", seed=2).astype(float) for f in (1, 2, 4, 5, 7)]
    assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:], strict=False))
    mean = np.mean(frames, axis=0)
    calibration = module_calibration(config, 0, seed=2)
    assert np.abs(mean - calibration.pedestals[0])[calibration.states == 0].std() < 8 / np.sqrt(5) * 1.2
    quiet = module_pixels(1, 0, config, content="jungfrau-pedestal", seed=2, noise=0) & 0x3FFF
    ok = calibration.states != PIXEL_DEAD
    assert np.array_equal(quiet[ok], np.floor(calibration.pedestals[0][ok] + 0.5)), "--noise 0: the pedestal itself"


def test_jungfrau_raw_encodes_the_photons_content_through_the_gain_stages():
    """Every count of the photons content comes back from the raw words with the simulator's own calibration."""
    config = jungfrau_config(2)
    for module in (0, 1):
        calibration = module_calibration(config, module, seed=11)
        for flux in (0.2, 50.0):
            raw = module_pixels(7, module, config, content="jungfrau-raw", seed=11, flux=flux, noise=0)
            photons = module_pixels(7, module, config, content="photons", seed=11, flux=flux).astype(np.int64)
            stage = stages_of(raw)
            adc = (raw & 0x3FFF).astype(float)
            pedestal = np.take_along_axis(calibration.pedestals, stage[None], 0)[0]
            gain = np.take_along_axis(calibration.gains, stage[None], 0)[0]
            x = (adc - pedestal) / gain / 12.4
            counts = np.where(x > 0, np.floor(x + 0.5), 0)
            saturated = (stage == 2) & (adc == 0)
            working = (calibration.states == 0) & ~saturated
            assert np.array_equal(counts[working], photons[working])
            alive = calibration.states != PIXEL_DEAD
            assert (stage[(photons <= 20) & alive] == 0).all(), "a few photons stay in gain 0"
            assert (stage[(photons > 30) & (photons < 500) & alive] == 1).all(), "tens to hundreds switch to gain 1"
            assert (stage[(photons > 800) & alive] == 2).all(), "more switch to gain 2"
            if flux > 1:
                assert (stage == 2).sum() > 100 and saturated.sum() > 10
    calibration = module_calibration(config, 0, seed=11)
    assert (calibration.gains[0] > 35).all() and (calibration.gains[1] < 0).all() and (calibration.gains[2] < 0).all()
    assert ((calibration.states == PIXEL_DEAD).sum(), (calibration.states == PIXEL_NOISY).sum()) > (10, 10)
    other = module_calibration(config, 1, seed=11)
    assert not np.array_equal(calibration.gains, other.gains), "each module has its own maps"
    assert np.array_equal(calibration.gains, module_calibration(config, 0, seed=11).gains), "deterministic"
    assert not np.array_equal(calibration.gains, module_calibration(config, 0, seed=12).gains)


def test_photon_energy_and_noise_change_the_raw_words():
    config = jungfrau_config(1)
    base = module_pixels(3, 0, config, content="jungfrau-raw", seed=5, noise=0)
    assert not np.array_equal(base, module_pixels(3, 0, config, content="jungfrau-raw", seed=5, noise=0,
                                                   photon_energy_kev=6.0))  # fmt: skip
    noisy = module_pixels(3, 0, config, content="jungfrau-raw", seed=5)
    assert 4 < np.std((noisy & 0x3FFF).astype(float) - (base & 0x3FFF)) < 40


def test_jungfrau_contents_are_refused_for_other_detectors():
    from sim import configs

    with pytest.raises(ValueError, match="gain-switching"):
        SimulatedDetector(configs.eiger_config(16, 50000), content="jungfrau-pedestal")
    with pytest.raises(ValueError, match="noise must be"):
        SimulatedDetector(jungfrau_config(1), content="jungfrau-raw", noise=-1)
    with pytest.raises(ValueError, match="photon energy"):
        SimulatedDetector(jungfrau_config(1), content="jungfrau-raw", photon_energy_kev=0)


def test_gain_maps_are_written_in_both_forms(tmp_path):
    config = jungfrau_config(2)
    config_file = tmp_path / "jf.json"
    config_file.write_text(json.dumps(config))
    result = subprocess.run(
        [sys.executable, "-m", "sim.cli", "--config", str(config_file), "--write-gain-maps", str(tmp_path / "g.h5"),
         "--seed", "9"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gain_maps"] == [str(tmp_path / "g.h5")]
    truth = [module_calibration(config, m, seed=9).gains for m in (0, 1)]
    with h5py.File(tmp_path / "g.h5") as f:
        assert f["gains"].shape == (3, 1024, 1024) and f["gains"].attrs["units"] == "ADU/keV"
        assert np.array_equal(f["gains"][:, 512:], truth[1]), "modules stacked in module order"
    files = write_gain_maps(tmp_path / "g.bin", config, seed=9)
    assert [f.name for f in files] == ["g_m0.bin", "g_m1.bin"]
    maps = np.fromfile(files[1], dtype="<f8").reshape(6, 512, 1024)
    assert np.array_equal(maps[:3], truth[1]) and np.isnan(maps[3:]).all(), "G0 G1 G2, then no high-gain maps"
    assert write_gain_maps(tmp_path / "one.bin", jungfrau_config(1), seed=9) == [tmp_path / "one.bin"]
