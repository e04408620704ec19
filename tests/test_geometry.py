"""NXmx geometry: every pixel of every module is where the assembled image has it.

The files are written by the real HDF5 writer for Jungfrau detectors of 1, 2 and 4 modules (chip gaps,
module gaps, mirrored modules) and an Eiger (gaps, mirrored ports). Their transformation chains are then
followed twice, independently of the writer's code: by a small chain follower written here from the NeXus
rules (translations and rotations along ``vector``, units, ``depends_on`` until "."), and by the ``nxmx``
package (the DIALS project's NXmx reader, from which dxtbx builds its detector models). Both must put the
centre of image pixel (row y, column x) at

    R_two_theta · (D·z + ((x + ½) − bcx)·p_x·(−x) + ((y + ½) − bcy)·p_y·(−y))

(McStas lab frame: z along the beam, y up), the beam centre (bcx, bcy) counted in pixels from the outer
corner of pixel (0, 0), as dxtbx and pyFAI count.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from conftest import write_target

from daq_server.write.hdf5_writer import Hdf5Writer
from sim.configs import eiger_config

PIXEL = 75e-6


def jungfrau(positions: dict, height: int, width: int, **nexus) -> dict:
    config = {"detector_name": "JFGEO", "detector_type": "jungfrau", "bit_depth": 16, "n_modules": len(positions),
              "image_pixel_height": height, "image_pixel_width": width, "start_udp_port": 50000,
              "module_positions": positions}  # fmt: skip
    if nexus:
        config["nexus"] = nexus
    return config


CONFIGS = {
    # one module whose span holds its chip gaps (2 pixels between the 4 x 2 chips)
    "jungfrau-1": jungfrau({"0": [0, 0, 1029, 513]}, 514, 1030),
    # two modules 36 pixels apart, the second mirrored (its rows run bottom-up)
    "jungfrau-2": jungfrau({"0": [0, 0, 1029, 513], "1": [0, 1063, 1029, 550]}, 1064, 1030),
    # four modules, two columns, mirrored ones in both
    "jungfrau-4": jungfrau(
        {"0": [0, 0, 1029, 513], "1": [1040, 0, 2069, 513], "2": [0, 1063, 1029, 550], "3": [2069, 1063, 1040, 550]},
        1064,
        2070,
    ),
    "jungfrau-2-two-theta": jungfrau({"0": [0, 0, 1029, 513], "1": [0, 1063, 1029, 550]}, 1064, 1030, two_theta=25.0),
    "eiger": eiger_config(16, 50000, "EGGEO"),
}
REQUEST = {"detector_distance": 123.4, "beam_center_x": 517.25, "beam_center_y": 480.5, "incident_wavelength": 1.0}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def written(request, tmp_path_factory):
    config = CONFIGS[request.param]
    shape = (config["image_pixel_height"], config["image_pixel_width"])
    path = tmp_path_factory.mktemp("geometry") / f"{request.param}.h5"
    writer = Hdf5Writer(write_target(path, 1, shape, np.uint16, config, **REQUEST))
    writer.write(np.zeros(shape, np.uint16), 1, 0, 0.0)
    writer.close()
    return config, path


def expected_positions(config: dict, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Lab positions (metres, last axis xyz) of the centres of the image pixels (rows, columns)."""
    fast = ((columns + 0.5) - REQUEST["beam_center_x"]) * PIXEL
    slow = ((rows + 0.5) - REQUEST["beam_center_y"]) * PIXEL
    points = np.stack([-fast, -slow, np.full(fast.shape, REQUEST["detector_distance"] * 1e-3)], axis=-1)
    angle = math.radians((config.get("nexus") or {}).get("two_theta", 0.0))
    rotation = _rotation(np.array([-1.0, 0.0, 0.0]), angle)  # the arm rises for a positive angle
    return points @ rotation.T


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


UNITS = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "deg": math.pi / 180, "degree": math.pi / 180, "rad": 1.0}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def chain_matrix(f: h5py.File, path: str) -> np.ndarray:
    """4 x 4 matrix of the transformation at ``path`` followed by its whole depends_on chain (NeXus rules)."""
    dataset = f[path]
    attrs = dataset.attrs
    vector = np.asarray(attrs["vector"], float)
    vector = vector / np.linalg.norm(vector)
    value = float(np.asarray(dataset[()]).reshape(-1)[0]) * UNITS[_text(attrs["units"])]
    matrix = np.eye(4)
    if _text(attrs["transformation_type"]) == "translation":
        matrix[:3, 3] = vector * value
    else:
        matrix[:3, :3] = _rotation(vector, value)
    if "offset" in attrs:
        shift = np.eye(4)
        shift[:3, 3] = np.asarray(attrs["offset"], float) * UNITS[_text(attrs.get("offset_units", "m"))]
        matrix = shift @ matrix
    depends_on = _text(attrs["depends_on"])
    if depends_on == ".":
        return matrix
    if not depends_on.startswith("/"):
        depends_on = dataset.parent.name + "/" + depends_on
    return chain_matrix(f, depends_on) @ matrix


