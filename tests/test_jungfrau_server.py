"""Jungfrau in photons through the real server: a pedestal acquisition, then converted acquisitions whose files
give back the photons the simulator encoded; refusals are clear 4xx; the pedestal survives a restart."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - the bitshuffle filter for reading
import numpy as np
import pytest
from conftest import RunningDaq, jungfrau_config
from expected import expected_image

from sim import configs
from sim.jungfrau import PEDESTAL_CYCLE, module_calibration, write_gain_maps
from std_daq_client import StdDaqAdminException

SEED = 11
WAVELENGTH_12_4_KEV = 12.398419843320026 / 12.4


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def bad_pixels(config: dict) -> np.ndarray:
    """The simulator's dead and noisy pixels, in image pixels."""
    from expected import module_coordinates

    image = np.zeros((config["image_pixel_height"], config["image_pixel_width"]), bool)
    for m in range(config["n_modules"]):
        rows, cols = module_coordinates(config, m)
        image[np.ix_(rows, cols)] = module_calibration(config, m, SEED).states != 0
    return image


def converting_daq(tmp_path, output="photons", compression="none", **config_extra) -> RunningDaq:
    config = jungfrau_config(2)
    maps = tmp_path / "gains.h5"
    write_gain_maps(maps, config, seed=SEED)
    config |= {"jungfrau_gain_maps": str(maps), "jungfrau_conversion": output, **config_extra}
    return RunningDaq(tmp_path / "server", config, extra_args=["--compression", compression])


def take_pedestal(daq: RunningDaq) -> dict:
    status, _ = daq.acquire("pedestal.h5", PEDESTAL_CYCLE, {"pedestal": True}, rate_hz=200,
                           content="jungfrau-pedestal", seed=SEED)  # fmt: skip
    return status


@pytest.mark.parametrize("compression", ["none", "bitshuffle-lz4"])
def test_pedestal_then_photons_equal_to_what_the_simulator_encoded(tmp_path, compression):
    (tmp_path / "server").mkdir()
    daq = converting_daq(tmp_path, compression=compression).start()
    try:
        client = daq.client
        with pytest.raises(StdDaqAdminException, match="no pedestal was taken yet"):
            client.start_writer_async({"output_file": str(daq.data_root / "early.h5"), "n_images": 2})
        assert client.get_status()["pedestal"] is None
        status = take_pedestal(daq)
        assert status["acquisition"]["state"] == "FINISHED", status
        message = status["acquisition"]["message"]
        assert "Pedestal in use from now on" in message and "frames of gain 0, 1, 2:" in message
        pedestal = client.get_status()["pedestal"]
        assert sum(pedestal["gain_stage_frames"]) > 290 and min(pedestal["gain_stage_frames"]) > 40
        assert pedestal["file"] == str(daq.data_root / "pedestal.h5")
        assert pedestal["sha256"] == sha256(daq.data_root / "pedestal.h5")
        assert pedestal["flagged_pixels"] == bad_pixels(daq.config).sum()
        log = client.get_logs(1)[0]
        assert log["info"]["pedestal"] is True and "Pedestal in use" in log["message"]
        with pytest.raises(StdDaqAdminException, match="need the photon energy"):
            client.start_writer_async({"output_file": str(daq.data_root / "no_energy.h5"), "n_images": 2})
        status, output = daq.acquire(
            "photons.h5", 8, {"incident_wavelength": WAVELENGTH_12_4_KEV}, content="jungfrau-raw", seed=SEED, noise=0,
            first_frame=7001, rate_hz=50,
        )  # fmt: skip
        assert status["acquisition"]["state"] == "FINISHED", status
        conversion = status["acquisition"]["info"]["conversion"]
        assert conversion["output"] == "photons" and abs(conversion["photon_energy_kev"] - 12.4) < 1e-9
        with h5py.File(output, "r") as f:
            images = f["entry/data/data"]
            assert images.dtype == np.uint16 and images.attrs["units"] == "photons"
            assert ("32008" in images._filters) == (compression == "bitshuffle-lz4"), "compressed after conversion"
            mask = f["entry/instrument/detector/pixel_mask"][()]
            process = f["entry/conversion"]
            assert process["pedestal_file"].asstr()[()] == pedestal["file"]
            assert process["pedestal_sha256"].asstr()[()] == pedestal["sha256"]
            assert list(process["gain_map_sha256"].asstr()[()]) == [sha256(tmp_path / "gains.h5")]
            assert process["rounding"].asstr()[()].startswith("n = floor(E / E_photon + 0.5)")
            flagged = mask != 0
            assert np.array_equal(flagged, bad_pixels(daq.config)), "the pedestal's flagged pixels are in the mask"
            good = f["entry/data/is_good_frame"][:]
            assert good.sum() >= 2, "a busy machine may lose packets of some images, not of all"
            for frame, image in zip(f["entry/data/image_id"][good], images[good], strict=True):
                truth = expected_image(daq.config, int(frame), content="photons", seed=SEED)
                assert np.array_equal(image[~flagged], truth[~flagged]), f"frame {frame}"
                assert (image[flagged] == 0xFFFF).all()
    finally:
        daq.stop()


