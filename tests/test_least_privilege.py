"""Least privilege: the server runs with exactly the capabilities its systemd unit grants
(deploy/systemd/std-daq-server.service) and still writes a file as another user, into a folder only that
user may enter, with real-time receive threads and the receive buffers it asks for.

As a non-root service user where the Python interpreter is reachable by other users; where it is not (a
Python installed under a private home, as on the CI machines), as uid 0 stripped to those capabilities -- no
CAP_DAC_OVERRIDE, CAP_CHOWN or CAP_FOWNER -- which shows the same thing: the file can only be made through the
writer's own identity switch."""

from __future__ import annotations

import configparser
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import RunningDaq, jungfrau_config

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "systemd" / "std-daq-server.service"
CAP_BITS = {"CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_NET_ADMIN": 12, "CAP_SYS_NICE": 23}
SERVICE_UID = 4321
WRITER_UID = 54321


def unit_capabilities() -> list[str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(UNIT.read_text().replace("\\\n", " "))
    granted = parser["Service"]["AmbientCapabilities"].split()
    assert granted == parser["Service"]["CapabilityBoundingSet"].split(), "grants exactly what it bounds"
    return granted


def reachable_by_others(path: Path) -> bool:
    path = path.resolve()
    for part in [*reversed(path.parents), path]:
        if not os.stat(part).st_mode & stat.S_IXOTH:
            return False
    return True


@pytest.fixture
def traversable_tmp():
    """A folder every user may pass through (pytest's are private to root), as a data root must be for the
    writer user."""
    folder = Path(tempfile.mkdtemp(prefix="std_daq_caps_"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_the_server_runs_with_only_its_units_capabilities_and_writes_as_another_user(traversable_tmp):
    tmp_path = traversable_tmp
    capabilities = unit_capabilities()
    assert set(capabilities) == set(CAP_BITS), capabilities
    names = ",".join("+" + c.removeprefix("CAP_").lower() for c in capabilities)
    as_service_user = reachable_by_others(Path(sys.executable)) and reachable_by_others(ROOT)
    uid = SERVICE_UID if as_service_user else 0
    wrapper = ["setpriv", f"--inh-caps=-all,{names}", f"--ambient-caps=-all,{names}", f"--bounding-set=-all,{names}"]
    if as_service_user:
        wrapper[1:1] = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    workdir = tmp_path / "daq"
    workdir.mkdir()
    for folder in (tmp_path, workdir):
        folder.chmod(0o755)
    os.chown(workdir, uid, uid)  # its state folder and log go there
    daq = RunningDaq(workdir, jungfrau_config(1), wrapper=[*wrapper, "--"], extra_args=["--socket-buffer-mb", "64"])
    daq.data_root.mkdir()
    os.chown(daq.data_root, uid, uid)
    daq.config_file.write_text("{}")
    os.chown(daq.config_file, uid, uid)
    private = daq.data_root / "private"
    private.mkdir(mode=0o700)
    os.chown(private, WRITER_UID, WRITER_UID)  # only the writer user may enter
    daq.start()
    try:
        status = (Path(f"/proc/{daq.proc.pid}/status")).read_text()
        effective = int(next(line for line in status.splitlines() if line.startswith("CapEff:")).split()[1], 16)
        assert effective == sum(1 << bit for bit in CAP_BITS.values()), f"CapEff {effective:#x}"
        assert f"Uid:\t{uid}\t" in status
        daq.client.set_config({"writer_user_id": WRITER_UID})
        deployment = daq.client.get_deployment_status()
        assert deployment["receiver"]["realtime"] is True, deployment["message"]
        assert deployment["receiver"]["socket_buffer_bytes"] >= 64 << 20, deployment["message"]
        status, output = daq.acquire("private/owned.h5", 5)
        assert status["acquisition"]["message"] == "Completed.", status["acquisition"]["message"]
        assert output.stat().st_uid == WRITER_UID
    finally:
        daq.stop()
