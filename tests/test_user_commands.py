"""What a new user meets first: the client installed alone, readiness waits, signals and exit codes of
std_cli_write_sync without a terminal, std_daq_sim refusing what the server refuses, config answers."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

import h5py
import pytest
import requests
from conftest import RunningDaq, free_tcp_port, jungfrau_config, wait_for

BIN = Path(sys.executable).parent
CLIENT_FOLDER = Path(__file__).resolve().parent.parent / "client"
HEAVY = {"numpy", "h5py", "cffi", "flask", "pyzmq", "pydantic", "waitress", "pillow", "hdf5plugin"}


def test_the_client_installs_alone_and_talks_to_the_server(tmp_path_factory, sending):
    """A fresh venv with only client/ installed: no DAQ dependency, nine tools, a real acquisition."""
    env_dir = tmp_path_factory.mktemp("client-only") / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", str(CLIENT_FOLDER)], check=True, timeout=600)
    listed = json.loads(subprocess.check_output([python, "-m", "pip", "list", "--format=json"], text=True))
    installed = {entry["name"].lower().replace("_", "-") for entry in listed}
    assert "std-daq-client" in installed and not installed & HEAVY
    tools = sorted(p.name for p in (env_dir / "bin").glob("std_cli_*"))
    assert len(tools) == 9, tools
    assert not (env_dir / "bin" / "std_daq_server").exists()

    daq = sending
    status = subprocess.run(
        [env_dir / "bin" / "std_cli_get_status", "--url-base", daq.url], capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0 and json.loads(status.stdout)["state"] == "READY", status.stderr
    output = daq.data_root / "client_only.h5"
    write = subprocess.run(
        [env_dir / "bin" / "std_cli_write_sync", str(output), "20", "--url-base", daq.url, "--run-id", "7"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert write.returncode == 0, write.stderr
    assert json.loads(write.stdout)["acquisition"]["info"]["run_id"] == 7
    with h5py.File(output, "r") as f:
        assert f["entry/data/data"].shape[0] == 20


def test_wait_returns_once_a_server_started_later_answers(tmp_path):
    daq = RunningDaq(tmp_path, jungfrau_config(1))
    waiting = subprocess.Popen(
        [BIN / "std_cli_get_status", "--url_base", daq.url, "--wait", "60"], stdout=subprocess.PIPE, text=True
    )
    time.sleep(1.0)
    assert waiting.poll() is None, "still waiting: nothing listens yet"
    daq.start()
    try:
        out, _ = waiting.communicate(timeout=60)
        assert waiting.returncode == 0 and json.loads(out)["state"] == "READY"
    finally:
        daq.stop()
    quick = subprocess.run(
        [BIN / "std_cli_get_status", "-b", f"http://127.0.0.1:{free_tcp_port()}", "--wait", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert quick.returncode == 1 and quick.stderr.startswith("error: Cannot reach")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_write_sync_stops_the_acquisition_on_a_signal_without_a_terminal(sending, sig):
    daq = sending
    output = daq.data_root / f"signal{int(sig)}.h5"
    tool = subprocess.Popen(
        [BIN / "std_cli_write_sync", str(output), "1000000", "--url-base", daq.url, "--progress"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # no terminal, no job control: as from a script or a job system
    )
    wait_for(lambda: daq.client.get_status()["acquisition"]["stats"]["n_write_completed"] > 0, timeout=20)
    time.sleep(1.2)  # at least one progress line
    tool.send_signal(sig)
    out, err = tool.communicate(timeout=30)
    assert tool.returncode == 128 + sig, err
    assert "Traceback" not in err
    status = daq.client.get_status()
    assert status["state"] == "READY" and status["acquisition"]["message"] == "Interrupted."
    assert json.loads(out)["acquisition"]["message"] == "Interrupted."
    assert re.search(r"\d+/1000000 \[.*img/s", err), err  # --progress lines: count, rate, time left
    with h5py.File(output, "r") as f:
        assert f["entry/data/data"].shape[0] == status["acquisition"]["stats"]["n_write_completed"]


def test_write_sync_exit_code_when_stopped_by_another_client(sending):
    daq = sending
    tool = subprocess.Popen(
        [BIN / "std_cli_write_sync", str(daq.data_root / "stopped.h5"), "1000000", "-b", daq.url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: daq.client.get_status()["acquisition"]["stats"]["n_write_completed"] > 0, timeout=20)
    daq.client.stop_writer()
    _, err = tool.communicate(timeout=30)
    assert tool.returncode == 4, err
    assert "FINISHED Interrupted." in err


def test_std_daq_sim_refuses_what_the_server_refuses_in_one_line(tmp_path):
    for right, typo in (("n_modules", "n_modlues"), ("writer_user_id", "writer_usr_id")):
        config = jungfrau_config(1)
        config[typo] = config.pop(right)
        config_file = tmp_path / f"{typo}.json"
        config_file.write_text(json.dumps(config))
        result = subprocess.run(
            [BIN / "std_daq_sim", "--config", config_file, "--n-images", "3"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = (result.stdout + result.stderr).strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1, lines
        assert typo in lines[0] and "Traceback" not in lines[0]
    checked = subprocess.run(
        [BIN / "std_daq_server", "--config", tmp_path / "n_modlues.json", "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 1 and "n_modlues" in checked.stderr


def test_a_config_change_says_it_stopped_the_built_in_simulator(daq):
    started = requests.get(daq.url + "/simulation/start", params={"rate_hz": 10}, timeout=10).json()
    if started["status"] != "ok":  # the simulation endpoints may take POST with a JSON body instead
        started = requests.post(daq.url + "/simulation/start", json={"rate_hz": 10}, timeout=10).json()
    assert started["status"] == "ok"
    answer = requests.post(daq.url + "/daq/config", json={"detector_name": "renamed"}, timeout=30).json()
    assert answer["status"] == "ok" and answer["config"]["detector_name"] == "renamed"
    assert "receiver was restarted" in answer["message"] and "simulator was stopped" in answer["message"]
    assert daq.client.get_deployment_status()["message"].startswith(answer["message"]), "then the operator's notes"
    again = requests.post(daq.url + "/daq/config", json={"detector_name": "again"}, timeout=30).json()
    assert "simulator" not in again["message"]
    refused = requests.post(daq.url + "/daq/config", json={"n_modules": 3}, timeout=30).json()
    assert refused["status"] == "error" and "config: config:" not in refused["message"]
