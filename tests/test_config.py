"""Config validation, reconfiguration of the running receiver, persistence."""

import json

import h5py
import pytest
from conftest import free_udp_ports
from expected import expected_image

from sim import SimulatedDetector
from std_daq_client import StdDaqAdminException


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bit_depth": 32}, "bit_depth 32 is not supported"),
        ({"detector_type": "pilatus"}, "detector_type"),
        ({"detector_type": "bsread"}, "bsread_address"),
        ({"detector_type": "gigafrost"}, "module_positions must be {}"),
        ({"detector_type": "gigafrost", "module_positions": {}, "image_pixel_width": 1008}, "n_modules must be 8"),
        ({"detector_type": "gigafrost", "module_positions": {}, "n_modules": 8, "image_pixel_width": 1000}, "24"),
        ({"n_modules": 3}, "module_positions must have exactly the keys"),
        ({"n_modules": 33}, "n_modules: must be within 1 … 32"),
        ({"module_positions": {"0": [0, 0, 1023, 511], "1": [0, 256, 1023, 767]}}, "overlaps"),
        ({"module_positions": {"0": [0, 0, 1023, 511], "1": [0, 600, 1023, 1111]}}, "outside"),
        ({"module_positions": {"0": [0, 0, 1000, 511], "1": [0, 512, 1023, 1023]}}, "spans"),
        ({"image_pixel_width": 0}, "positive"),
        ({"start_udp_port": 80}, "start_udp_port"),
        ({"bit_depth": "sixteen"}, "bit_depth"),
        ({"detector_name": ""}, "detector_name"),
        ({"favourite_colour": "red"}, "unknown field"),
    ],
)
def test_invalid_config_is_refused_and_the_old_one_kept(daq, change, message):
    before = daq.client.get_config()
    with pytest.raises(StdDaqAdminException, match=message):
        daq.client.set_config(change)
    assert daq.client.get_config() == before
    assert json.loads(daq.config_file.read_text()) == before


def test_config_change_moves_the_receiver_and_is_persisted(daq):
    new_port = free_udp_ports(2)
    applied = daq.client.set_config({"start_udp_port": new_port, "detector_name": "JF-moved"})
    assert applied["start_udp_port"] == new_port
    assert daq.client.get_config() == applied
    assert json.loads(daq.config_file.read_text()) == applied
    deployment = daq.client.get_deployment_status()
    assert deployment["status"] == "SUCCESS"
    assert deployment["stats"]["stop_time"] >= deployment["stats"]["start_time"]

    detector = SimulatedDetector(applied, rate_hz=100, first_frame=500)
    detector.start()
    try:
        output = daq.data_root / "moved.h5"
        status = daq.client.start_writer_sync({"output_file": str(output), "n_images": 5})
        assert status["acquisition"]["message"] == "Completed."
        with h5py.File(output, "r") as f:
            frame = int(f["entry/data/image_id"][0])
            assert (f["entry/data/data"][0] == expected_image(applied, frame)).all()
            assert f["entry"].attrs["detector_name"] == "JF-moved"
    finally:
        detector.stop()

    # a restarted server starts from the persisted config
    daq.stop()
    daq.start(write_config=False)
    assert daq.client.get_config() == applied


def test_config_cannot_change_while_writing(daq):
    daq.client.start_writer_async({"output_file": str(daq.data_root / "w.h5"), "n_images": 10})
    with pytest.raises(StdDaqAdminException, match="WRITING"):
        daq.client.set_config({"detector_name": "other"})
    daq.client.stop_writer()
    assert daq.client.set_config({"detector_name": "other"})["detector_name"] == "other"
