"""Running the DAQ as a service: stats at a known rate, persistent logs, deployment, user ids."""

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import pytest
from conftest import RunningDaq, jungfrau_config, wait_for

from std_daq_client import StdDaqAdminException

PACKET, PACKETS_PER_MODULE = 8240, 128


def test_stats_match_what_the_simulator_sends(daq):
    assert daq.client.get_stats()["detector"]["images_per_second"] == 0.0
    detector = daq.simulator(rate_hz=100, first_frame=1)
    detector.start()
    try:
        daq.client.start_writer_async({"output_file": str(daq.data_root / "s.h5"), "n_images": 100_000})
        time.sleep(2.2)
        samples = []
        for _ in range(3):
            samples.append(daq.client.get_stats())
            time.sleep(1.0)
        daq.client.stop_writer()
    finally:
        detector.stop()
    expected_bytes = 100 * 2 * PACKETS_PER_MODULE * PACKET
    detector_ips = statistics.median(s["detector"]["images_per_second"] for s in samples)
    detector_bps = statistics.median(s["detector"]["bytes_per_second"] for s in samples)
    writer_ips = statistics.median(s["writer"]["images_per_second"] for s in samples)
    writer_bps = statistics.median(s["writer"]["bytes_per_second"] for s in samples)
    # No timing assertion (a busy machine slows the sender): the rates are there, never above what was
    # sent, and each one's bytes per image are exactly those of this detector.
    for ips in (detector_ips, writer_ips):
        assert 0 < ips <= 100 * 1.5
    assert detector_bps / detector_ips == pytest.approx(expected_bytes / 100, rel=0.05)
    for sample in samples:
        writer = sample["writer"]
        assert writer["bytes_per_second"] == pytest.approx(writer["images_per_second"] * 1024 * 1024 * 2, rel=1e-6)
    assert writer_bps == pytest.approx(writer_ips * 1024 * 1024 * 2, rel=1e-6)
    idle = wait_for(lambda: (s := daq.client.get_stats())["detector"]["images_per_second"] == 0 and s, timeout=5)
    assert idle["writer"]["bytes_per_second"] == 0


def test_logs_survive_a_restart_newest_first(sending):
    daq = sending
    for name in ("a.h5", "b.h5", "c.h5"):
        daq.client.start_writer_sync({"output_file": str(daq.data_root / name), "n_images": 2})
    before = daq.client.get_logs(10)
    assert [entry["info"]["output_file"][-4:] for entry in before] == ["c.h5", "b.h5", "a.h5"]
    assert daq.client.get_logs(0) == []
    daq.stop()
    daq.start(write_config=False)
    assert daq.client.get_logs(10) == before
    assert daq.client.get_status()["state"] == "READY"


def test_deployment_reports_each_config_change(daq):
    first = daq.client.get_deployment_status()
    assert first["status"] == "SUCCESS"
    assert list(first["servers"].values()) == ["SUCCESS"]
    daq.client.set_config({"detector_name": "renamed"})
    second = daq.client.get_deployment_status()
    assert second["config_id"] != first["config_id"]
    assert second["stats"]["start_time"] >= first["stats"]["stop_time"]


@pytest.fixture
def traversable_daq():
    """A server whose data root another user can reach (pytest's tmp folders are private to root)."""
    workdir = Path(tempfile.mkdtemp(prefix="std_daq_uid_"))
    workdir.chmod(0o755)
    daq = RunningDaq(workdir, jungfrau_config()).start()
    daq.data_root.chmod(0o755)
    detector = daq.simulator(first_frame=1)
    detector.start()
    yield daq
    detector.stop()
    daq.stop()
    shutil.rmtree(workdir)


@pytest.mark.skipif(os.geteuid() != 0, reason="creating files for another user needs root")
def test_files_are_created_and_owned_by_writer_user_id(traversable_daq):
    daq = traversable_daq
    daq.client.set_config({"writer_user_id": 54321})
    with pytest.raises(StdDaqAdminException, match="User id 54321 may not create files"):
        daq.client.start_writer_async({"output_file": str(daq.data_root / "denied.h5"), "n_images": 2})
    shared = daq.data_root / "shared"
    shared.mkdir()
    os.chown(shared, 54321, 54321)
    output = shared / "owned.h5"
    status = daq.client.start_writer_sync({"output_file": str(output), "n_images": 3})
    assert status["acquisition"]["message"] == "Completed."
    assert output.stat().st_uid == 54321
    with h5py.File(output, "r") as f:
        assert f["entry/data/data"].shape[0] == 3


@pytest.mark.skipif(os.geteuid() == 0, reason="as root the server may write as any user")
def test_writer_user_id_without_root_is_a_clear_error(daq):
    daq.client.set_config({"writer_user_id": os.geteuid() + 1})
    with pytest.raises(StdDaqAdminException, match="CAP_SETUID and CAP_SETGID"):
        daq.client.start_writer_async({"output_file": str(daq.data_root / "x.h5"), "n_images": 2})


def test_a_server_started_inside_a_copy_of_the_source_tree_runs_the_installed_package(tmp_path):
    """As after ``git clone; pip install .; std_daq_server …`` in the clone: the working folder holds the
    package's sources without their compiled modules; the server and its writer processes must import the
    installed package, not that copy."""
    source = tmp_path / "clone"
    for package in ("daq_server", "sim", "detectors"):
        shutil.copytree(Path(__file__).parent.parent / package, source / package,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__"))  # fmt: skip
    program = [str(Path(sys.executable).parent / "std_daq_server")]
    daq = RunningDaq(tmp_path / "daq", jungfrau_config(1), program=program, cwd=source).start()
    try:
        status, output = daq.acquire("installed.h5", 10)
        assert status["acquisition"]["message"] == "Completed.", status["acquisition"]["message"]
        with h5py.File(output, "r") as f:
            assert f["entry/data/data"].shape[0] == 10
    finally:
        daq.stop()
