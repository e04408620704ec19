"""Every client method and every std_cli_* tool against the real server."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from std_daq_client import StdDaqAdminException, StdDaqClient


def cli(daq, *args, env=None):
    # console scripts sit beside the interpreter running the tests (the venv), PATH or not
    beside = Path(sys.executable).parent / args[0]
    tool = str(beside) if beside.exists() else shutil.which(args[0])
    assert tool, f"{args[0]} is installed as a console script"
    return subprocess.run([tool, *args[1:]], capture_output=True, text=True, timeout=60, env=env)


def test_every_client_method(sending):
    daq = sending
    client = daq.client
    assert set(client.get_status()) == {"acquisition", "state", "compression"}  # compression: the files'
    config = client.get_config()
    assert config["detector_type"] == "jungfrau"
    assert client.set_config({"writer_user_id": 0})["writer_user_id"] == 0
    out = str(daq.data_root / "m.h5")
    assert client.start_writer_async({"output_file": out, "n_images": 3})["state"] == "WRITING"
    assert client.stop_writer()["state"] == "READY"
    done = client.start_writer_sync({"output_file": str(daq.data_root / "n.h5"), "n_images": 3})
    assert done["acquisition"]["state"] == "FINISHED"
    logs = client.get_logs(5)
    assert [entry["info"]["output_file"] for entry in logs] == [str(daq.data_root / "n.h5"), out]
    assert client.get_logs(1) == logs[:1]
    stats = client.get_stats()
    assert set(stats) == {"detector", "writer"}
    assert set(stats["detector"]) == {
        "bytes_per_second", "images_per_second", "packets_received", "packets_lost", "packets_foreign",
        "packets_late", "packets_duplicate", "frame_restarts", "images_incomplete", "images_dropped",
    }  # fmt: skip
    deployment = client.get_deployment_status()
    assert {"config_id", "message", "servers", "stats", "status"} <= set(deployment)


def test_unreachable_server_raises_runtime_error():
    with pytest.raises(RuntimeError, match="Cannot reach"):
        StdDaqClient("http://127.0.0.1:9").get_status()


def test_admin_exception_is_not_a_runtime_error(daq):
    with pytest.raises(StdDaqAdminException) as caught:
        daq.client.start_writer_async({"output_file": "relative.h5", "n_images": 1})
    assert not isinstance(caught.value, RuntimeError)


def test_every_cli_tool(sending, tmp_path):
    daq = sending
    url = ["--url_base", daq.url]
    for tool in ("std_cli_get_status", "std_cli_get_config", "std_cli_get_stats", "std_cli_get_deploy_status"):
        result = cli(daq, tool, *url)
        assert result.returncode == 0, result.stderr
        assert isinstance(json.loads(result.stdout), dict)

    config_file = tmp_path / "change.json"
    config_file.write_text(json.dumps({"detector_name": "JF-cli"}))
    result = cli(daq, "std_cli_set_config", str(config_file), *url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["detector_name"] == "JF-cli"

    output = daq.data_root / "cli_sync.h5"
    result = cli(daq, "std_cli_write_sync", str(output), "4", *url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["acquisition"]["message"] == "Completed."
    with h5py.File(output, "r") as f:
        assert f["entry/data/data"].shape[0] == 4

    result = cli(daq, "std_cli_write_async", str(daq.data_root / "cli_async.h5"), "100000", "-b", daq.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "WRITING"
    env = dict(os.environ, STD_DAQ_API_URL=daq.url)
    result = cli(daq, "std_cli_write_stop", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["acquisition"]["message"] == "Interrupted."

    result = cli(daq, "std_cli_get_logs", "-n", "1", *url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["info"]["output_file"].endswith("cli_async.h5")


def test_cli_errors_are_one_line_and_non_zero(daq):
    result = cli(daq, "std_cli_write_async", "relative.h5", "3", "--url_base", daq.url)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert "absolute" in result.stderr
    result = cli(daq, "std_cli_get_status", "--url_base", "http://127.0.0.1:9")
    assert result.returncode != 0
    assert result.stderr.startswith("error:")


def test_write_sync_shows_progress_on_a_terminal(sending):
    """Run the tool on a real pseudo-terminal and read what a user would see."""
    import pty

    daq = sending
    output = daq.data_root / "tty.h5"
    tool = str(Path(sys.executable).parent / "std_cli_write_sync")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on the terminal
        os.execv(tool, [tool, str(output), "150", "--url_base", daq.url])
    seen = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    _, exit_status = os.waitpid(pid, 0)
    text = seen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(exit_status) == 0, text
    assert "/150 [" in text and "img/s" in text  # the bar, with its rate and time left
    assert "150/150 images written: FINISHED Completed." in text
    assert '"message": "Completed."' in text
    with h5py.File(output, "r") as f:
        assert f["entry/data/data"].shape[0] == 150
