"""The console scripts a user types: std_daq_sim and std_daq_server, run as processes."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import collect_images, jungfrau_config

from daq_server.receive.udp_receiver import Receiver, ReceiverSettings

BIN = Path(sys.executable).parent


def test_std_daq_sim_sends_what_its_options_say(tmp_path):
    config = jungfrau_config()
    config_file = tmp_path / "jf.json"
    config_file.write_text(json.dumps(config))
    receiver = Receiver(config, ReceiverSettings(bind_address="127.0.0.1", ring_bytes=16 << 20))
    try:
        result = subprocess.run(
            [BIN / "std_daq_sim", "--config", config_file, "--rate", "200", "--n-images", "8", "--first-frame", "40",
             "--loss", "0.02", "--loss-burst", "3", "--seed", "1"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        sent = json.loads(result.stdout)
        images = collect_images(receiver, 8)
    finally:
        receiver.close()
    assert sent["frames_sent"] == 8
    assert [frame for frame, _, _ in images] == list(range(40, 48))
    assert sum(n for _, n, _ in images) == sent["packets_not_sent"] > 0


def test_std_daq_sim_refuses_a_config_it_cannot_emulate(tmp_path):
    config_file = tmp_path / "bad.json"
    config_file.write_text(json.dumps(dict(jungfrau_config(), bit_depth=12)))
    result = subprocess.run([BIN / "std_daq_sim", "--config", config_file], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "bit_depth 12 is not supported" in result.stderr  # the server's validator, run by the simulator
    assert result.stderr.strip().count("\n") == 0, "one line, no traceback"


def test_std_daq_server_refuses_an_invalid_config_file(tmp_path):
    config_file = tmp_path / "bad.json"
    config_file.write_text(json.dumps(dict(jungfrau_config(), n_modules=3)))
    result = subprocess.run(
        [BIN / "std_daq_server", "--config", config_file, "--port", "0", "--data-root", tmp_path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "module_positions must have exactly the keys" in result.stderr
    assert result.stderr.strip().count("\n") == 0, "one line, no traceback"
