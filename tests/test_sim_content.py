"""Realistic simulated content (photons, jungfrau-raw): detector-like, deterministic, and written
pixel-exact through the real chain (simulator -> UDP -> receiver -> HDF5)."""

import h5py
import numpy as np
import pytest
from conftest import RunningDaq, free_udp_ports, jungfrau_config
from expected import expected_image

from sim import SimulatedDetector, module_pixels
from sim import configs as example_configs


def test_photon_frames_are_poisson_counts_with_spots():
    config = jungfrau_config(1)
    frame = module_pixels(5, 0, config, content="photons", seed=3, flux=0.2)
    assert frame.dtype == np.uint16 and frame.shape == (512, 1024)
    assert 0.1 < np.median(frame) + frame.mean() < 3, "a few photons per pixel"
    assert (frame == 0).mean() > 0.3, "many pixels see no photon"
    assert frame.max() > 20, "Bragg spots stand out of the background"
    again = module_pixels(5, 0, config, content="photons", seed=3, flux=0.2)
    assert np.array_equal(frame, again), "deterministic from (seed, frame, module)"
    assert not np.array_equal(frame, module_pixels(5, 0, config, content="photons", seed=4, flux=0.2))
    assert not np.array_equal(frame, module_pixels(5, 1, config, content="photons", seed=3, flux=0.2))
    brighter = module_pixels(5, 0, config, content="photons", seed=3, flux=2.0)
    assert brighter.mean() > 5 * frame.mean(), "the flux sets the photon count"


def test_jungfrau_raw_frames_are_gain_bits_and_adc_around_a_pedestal():
    config = jungfrau_config(1)
    frames = np.array([module_pixels(f, 0, config, content="jungfrau-raw", seed=1) for f in range(1, 5)])
    gain, adc = frames >> 14, frames & 0x3FFF
    assert (gain == 0).mean() > 0.99 and set(np.unique(gain)) <= {0, 1, 3}
    g0 = gain == 0
    assert 2500 < np.median(adc[g0]) < 3500, "a pedestal of about 3000 ADU"
    noise = np.median(np.abs(np.diff(adc.astype(np.int32), axis=0)))
    assert 3 < noise < 40, "frame to frame noise of some ADU around a fixed per-pixel pedestal"
    assert np.std(adc[0][g0[0]]) > 20, "the pedestal differs from pixel to pixel"


def test_unknown_content_is_refused():
    with pytest.raises(ValueError, match="content must be one of"):
        SimulatedDetector(jungfrau_config(1), content="noise")


def acquire_and_compare(tmp_path, config: dict, n_images: int, **sim) -> None:
    """One acquisition from the simulator with ``sim`` options; every image whole and equal to the expected one."""
    daq = RunningDaq(tmp_path, config).start()
    try:
        status, output = daq.acquire("content.h5", n_images, **sim)
    finally:
        daq.stop()
    assert status["acquisition"]["state"] == "FINISHED"
    content = {key: sim[key] for key in ("content", "seed", "flux") if key in sim}
    with h5py.File(output, "r") as f:
        frames = f["entry/data/image_id"][:]
        assert f["entry/data/is_good_frame"][:].all()
        assert not f["entry/data/n_missing_packets"][:].any()
        for i, frame in enumerate(frames):
            expected = expected_image(config, int(frame), **content)
            assert np.array_equal(f["entry/data/data"][i], expected), f"image {i} differs"


@pytest.mark.parametrize(
    "kind,content,bit_depth",
    [("jungfrau", "jungfrau-raw", 16), ("jungfrau", "photons", 16), ("eiger", "photons", 16), ("eiger", "photons", 32)],
)
def test_every_pixel_of_realistic_content_is_written(tmp_path, kind, content, bit_depth):
    if kind == "jungfrau":
        config = jungfrau_config(2)
    else:
        config = example_configs.eiger_config(bit_depth, free_udp_ports(4))
    acquire_and_compare(tmp_path, config, 6, content=content, seed=11, flux=0.5, first_frame=501)


@pytest.mark.parametrize("kind,content,reorder", [("jungfrau", "ramp", 0), ("eiger", "photons", 8)])
def test_segmented_sending_delivers_every_datagram_as_sent(tmp_path, kind, content, reorder):
    """--gso (UDP segmentation offload, for benchmarks): the kernel cuts the messages into the detector's
    datagrams; every image arrives whole and equal to what a plain sender sends, also reordered."""
    config = jungfrau_config(2) if kind == "jungfrau" else example_configs.eiger_config(16, free_udp_ports(4))
    acquire_and_compare(tmp_path, config, 8, content=content, seed=5, reorder=reorder, gso=True, first_frame=77)


@pytest.mark.parametrize("fault", [{"loss": 0.01}, {"duplicate": 0.01}, {"foreign": 0.01}])
def test_segmented_sending_with_per_datagram_faults_is_refused(fault):
    with pytest.raises(ValueError, match="not with loss, duplicate or foreign"):
        SimulatedDetector(jungfrau_config(1), gso=True, **fault)


def test_built_in_simulator_sends_the_chosen_content():
    from conftest import collect_images

    from daq_server.receive.udp_receiver import Receiver, ReceiverSettings
    from daq_server.serve.errors import AdminError
    from daq_server.serve.simulation import BuiltInSimulator

    config = jungfrau_config(1)
    simulator = BuiltInSimulator()
    with pytest.raises(AdminError, match="content must be one of"):
        simulator.start(config, 100, 3, content="noise")
    receiver = Receiver(config, ReceiverSettings(bind_address="127.0.0.1", ring_bytes=16 << 20))
    try:
        assert simulator.start(config, 100, 3, content="jungfrau-raw")["content"] == "jungfrau-raw"
        images = collect_images(receiver, 3)
    finally:
        simulator.stop()
        receiver.close()
    assert len(images) == 3
    for frame, n_missing, image in images:
        assert n_missing == 0
        assert np.array_equal(image, expected_image(config, frame, content="jungfrau-raw"))