@pytest.mark.parametrize("output", ["photons", "keV"])
def test_pixels_sending_the_invalid_gain_code_hold_no_data_and_are_marked_in_that_images_mask(tmp_path, output):
    """Pixels with a broken gain switch send the invalid code 10 where they would leave gain 0 (strong spots):
    the no-data value there, 1 in that image's lost_pixel_mask; the 2-D pixel_mask stays the pedestal's."""
    (tmp_path / "server").mkdir()
    daq = converting_daq(tmp_path, output=output).start()
    content = {"seed": SEED, "noise": 0, "flux": 2.0, "broken_switch": 0.05}
    try:
        assert take_pedestal(daq)["acquisition"]["state"] == "FINISHED"
        status, path = daq.acquire("broken.h5", 6, {"incident_wavelength": WAVELENGTH_12_4_KEV},
                                   content="jungfrau-raw", rate_hz=50, **content)  # fmt: skip
        assert status["acquisition"]["state"] == "FINISHED", status
        marked = 0
        with h5py.File(path, "r") as f:
            flagged = f["entry/instrument/detector/pixel_mask"][()] != 0
            assert np.array_equal(flagged, bad_pixels(daq.config)), "per-image faults stay out of pixel_mask"
            good = f["entry/data/is_good_frame"][:]
            lost = f["entry/data/lost_pixel_mask"]
            for k in np.flatnonzero(good):
                frame, image = int(f["entry/data/image_id"][k]), f["entry/data/data"][k]
                raw = expected_image(daq.config, frame, content="jungfrau-raw", **content)
                invalid = (raw >> 14) == 2
                photons = expected_image(daq.config, frame, content="photons", seed=SEED, flux=2.0)
                valid = ~flagged & ~invalid
                if output == "photons":
                    assert (image[invalid] == 0xFFFF).all() and np.array_equal(image[valid], photons[valid])
                else:
                    assert np.isnan(image[invalid]).all() and np.abs(image[valid] - photons[valid] * 12.4).max() < 6.2
                mask = lost[k]
                assert (mask[invalid] == 1).all() and (mask[valid] == 0).all(), f"frame {frame}"
                marked += int(invalid.sum())
        assert marked > 0, "strong spots met pixels with a broken switch"
    finally:
        daq.stop()


