"""The StdDaq device outside plans: signals backed by the real server, file naming, misuse."""

from __future__ import annotations

import json
import re

import h5py
import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky import plans as bp
from conftest import make_daq
from ophyd.utils import ReadOnlyError

from ophyd_stddaq import SPEC, StdDaq, StdDaqHDF5Handler, UniqueFilePathProvider
from std_daq_client import StdDaqAdminException


def test_config_signals_read_the_daq_config(daq):
    det = make_daq(daq)
    config = daq.client.get_config()
    assert det.detector_name.get() == config["detector_name"] == "JF-test"
    assert det.bit_depth.get() == 16
    assert det.image_pixel_height.get() == 1024 and det.image_pixel_width.get() == 1024
    assert det.module_positions.get() == config["module_positions"]
    read = det.read_configuration()
    assert read["daq_n_modules"]["value"] == 2
    assert json.loads(read["daq_module_positions"]["value"]) == config["module_positions"]
    described = det.describe_configuration()
    assert set(described) == set(read)
    assert described["daq_bit_depth"]["dtype"] == "integer"
    assert described["daq_module_positions"]["dtype"] == "string"
    assert described["daq_bit_depth"]["source"] == f"{daq.url}/daq/config:bit_depth"


def test_config_signals_set_the_daq_config(daq):
    det = make_daq(daq)
    seen = []
    det.detector_name.subscribe(lambda value, **kw: seen.append(value), run=False)

    det.detector_name.put("JF-renamed")
    assert daq.client.get_config()["detector_name"] == "JF-renamed"
    assert seen == ["JF-renamed"]

    RunEngine({})(bps.mv(det.detector_name, "JF-again", det.writer_user_id, 0))
    assert daq.client.get_config()["detector_name"] == "JF-again"

    positions = {"0": [0, 511, 1023, 0], "1": [0, 512, 1023, 1023]}
    det.module_positions.set(positions).wait(timeout=10)
    assert daq.client.get_config()["module_positions"] == positions


def test_an_invalid_config_value_fails_with_the_servers_message(daq):
    det = make_daq(daq)
    with pytest.raises(StdDaqAdminException, match="bit_depth"):
        det.bit_depth.put(12)
    assert daq.client.get_config()["bit_depth"] == 16
    assert det.bit_depth.get() == 16


def test_status_signals_are_read_only_and_follow_the_daq(sending):
    daq = sending
    det = make_daq(daq)
    assert det.state.get() == "READY"
    with pytest.raises(ReadOnlyError):
        det.state.put("WRITING")
    with pytest.raises(ReadOnlyError):
        det.n_write_completed.set(3)

    states = []
    det.acquisition_state.subscribe(lambda value, **kw: states.append(value), run=False)
    det.n_images.put(30)
    RunEngine({})(bp.fly([det]))

    assert det.acquisition_output_file.get() == det.last_output_file
    assert det.acquisition_n_images.get() == 30 and det.n_write_completed.get() == 30
    assert det.acquisition_message.get() == "Completed."
    assert "WRITING" in states and states[-1] == "FINISHED", "the monitor pushed the states it saw"
    assert det.describe()["daq_image"]["external"] == "FILESTORE:"
    assert det.state.describe()["daq_state"] == {
        "source": f"{daq.url}/writer/status:state",
        "dtype": "string",
        "shape": [],
    }


def test_path_provider_gives_a_new_absolute_name_each_time(tmp_path):
    provider = UniqueFilePathProvider(str(tmp_path), prefix="scan")
    names = {provider() for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert re.fullmatch(re.escape(str(tmp_path)) + r"/scan_\d{8}-\d{6}_[0-9a-f]{8}\.h5", name)
    with pytest.raises(ValueError, match="absolute"):
        UniqueFilePathProvider("relative/dir")
    with pytest.raises(ValueError, match="prefix"):
        UniqueFilePathProvider(str(tmp_path), prefix="a/b")


def test_custom_path_provider(sending):
    daq = sending
    target = str(daq.data_root / "my_own_name.h5")
    det = StdDaq(daq.url, name="daq", path_provider=lambda: target)
    det.n_images.put(1)  # exactly one image from this free-running detector
    RunEngine({})(bp.count([det]))
    with h5py.File(target, "r") as f:
        assert f["entry/data/data"].shape == (1, 1024, 1024)


def test_misuse_is_refused_before_anything_starts(daq):
    det = make_daq(daq)
    RE = RunEngine({})
    det.n_images.put(-1)
    with pytest.raises(ValueError, match=r"daq.n_images must be an integer >= 0 \(0: from the plan\), not -1"):
        RE(bp.count([det]))
    no_folder = StdDaq(daq.url, name="nofolder")
    with pytest.raises(ValueError, match="has no output folder"):
        RE(bp.count([no_folder]))
    with pytest.raises(RuntimeError, match="must be staged before trigger"):
        det.trigger()
    with pytest.raises(RuntimeError, match="no acquisition; stage or kickoff"):
        det.complete()
    with pytest.raises(ValueError, match="either directory or path_provider"):
        StdDaq(daq.url, name="x", directory="/tmp", path_provider=lambda: "/tmp/x.h5")
    assert daq.client.get_status()["acquisition"]["message"] == "No acquisition yet."
    assert list(daq.data_root.iterdir()) == []


def test_handler_reads_images_by_index(sending):
    daq = sending
    output = daq.data_root / "direct.h5"
    daq.client.start_writer_sync({"output_file": str(output), "n_images": 3})
    handler = StdDaqHDF5Handler(str(output))
    try:
        assert SPEC in handler.specs
        assert handler(2).shape == (1024, 1024)
        assert handler.get_file_list([{"index": 0}]) == [str(output)]
        with pytest.raises(IndexError, match="holds 3 images, there is no image 3"):
            handler(3)
    finally:
        handler.close()
