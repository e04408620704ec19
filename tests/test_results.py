"""Per-image results (config ``"results"``) through the real server and simulator, checked against oracles on the
file's own images: ROI sums exact against numpy, the radial profile within 0.5 % of pyFAI's integrate1d (no
pixel splitting, same bins, the file's pixel mask and lost pixels), the spot count equal to scipy.ndimage.label;
a plain Eiger and a Jungfrau converted to photons; bad results configs and requests are refused clearly."""

import h5py
import hdf5plugin  # noqa: F401 - reads the bitshuffle+LZ4 images
import numpy as np
import pytest
import requests
import scipy.ndimage
from conftest import RunningDaq, free_udp_ports, jungfrau_config
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

from sim import configs as example_configs
from sim.jungfrau import PEDESTAL_CYCLE, write_gain_maps
from std_daq_client import StdDaqAdminException

GEOMETRY = {"beam_center_x": 250.5, "beam_center_y": 500.0, "detector_distance": 80.0, "incident_wavelength": 1.0}
PYFAI_UNITS = {"q": "q_nm^-1", "2theta": "2th_deg"}
SEED = 11


def results_config(tmp_path, shape: tuple[int, int], unit: str = "q", threshold: float = 30) -> dict:
    """A profile, a rectangle ROI, a mask ROI (a ring of pixels, as a .npy file) and a spot count, for every
    image however late it reaches the pipeline (``max_delay_s`` None: a loaded test machine sheds none)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ring = np.hypot(xx - 400, yy - 100) < 60
    np.save(tmp_path / "ring.npy", ring.astype(np.uint8))
    return {
        "radial_profile": {"bins": 150, "unit": unit},
        "rois": {"roi0": [100, 200, 300, 400], "ring": str(tmp_path / "ring.npy")},
        "spots": {"threshold": threshold, "min_pixels": 2},
        "max_delay_s": None,
    }


def check_against_oracles(path, config: dict, geometry: dict) -> int:
    """Every image's results in ``path`` against numpy, pyFAI and scipy; returns the images checked."""
    spec = config["results"]
    with h5py.File(path, "r") as f:
        images = f["entry/data/data"][:]
        lost = f["entry/data/lost_pixel_mask"][:] != 0
        detector = f["entry/instrument/detector"]
        mask, pixel = detector["pixel_mask"][()] != 0, float(detector["x_pixel_size"][()])
        results = f["entry/results"]
        profile = results["radial_profile"]
        name = {"q": "q", "2theta": "two_theta"}[spec["radial_profile"]["unit"]]
        assert profile.attrs["signal"] == "intensity" and list(profile.attrs["axes"]) == [".", name]
        assert profile[name].attrs["units"] == {"q": "1/nm", "2theta": "deg"}[spec["radial_profile"]["unit"]]
        intensity, axis, edges = profile["intensity"][()], profile[name][()], profile["bin_edges"][()]
        rois = {key: results["roi_sums"][key][()] for key in spec["rois"]}
        spots = results["spot_count/spot_count"][()]
    n, bins = len(images), spec["radial_profile"]["bins"]
    assert intensity.shape == (n, bins) and axis.shape == (bins,) and n > 0
    assert all(v.shape == (n,) for v in rois.values()) and spots.shape == (n,)
    no_data = np.iinfo(images.dtype).max
    integrator = AzimuthalIntegrator(
        dist=geometry["detector_distance"] * 1e-3, poni1=geometry["beam_center_y"] * pixel,
        poni2=geometry["beam_center_x"] * pixel, pixel1=pixel, pixel2=pixel,
        wavelength=geometry["incident_wavelength"] * 1e-10,
    )  # fmt: skip
    shape = images.shape[1:]
    roi_masks = {}
    for key, roi in spec["rois"].items():
        roi_masks[key] = np.load(roi) != 0 if isinstance(roi, str) else np.zeros(shape, bool)
        if not isinstance(roi, str):
            roi_masks[key][roi[1] : roi[3], roi[0] : roi[2]] = True
    compared = 0
    for k, image in enumerate(images):
        left_out = mask | lost[k] | (image == no_data)
        assert (lost[k] <= (image == no_data)).all()
        for key, inside in roi_masks.items():
            assert rois[key][k] == image[inside & ~left_out].sum(dtype=np.uint64), (key, k)
        labels, _ = scipy.ndimage.label((image > spec["spots"]["threshold"]) & ~left_out)
        sizes = np.bincount(labels.ravel())[1:]
        assert spots[k] == np.count_nonzero(sizes >= spec["spots"]["min_pixels"]), k
        oracle = integrator.integrate1d(
            image.astype(np.float64), bins, unit=PYFAI_UNITS[spec["radial_profile"]["unit"]],
            radial_range=(float(edges[0]), float(edges[-1])), mask=left_out, correctSolidAngle=False,
            polarization_factor=None, method=("no", "histogram", "cython"),
        )  # fmt: skip
        assert np.allclose(oracle.radial, axis, rtol=1e-5)
        enough = oracle.count >= 50
        assert enough.sum() > bins // 2
        relative = np.abs(intensity[k][enough] - oracle.intensity[enough]) / np.abs(oracle.intensity[enough])
        assert relative.max() < 0.005, (k, relative.max())
        compared += int(enough.sum())
    return compared