def module_pixels(module: h5py.Group) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    (y0, x0), (height, width) = module["data_origin"][:], module["data_size"][:]
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return rows, columns, (int(y0), int(x0))


def test_the_chains_put_every_pixel_where_the_assembled_image_has_it(written):
    config, path = written
    covered = np.zeros((config["image_pixel_height"], config["image_pixel_width"]), int)
    with h5py.File(path, "r") as f:
        detector = f["/entry/instrument/detector"]
        modules = [detector[name] for name in detector if _text(detector[name].attrs.get("NX_class", "")) ==
                   "NXdetector_module"]  # fmt: skip
        assert len(modules) == max(1, len(config["module_positions"]))
        for module in modules:
            rows, columns, (y0, x0) = module_pixels(module)
            fast, slow = module["fast_pixel_direction"], module["slow_pixel_direction"]
            assert _text(fast.attrs["depends_on"]).endswith("module_offset")
            step = {}
            for name, axis in (("fast", fast), ("slow", slow)):
                vector = np.asarray(axis.attrs["vector"], float)
                step[name] = vector / np.linalg.norm(vector) * float(axis[()]) * UNITS[_text(axis.attrs["units"])]
            local = (columns[..., None] + 0.5) * step["fast"] + (rows[..., None] + 0.5) * step["slow"]
            matrix = chain_matrix(f, module.name + "/module_offset")
            lab = local @ matrix[:3, :3].T + matrix[:3, 3]
            want = expected_positions(config, rows + y0, columns + x0)
            assert np.allclose(lab, want, rtol=0, atol=1e-9), f"{module.name}: off by {np.abs(lab - want).max()} m"
            covered[y0 : y0 + rows.shape[0], x0 : x0 + rows.shape[1]] += 1
    assert covered.max() == 1, "modules overlap"


def test_the_dials_nxmx_reader_gives_the_same_pixel_positions(written):
    nxmx = pytest.importorskip("nxmx")
    config, path = written
    with h5py.File(path, "r") as f:
        detector = nxmx.NXmx(f).entries[0].instruments[0].detectors[0]
        assert len(detector.modules) == max(1, len(config["module_positions"]))
        for module in detector.modules:
            (y0, x0), (height, width) = module.data_origin, module.data_size
            chain = nxmx.get_dependency_chain(module.fast_pixel_direction.depends_on)
            matrix = nxmx.get_cumulative_transformation(chain)[0]  # millimetres
            rotation, origin = matrix[:3, :3], matrix[:3, 3] * 1e-3
            axes = {}
            for name, axis in (("fast", module.fast_pixel_direction), ("slow", module.slow_pixel_direction)):
                size = axis[()].to("m").magnitude
                axes[name] = rotation @ (np.asarray(axis.vector, float) * float(np.asarray(size).reshape(-1)[0]))
            rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
            lab = origin + (columns[..., None] + 0.5) * axes["fast"] + (rows[..., None] + 0.5) * axes["slow"]
            want = expected_positions(config, rows + y0, columns + x0)
            assert np.allclose(lab, want, rtol=0, atol=1e-9), f"off by {np.abs(lab - want).max()} m"


def test_the_beam_centre_lies_on_the_beam_at_the_distance(written):
    config, path = written
    if (config.get("nexus") or {}).get("two_theta"):
        pytest.skip("with a two-theta arm the beam centre leaves the beam with the detector")
    with h5py.File(path, "r") as f:
        matrix = chain_matrix(f, "/entry/instrument/detector/transformations/translation")
        detector = f["/entry/instrument/detector"]
        assert detector["beam_center_x"][()] == REQUEST["beam_center_x"]
        assert detector["distance"][()] == pytest.approx(REQUEST["detector_distance"] * 1e-3)
    assert np.allclose(matrix[:3, 3], [0, 0, REQUEST["detector_distance"] * 1e-3])