def test_kev_raw_on_request_and_the_pedestal_survives_a_restart(tmp_path):
    (tmp_path / "server").mkdir()
    daq = converting_daq(tmp_path, output="keV").start()
    try:
        detector = daq.simulator(rate_hz=200, content="jungfrau-pedestal", seed=SEED)
        detector.start()
        try:  # the pedestal run from the command line
            tool = str(Path(sys.executable).parent / "std_cli_write_sync")
            command = [tool, "-b", daq.url, str(daq.data_root / "cli_pedestal.h5"), str(PEDESTAL_CYCLE), "--pedestal"]
            result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        finally:
            detector.stop()
        assert result.returncode == 0, result.stderr
        assert "Pedestal in use" in json.loads(result.stdout)["acquisition"]["message"]
        status, output = daq.acquire("kev.h5", 3, content="jungfrau-raw", seed=SEED, noise=0)
        assert status["acquisition"]["state"] == "FINISHED", status
        with h5py.File(output, "r") as f:
            images = f["entry/data/data"]
            assert images.dtype == np.float32 and images.attrs["units"] == "keV"
            flagged = f["entry/instrument/detector/pixel_mask"][()] != 0
            k = int(np.argmax(f["entry/data/is_good_frame"][:]))  # the first image that lost no packet
            frame = int(f["entry/data/image_id"][k])
            truth = expected_image(daq.config, frame, content="photons", seed=SEED) * 12.4
            assert np.abs(images[k][~flagged] - truth[~flagged]).max() < 6.2
        status, output = daq.acquire("raw.h5", 2, {"raw": True}, content="jungfrau-raw", seed=SEED, noise=0)
        assert status["acquisition"]["info"]["raw"] is True and "conversion" not in status["acquisition"]["info"]
        with h5py.File(output, "r") as f:
            k = int(np.argmax(f["entry/data/is_good_frame"][:]))
            frame = int(f["entry/data/image_id"][k])
            assert "conversion" not in f["entry"] and "units" not in f["entry/data/data"].attrs
            raw = expected_image(daq.config, frame, content="jungfrau-raw", seed=SEED, noise=0)
            assert np.array_equal(f["entry/data/data"][k], raw), "raw words on request"
        used = daq.client.get_status()["pedestal"]
    finally:
        daq.stop()
    daq.start(write_config=False)
    try:
        assert daq.client.get_status()["pedestal"] == used, "kept in the state folder across restarts"
    finally:
        daq.stop()


def test_incomplete_pedestal_is_not_used_and_bad_requests_are_refused(tmp_path):
    (tmp_path / "server").mkdir()
    daq = converting_daq(tmp_path, nexus={"incident_wavelength": WAVELENGTH_12_4_KEV}).start()
    try:
        client = daq.client
        for body, message in [
            ({"pedestal": True, "gated": True}, "cannot be gated"),
            ({"pedestal": True, "n_images": 10**6}, "at most 200000 frames"),
            ({"pedestal": "yes"}, "pedestal"),
        ]:
            with pytest.raises(StdDaqAdminException, match=message):
                client.start_writer_async({"output_file": str(daq.data_root / "x.h5"), "n_images": 3} | body)
        client.start_writer_async({"output_file": str(daq.data_root / "p.h5"), "n_images": 50, "pedestal": True})
        status = client.stop_writer()
        assert "not used" in status["acquisition"]["message"] and client.get_status()["pedestal"] is None
        assert not (daq.data_root / "x.h5").exists()
    finally:
        daq.stop()


def test_conversion_config_is_checked(tmp_path):
    write_gain_maps(tmp_path / "one.h5", jungfrau_config(1), seed=1)
    daq = RunningDaq(tmp_path, jungfrau_config(2)).start()
    try:
        for change, message in [
            ({"jungfrau_conversion": "photons"}, "jungfrau_conversion needs jungfrau_gain_maps"),
            ({"jungfrau_gain_maps": str(tmp_path / "one.h5")}, r"expected \(3 to 6, 1024, 1024\)"),
            ({"jungfrau_gain_maps": "relative.h5"}, "absolute paths"),
            ({"jungfrau_gain_maps": str(tmp_path / "absent.h5")}, "absent.h5"),
            ({"jungfrau_conversion": "counts"}, "jungfrau_conversion"),
        ]:
            with pytest.raises(StdDaqAdminException, match=message):
                daq.client.set_config(change)
        assert "jungfrau_gain_maps" not in daq.client.get_config(), "a refused config changes nothing"
    finally:
        daq.stop()
    eiger = configs.eiger_config(16, 50000)
    from daq_server.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match="only for detectors with gain-switching pixels"):
        validate_config(eiger | {"jungfrau_conversion": "photons"})