@pytest.mark.parametrize(("compression", "writers"), [("none", 1), ("bitshuffle-lz4", 1), ("none", 2)])
def test_eiger_photons_results_agree_with_numpy_pyfai_and_scipy(tmp_path, compression, writers):
    """With 2 writer processes, the master file joins the parts' results as it joins their images."""
    config = example_configs.eiger_config(16, free_udp_ports(4), "EG-results")
    config["results"] = results_config(tmp_path, (config["image_pixel_height"], config["image_pixel_width"]))
    args = ["--compression", compression, "--writer-processes", str(writers)]
    daq = RunningDaq(tmp_path / "server", config, extra_args=args).start()
    try:
        status, output = daq.acquire(
            "results.h5", 12, GEOMETRY, content="photons", seed=3, loss=0.003, first_frame=1, rate_hz=50
        )
        assert status["acquisition"]["state"] == "FINISHED", status
        assert status["acquisition"]["images_without_results"] == 0
        with h5py.File(output, "r") as f:
            assert f["entry/data/n_missing_packets"][:].any(), "lost packets: their pixels are left out"
            assert f["entry"].attrs["images_without_results"] == 0
            assert ("parts" in f["entry"].attrs) == (writers > 1)
        assert check_against_oracles(output, config, GEOMETRY) > 12 * 75
    finally:
        daq.stop()


@pytest.mark.parametrize("writers", [1, 2])
def test_images_that_come_late_go_without_results_never_lost(tmp_path, writers):
    """Images reaching the pipeline later than ``max_delay_s`` (here every one) are written whole and counted,
    their results marked not computed (NaN, spot count -1), so that results never cost an image."""
    config = example_configs.eiger_config(16, free_udp_ports(4), "EG-late")
    config["results"] = results_config(tmp_path, (config["image_pixel_height"], config["image_pixel_width"]))
    config["results"]["max_delay_s"] = 1e-6
    args = ["--compression", "bitshuffle-lz4", "--writer-processes", str(writers)]
    daq = RunningDaq(tmp_path / "server", config, extra_args=args).start()
    try:
        n = 8
        status, output = daq.acquire("late.h5", n, GEOMETRY, content="photons", seed=3, rate_hz=50)
        acquisition = status["acquisition"]
        assert acquisition["state"] == "FINISHED" and acquisition["stats"]["n_write_completed"] == n
        assert acquisition["images_without_results"] == n
        with h5py.File(output, "r") as f:
            assert f["entry/data/data"].shape[0] == n and f["entry"].attrs["images_without_results"] == n
            assert np.isnan(f["entry/results/radial_profile/intensity"][()]).all()
            assert (f["entry/results/spot_count/spot_count"][()] == -1).all()
            assert np.isnan(f["entry/results/roi_sums/roi0"][()]).all()
            assert f["entry/data/data"][n - 1].any(), "the images themselves are there"
    finally:
        daq.stop()


