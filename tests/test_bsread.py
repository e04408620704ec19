"""detector_type bsread: images from a ZeroMQ bsread stream, through the server into HDF5."""

import json

import h5py
import numpy as np
import pytest
import zmq
from conftest import RunningDaq, free_tcp_port, wait_for
from expected import expected_image


def bsread_config(bit_depth: int = 16) -> dict:
    return {
        "detector_name": "BS-test",
        "detector_type": "bsread",
        "bit_depth": bit_depth,
        "image_pixel_height": 256,
        "image_pixel_width": 512,
        "n_modules": 1,
        "start_udp_port": 50000,
        "writer_user_id": 0,
        "module_positions": {},
        "bsread_address": f"tcp://127.0.0.1:{free_tcp_port()}",
    }


@pytest.fixture
def bsread_daq(tmp_path):
    daq = RunningDaq(tmp_path, bsread_config()).start()
    yield daq
    daq.stop()


def test_bsread_stream_is_written_pixel_for_pixel(bsread_daq):
    daq = bsread_daq
    assert daq.client.get_config()["bsread_address"] == daq.config["bsread_address"]
    status, output = daq.acquire("bs.h5", 10, first_frame=5000)
    assert status["acquisition"]["message"] == "Completed."
    with h5py.File(output, "r") as f:
        data = f["entry/data/data"]
        assert data.shape == (10, 256, 512) and data.dtype == np.uint16
        pulse_ids = f["entry/data/image_id"][:]
        assert pulse_ids[0] >= 5000
        assert list(np.diff(pulse_ids)) == [1] * 9
        for i, pulse_id in enumerate(pulse_ids):
            assert np.array_equal(data[i], expected_image(daq.config, int(pulse_id)))


def test_foreign_and_mismatching_messages_are_skipped(tmp_path):
    config = bsread_config()
    address = config["bsread_address"]
    daq = RunningDaq(tmp_path, config).start()
    context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    publisher.bind(address)
    try:
        daq.client.start_writer_async({"output_file": str(daq.data_root / "mixed.h5"), "n_images": 3})
        wrong_shape = json.dumps({"htype": "bsr_d-1.1", "channels": [{"name": "X", "type": "uint16", "shape": [8, 8]}]})

        def send_round(pulse_id):
            publisher.send_multipart([b"not json at all", b"", b"", b""])
            main = {"htype": "bsr_m-1.1", "pulse_id": pulse_id, "hash": "other"}
            publisher.send_multipart([json.dumps(main).encode(), wrong_shape.encode(), bytes(128), bytes(16)])
            good = {"htype": "bsr_m-1.1", "pulse_id": pulse_id, "hash": "good", "global_timestamp": {"sec": 1}}
            header = {"htype": "bsr_d-1.1", "channels": [{"name": "IMG", "type": "uint16", "shape": [512, 256]}]}
            image = np.full((256, 512), pulse_id, dtype=np.uint16)
            publisher.send_multipart([json.dumps(good).encode(), json.dumps(header).encode(), image, bytes(16)])

        pulse = 1

        def done():
            nonlocal pulse
            send_round(pulse)
            pulse += 1
            return daq.client.get_status()["state"] == "READY"

        wait_for(done, timeout=20, interval=0.05)
        with h5py.File(daq.data_root / "mixed.h5", "r") as f:
            ids = f["entry/data/image_id"][:]
            assert len(ids) == 3
            for i, pulse_id in enumerate(ids):
                assert (f["entry/data/data"][i] == pulse_id).all()
    finally:
        publisher.close(0)
        context.term()
        daq.stop()


def test_bsread_config_needs_an_address(daq):
    from std_daq_client import StdDaqAdminException

    change = {"detector_type": "bsread", "n_modules": 1, "module_positions": {}}
    with pytest.raises(StdDaqAdminException, match="bsread_address"):
        daq.client.set_config(change)
    with pytest.raises(StdDaqAdminException, match="for detector_type bsread only"):
        daq.client.set_config({"bsread_address": "tcp://127.0.0.1:1"})
    assert daq.client.get_config()["detector_type"] == "jungfrau"
    assert "bsread_address" not in daq.client.get_config()


def test_leaving_bsread_drops_its_stream_settings(bsread_daq):
    from conftest import free_udp_ports

    from sim import configs

    jungfrau = configs.jungfrau_config(2, free_udp_ports(2), "JF-again")
    applied = bsread_daq.client.set_config(jungfrau)
    assert applied["detector_type"] == "jungfrau"
    assert "bsread_address" not in applied


def test_big_endian_channel_is_written_with_its_values(tmp_path):
    config = bsread_config()
    daq = RunningDaq(tmp_path, config).start()
    context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    publisher.bind(config["bsread_address"])
    try:
        daq.client.start_writer_async({"output_file": str(daq.data_root / "be.h5"), "n_images": 2})
        header = {"htype": "bsr_d-1.1", "channels": [{"name": "IMG", "type": "uint16", "shape": [512, 256],
                                                       "encoding": "big"}]}  # fmt: skip
        image = np.arange(256 * 512, dtype=">u2").reshape(256, 512)
        pulse = 1

        def done():
            nonlocal pulse
            main = {"htype": "bsr_m-1.1", "pulse_id": pulse, "hash": "be"}
            publisher.send_multipart([json.dumps(main).encode(), json.dumps(header).encode(), image, bytes(16)])
            pulse += 1
            return daq.client.get_status()["state"] == "READY"

        wait_for(done, timeout=20, interval=0.05)
        with h5py.File(daq.data_root / "be.h5", "r") as f:
            assert np.array_equal(f["entry/data/data"][0], image.astype(np.uint16))
    finally:
        publisher.close(0)
        context.term()
        daq.stop()
