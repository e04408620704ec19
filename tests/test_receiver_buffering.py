"""What the receiver can hold while the writer is behind, and whether its threads run real-time,
as the deployment status reports it: with root's privileges, and without them."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import RING_MB, RunningDaq, jungfrau_config, nice_of, writer_pids

from daq_server.serve.priority import autogroups_enabled


def test_the_deployment_reports_ring_socket_buffer_and_priority(daq):
    deployment = daq.client.get_deployment_status()
    receiver = deployment["receiver"]
    assert receiver["ring_images"] == (RING_MB << 20) // (2 * 1024 * 1024), "as many images as --ring-mb holds"
    assert receiver["ring_bytes"] == receiver["ring_images"] * 2 * 1024 * 1024
    assert receiver["socket_buffer_bytes"] > 0
    assert ("normal priority" in deployment["message"]) == (not receiver["realtime"])
    if os.geteuid() == 0:  # the writer processes run ahead of the machine's ordinary work
        assert [nice_of(pid) for pid in writer_pids(daq)] == [-10]


def session_group_nice(pid: int | str = "self") -> int:
    """The nice of a process's autogroup; a process of the boot session (as in many containers)
    is in the root group, which the kernel shows as an empty file and which has the normal share."""
    fields = open(f"/proc/{pid}/autogroup").read().split()
    return int(fields[-1]) if fields else 0


@pytest.mark.skipif(os.geteuid() != 0, reason="raising priorities needs root or CAP_SYS_NICE")
@pytest.mark.skipif(not autogroups_enabled(), reason="the kernel does not group processes by session")
def test_a_server_leading_its_session_raises_the_sessions_cpu_share(tmp_path):
    """Where the kernel shares the CPU between sessions first (autogroups), the nice values inside
    one count only against each other: a server in its own session gives that session its nice."""
    own = RunningDaq(tmp_path / "own", jungfrau_config(1), new_session=True).start()
    shared = RunningDaq(tmp_path / "shared", jungfrau_config(1)).start()
    try:
        assert session_group_nice(own.proc.pid) == -10
        assert "own session" not in own.client.get_deployment_status()["message"]
        assert session_group_nice(shared.proc.pid) == session_group_nice() == 0, "a caller's session is left alone"
        assert "start it in its own session" in shared.client.get_deployment_status()["message"]
        assert nice_of(shared.proc.pid) == -10, "its threads still run at the writer nice"
    finally:
        own.stop()
        shared.stop()


DROP = "-sys_nice,-net_admin"


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) drops the capabilities")
def test_without_privileges_the_deployment_says_what_is_missing(tmp_path):
    """A server without CAP_SYS_NICE and CAP_NET_ADMIN (what a non-root server lacks) still runs,
    and its deployment status says that its threads are not real-time and its buffers smaller."""
    wrapper = ["setpriv", f"--bounding-set={DROP}", f"--inh-caps={DROP}"]
    daq = RunningDaq(tmp_path, jungfrau_config(1), wrapper=wrapper, extra_args=["--socket-buffer-mb", "1024"])
    daq.start()
    try:
        deployment = daq.client.get_deployment_status()
        assert deployment["status"] == "SUCCESS"
        assert deployment["receiver"]["realtime"] is False
        assert "normal priority" in deployment["message"] and "CAP_SYS_NICE" in deployment["message"]
        assert deployment["receiver"]["socket_buffer_bytes"] < 1024 << 20
        assert "net.core.rmem_max" in deployment["message"]
        assert "writer processes run at normal priority" in deployment["message"]
        assert [nice_of(pid) for pid in writer_pids(daq)] == [0]
    finally:
        daq.stop()