def test_converted_jungfrau_results_in_two_theta(tmp_path):
    config = jungfrau_config(2)
    maps = tmp_path / "gains.h5"
    write_gain_maps(maps, config, seed=SEED)
    shape = (config["image_pixel_height"], config["image_pixel_width"])
    config |= {"jungfrau_gain_maps": str(maps), "jungfrau_conversion": "photons",
               "results": results_config(tmp_path, shape, "2theta", threshold=3)}  # fmt: skip
    (tmp_path / "server").mkdir()
    daq = RunningDaq(tmp_path / "server", config).start()
    try:
        status, _ = daq.acquire("pedestal.h5", PEDESTAL_CYCLE, {"pedestal": True}, rate_hz=200,
                                content="jungfrau-pedestal", seed=SEED)  # fmt: skip
        assert status["acquisition"]["state"] == "FINISHED", status
        with h5py.File(daq.data_root / "pedestal.h5", "r") as f:
            assert "results" not in f["entry"], "a pedestal acquisition has no results"
        geometry = {**GEOMETRY, "incident_wavelength": 12.398419843320026 / 12.4}
        status, output = daq.acquire("photons.h5", 6, geometry, content="jungfrau-raw", seed=SEED, noise=0,
                                     first_frame=7001, rate_hz=50)  # fmt: skip
        assert status["acquisition"]["state"] == "FINISHED", status
        with h5py.File(output, "r") as f:
            flagged = f["entry/instrument/detector/pixel_mask"][()] & 2
            assert flagged.any(), "the pedestal's dead pixels are in the mask the results leave out"
        assert check_against_oracles(output, config, geometry) > 6 * 75
    finally:
        daq.stop()


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ({"radial_profile": {"bins": 0}}, "bins"),
        ({"radial_profile": {"bins": 10, "unit": "chi"}}, "unit"),
        ({"rois": {"roi0": [0, 0, 5000, 10]}}, "results.rois.roi0"),
        ({"rois": {"roi0": [10, 0, 10, 10]}}, "x0 < x1"),
        ({"rois": {"bad name": [0, 0, 1, 1]}}, "rois"),
        ({"rois": {"m": "/nonexistent/mask.npy"}}, "cannot be read"),
        ({"rois": {"m": "relative.npy"}}, "absolute path"),
        ({"spots": {"threshold": "high"}}, "threshold"),
        ({"spots": {"threshold": 3, "min_pixels": 0}}, "min_pixels"),
        ({"spots": {"min_pixels": 2}}, "threshold"),
        ({"max_delay_s": 0}, "max_delay_s"),
        ({"max_delay_s": "soon"}, "max_delay_s"),
        ({"histogram": {}}, "histogram"),
    ],
)
def test_a_bad_results_config_is_refused_and_the_old_one_kept(daq, results, message):
    before = daq.client.get_config()
    answer = requests.post(daq.url + "/daq/config", json={"results": results}, timeout=10)
    assert answer.status_code < 500 and answer.json()["status"] == "error"
    assert message in answer.json()["message"] and "results" in answer.json()["message"]
    assert daq.client.get_config() == before


def test_a_mask_roi_of_another_shape_is_refused(daq, tmp_path):
    np.save(tmp_path / "small.npy", np.ones((10, 10), np.uint8))
    with pytest.raises(StdDaqAdminException, match=r"results.rois.m: the ROI mask .* is \(10, 10\)"):
        daq.client.set_config({"results": {"rois": {"m": str(tmp_path / "small.npy")}}})


