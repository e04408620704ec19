"""Jungfrau conversion and pedestal, native: the simulator's raw words come back as its photon counts."""

import numpy as np
import pytest
from conftest import collect_images, jungfrau_config
from expected import expected_image

from daq_server.pipeline.jungfrau_conversion import NO_DATA, SATURATED, JungfrauConversion, image_gains
from daq_server.pipeline.pedestal import DEAD_PIXEL, NOISY_PIXEL, PedestalAccumulator
from daq_server.write.nxmx import gap_mask
from detectors.gain_maps import read_gain_maps
from sim import SimulatedDetector
from sim.jungfrau import PEDESTAL_CYCLE, PIXEL_DEAD, PIXEL_NOISY, module_calibration, pedestal_stage, write_gain_maps

SEED = 11


def image_of_modules(config: dict, per_module: list[np.ndarray]) -> np.ndarray:
    """Module arrays placed like the receiver places modules (the test oracle's placement)."""
    from expected import module_coordinates

    image = np.zeros((config["image_pixel_height"], config["image_pixel_width"]), dtype=per_module[0].dtype)
    for m, values in enumerate(per_module):
        rows, cols = module_coordinates(config, m)
        image[np.ix_(rows, cols)] = values
    return image


def accumulate_pedestal(config: dict, frames: range, noise: float | None = None) -> PedestalAccumulator:
    accumulator = PedestalAccumulator((config["image_pixel_height"], config["image_pixel_width"]))
    extra = {} if noise is None else {"noise": noise}
    for frame in frames:
        accumulator.add(expected_image(config, frame, content="jungfrau-pedestal", seed=SEED, **extra))
    return accumulator


@pytest.fixture(scope="module")
def two_modules(tmp_path_factory):
    """A 2-module Jungfrau (the second mirrored), its gain maps file and a pedestal of 300 noisy frames."""
    config = jungfrau_config(2)
    maps = tmp_path_factory.mktemp("maps") / "gains.h5"
    write_gain_maps(maps, config, seed=SEED)
    accumulator = accumulate_pedestal(config, range(1, PEDESTAL_CYCLE + 1))
    sensor = gap_mask(config, (1024, 1024)) == 0
    pedestal = accumulator.result(sensor)
    accumulator.close()
    return config, read_gain_maps(str(maps), config), pedestal


def conversion(setup, output="photons", energy=12.4) -> JungfrauConversion:
    config, gain_maps, pedestal = setup
    return JungfrauConversion(image_gains(config, gain_maps), pedestal.mean, pedestal.mask != 0, output, energy)


def bad_pixels(config: dict) -> np.ndarray:
    states = [module_calibration(config, m, SEED).states for m in range(config["n_modules"])]
    return image_of_modules(config, states)


def test_pedestal_matches_the_simulators_within_its_noise(two_modules):
    config, _, pedestal = two_modules
    assert pedestal.frames == (200, 50, 50)
    truth = [module_calibration(config, m, SEED) for m in (0, 1)]
    true_mean = np.stack([image_of_modules(config, [t.pedestals[s] for t in truth]) for s in range(3)])
    states = bad_pixels(config)
    working = states == 0
    for stage, (frames, noise) in enumerate(zip(pedestal.frames, (8.0, 2.0, 1.0), strict=True)):
        error = (pedestal.mean[stage] - true_mean[stage])[working]
        assert np.abs(error).max() < 6 * noise / np.sqrt(frames), f"gain {stage} pedestal"
        assert abs(np.median(pedestal.rms[stage][working]) - noise) < 0.1 * noise, f"gain {stage} RMS"
        assert (pedestal.count[stage][working] == frames).all()
    assert np.array_equal(pedestal.mask != 0, states != 0), "exactly the dead and noisy pixels are flagged"
    assert (pedestal.mask[states == PIXEL_DEAD] & DEAD_PIXEL).all()
    assert (pedestal.mask[states == PIXEL_NOISY] == NOISY_PIXEL).all()


@pytest.mark.parametrize("flux", [0.2, 50.0])
def test_noise_free_raw_words_convert_to_the_photons_content_exactly(two_modules, flux):
    config, _, pedestal = two_modules
    conv = conversion(two_modules)
    flagged = pedestal.mask != 0
    for frame in (1, 2, 3):
        raw = expected_image(config, frame, content="jungfrau-raw", seed=SEED, flux=flux, noise=0)
        truth = expected_image(config, frame, content="photons", seed=SEED, flux=flux)
        photons, counts = conv.convert(raw)
        assert photons.dtype == np.uint16
        saturated = photons == SATURATED
        assert np.array_equal(photons[~flagged & ~saturated], truth[~flagged & ~saturated]), f"frame {frame}"
        assert (photons[flagged] == NO_DATA).all() and counts["no_data_pixels"] == flagged.sum()
        if flux > 1:
            assert counts["gain2_pixels"] > 1000 and 0 < saturated.sum() == counts["saturated_pixels"]
            assert (truth[saturated] > 4000).all(), "only counts beyond gain 2's range saturate"
        else:
            assert not saturated.any() and counts["gain1_pixels"] > 100