def test_a_request_without_the_geometry_the_profile_needs_is_refused(daq):
    daq.client.set_config({"results": {"radial_profile": {"bins": 10, "unit": "q"}}})
    output = daq.data_root / "refused.h5"
    with pytest.raises(StdDaqAdminException, match=r"detector_distance \(mm\) and incident_wavelength"):
        daq.client.start_writer_async({"output_file": str(output), "n_images": 2})
    with pytest.raises(StdDaqAdminException, match="incident_wavelength"):
        daq.client.start_writer_async({"output_file": str(output), "n_images": 2, "detector_distance": 100})
    assert not output.exists() and daq.client.get_status()["state"] == "READY"
    daq.client.set_config({"results": {"radial_profile": {"bins": 10, "unit": "2theta"}}})
    status, written = daq.acquire("two_theta.h5", 2, {"detector_distance": 100}, first_frame=11)
    assert status["acquisition"]["state"] == "FINISHED"
    with h5py.File(written, "r") as f:
        assert f["entry/results/radial_profile/intensity"].shape == (2, 10)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.float32])
@pytest.mark.parametrize("threshold", [-0.5, 2.5, 7])
def test_the_native_stage_on_every_pixel_type_against_numpy_pyfai_and_scipy(dtype, threshold):
    """The stage alone (no server) on random images with pixels without data, a mask and diagonal neighbours."""
    from daq_server.pipeline.image_results import ImageResults, RadialGeometry, rectangle

    rng = np.random.default_rng(int(threshold * 10) + 10 + np.dtype(dtype).itemsize)
    shape = (120, 200)
    image = rng.poisson(3, shape).astype(dtype)
    if np.dtype(dtype).kind == "f":
        image += rng.random(shape, dtype=np.float32)
    no_data = rng.random(shape) < 0.01
    image[no_data] = np.nan if np.dtype(dtype).kind == "f" else np.iinfo(dtype).max
    image[10, 10] = image[11, 11] = 200  # diagonal neighbours: two spots with 4-connectivity
    excluded = np.zeros(shape, bool)
    excluded[60:62, :] = excluded[:, 100:103] = True
    excluded[rng.random(shape) < 0.01] = True
    pixel = 75e-6
    geometry = RadialGeometry(80.5, 40.0, pixel, pixel, 0.05, 1.0)
    rois = {"a": rectangle(shape, 5, 5, 150, 90), "b": rng.random(shape) < 0.3}
    stage = ImageResults(shape, dtype, excluded, (geometry, "2theta", 30), rois, (threshold, 2))
    out = stage.compute(image)
    left_out = excluded | no_data
    for name, inside in rois.items():
        expected = image[inside & ~left_out].astype(np.float64).sum()
        assert out["roi_sums"][name] == pytest.approx(expected, rel=1e-12 if np.dtype(dtype).kind == "f" else 0)
    labels, _ = scipy.ndimage.label((image > threshold) & ~left_out)
    assert out["spot_count"] == np.count_nonzero(np.bincount(labels.ravel())[1:] >= 2)
    integrator = AzimuthalIntegrator(dist=0.05, poni1=40.0 * pixel, poni2=80.5 * pixel, pixel1=pixel, pixel2=pixel,
                                     wavelength=1e-10)  # fmt: skip
    oracle = integrator.integrate1d(
        np.where(no_data, 0, image).astype(np.float64), 30, unit="2th_deg", mask=left_out, correctSolidAngle=False,
        radial_range=(float(stage.edges[0]), float(stage.edges[-1])), polarization_factor=None,
        method=("no", "histogram", "cython"),
    )  # fmt: skip
    enough = oracle.count >= 50
    assert enough.sum() > 15
    relative = np.abs(out["radial_profile"][enough] - oracle.intensity[enough]) / oracle.intensity[enough]
    assert relative.max() < 0.005