def test_default_noise_leaves_at_least_999_in_1000_pixels_exact(two_modules):
    config, _, pedestal = two_modules
    conv = conversion(two_modules)
    for frame in (4, 5):
        raw = expected_image(config, frame, content="jungfrau-raw", seed=SEED)
        truth = expected_image(config, frame, content="photons", seed=SEED)
        photons, _ = conv.convert(raw)
        assert (photons == truth).mean() >= 0.999


def test_kev_output_is_the_energy(two_modules):
    config, _, pedestal = two_modules
    conv = conversion(two_modules, "keV", None)
    raw = expected_image(config, 6, content="jungfrau-raw", seed=SEED, noise=0)
    truth = expected_image(config, 6, content="photons", seed=SEED).astype(np.float64) * 12.4
    kev, _ = conv.convert(raw)
    assert kev.dtype == np.float32 and conv.unit == "keV"
    flagged = pedestal.mask != 0
    assert np.isnan(kev[flagged]).all()
    assert np.abs(kev[~flagged] - truth[~flagged]).max() < 6.2, "within half a photon"


def test_invalid_codes_lost_pixels_and_gaps(two_modules):
    config, gain_maps, pedestal = two_modules
    gains = image_gains(config, gain_maps)
    gains[:, :, 500:524] = 0  # a gap column band (a pedestal never flags gap pixels)
    flagged = pedestal.mask != 0
    flagged[:, 500:524] = False
    photons = JungfrauConversion(gains, pedestal.mean, flagged, "photons", 12.4)
    kev = JungfrauConversion(gains, pedestal.mean, flagged, "keV")
    raw = expected_image(config, 1, content="jungfrau-raw", seed=SEED, noise=0)
    raw[:, 500:524] = 0
    raw[10, 10] = 0x8000 | 3000  # gain code 10
    raw[20, 20:30] = 0xFFFF  # a lost packet's pixels
    raw[30, 40] = 0xC000  # gain 2 at the ADC floor
    out, counts = photons.convert(raw)
    assert out[10, 10] == NO_DATA and (out[20, 20:30] == NO_DATA).all() and out[30, 40] == SATURATED
    assert (out[:, 500:524] == 0).all(), "gaps stay 0"
    assert counts["saturated_pixels"] == 1
    energy, _ = kev.convert(raw)
    assert np.isnan(energy[10, 10]) and np.isnan(energy[20, 20:30]).all() and energy[30, 40] == np.inf
    with pytest.raises(ValueError, match="photon energy"):
        JungfrauConversion(gains, pedestal.mean, pedestal.mask != 0, "photons")
    with pytest.raises(ValueError, match="uint16"):
        photons.convert(raw.astype(np.uint32))


def test_missing_stages_and_incomplete_frames():
    config = jungfrau_config(1)
    gain0_frames = [f for f in range(1, 40) if pedestal_stage(f) == 0]
    accumulator = accumulate_pedestal(config, gain0_frames)
    raw = expected_image(config, 1, content="jungfrau-pedestal", seed=SEED)
    assert accumulator.add(raw, complete=False) == -1 and accumulator.skipped == 1
    pedestal = accumulator.result()
    assert pedestal.frames == (len(gain0_frames), 0, 0)
    assert np.isnan(pedestal.mean[1:]).all(), "no forced-gain frames: no pedestal of gain 1 and 2"
    assert np.array_equal(pedestal.mask != 0, bad_pixels(config) != 0), "only judged on the stages it has"


def test_real_packets_through_the_receiver_convert_back(tmp_path):
    """Pedestal mode and raw frames sent as UDP packets, assembled by the C receiver, converted natively."""
    from daq_server.receive.udp_receiver import Receiver, ReceiverSettings

    config = jungfrau_config(1)
    maps = tmp_path / "gains.bin"
    write_gain_maps(maps, config, seed=SEED)
    receiver = Receiver(config, ReceiverSettings(bind_address="127.0.0.1", ring_bytes=32 << 20))
    try:
        accumulator = PedestalAccumulator((512, 1024))
        sender = SimulatedDetector(config, rate_hz=400, n_images=PEDESTAL_CYCLE, content="jungfrau-pedestal", seed=SEED)
        sender.start()
        for _ in range(PEDESTAL_CYCLE):
            with receiver.images(timeout=5) as image:
                assert image is not None, "the receiver assembled every pedestal frame"
                accumulator.add(image.data, image.n_missing_packets == 0)
        sender.join()
        pedestal = accumulator.result()
        sender = SimulatedDetector(config, rate_hz=100, n_images=4, first_frame=1000, content="jungfrau-raw",
                                   seed=SEED, noise=0)  # fmt: skip
        sender.start()
        images = collect_images(receiver, 4)
        sender.join()
    finally:
        receiver.close()
    assert pedestal.frames == (200, 50, 50)
    conv = JungfrauConversion(
        image_gains(config, read_gain_maps(str(maps), config)), pedestal.mean, pedestal.mask != 0, "photons", 12.4
    )
    flagged = pedestal.mask != 0
    assert len(images) == 4
    for frame, n_missing, raw in images:
        assert n_missing == 0
        photons, _ = conv.convert(raw)
        truth = expected_image(config, frame, content="photons", seed=SEED)
        assert np.array_equal(photons[~flagged], truth[~flagged])
