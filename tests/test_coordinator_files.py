"""The scale-out coordinator's master file stays inside the data root: it is created the symlink-safe way
(descriptors from the data root, no link followed, as writer_user_id), even while a user keeps swapping the
output folder with a link to a folder outside (a rename exchange), as the single server's files are."""

from __future__ import annotations

import subprocess
import sys

import requests
from conftest import RunningDaq, answers_http, free_tcp_port, jungfrau_config, wait_for
from test_security_files import SWAPPER

from sim import SimulatedDetector


def test_the_coordinators_master_file_never_escapes_the_data_root(tmp_path):
    config = jungfrau_config(2)
    data = tmp_path / "data"
    hosts = [RunningDaq(tmp_path / f"host{i}", config, extra_args=["--modules", str(i)]) for i in (0, 1)]
    for host in hosts:
        host.workdir.mkdir(parents=True)
        (host.workdir / "data").symlink_to(data, target_is_directory=True)  # one data root for all
    data.mkdir()
    for host in hosts:
        host.start()
    config_file = tmp_path / "full.json"
    config_file.write_text(hosts[0].config_file.read_text())
    port = free_tcp_port()
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "daq_server.coordinator.cli", "--config", str(config_file), "--hosts",
         ",".join(h.url for h in hosts), "--port", str(port), "--data-root", str(data), "--state-dir",
         str(tmp_path / "cstate")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    race, swap, outside = data / "race", data / "race_swap", tmp_path / "outside"
    race.mkdir()
    outside.mkdir()
    swap.symlink_to(outside)
    detector = SimulatedDetector(config, rate_hz=200)
    swapper = None
    outcomes = []
    try:
        wait_for(lambda: answers_http(url), timeout=30)
        detector.start()
        swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(race), str(swap)])
        for k in range(6):
            answer = requests.post(url + "/writer/write_async", json={"output_file": str(race / f"m{k}.h5"),
                                                                    "n_images": 5}, timeout=60).json()  # fmt: skip
            if answer["status"] == "ok":
                wait_for(lambda: requests.get(url + "/writer/status", timeout=10).json()["writer"]["state"] == "READY",
                         timeout=60)  # fmt: skip
                outcomes.append(requests.get(url + "/writer/status", timeout=10).json()["writer"]["acquisition"])
            else:
                outcomes.append(answer["message"])
    finally:
        if swapper is not None:
            swapper.kill()
            swapper.wait()
        detector.stop()
        coordinator.terminate()
        coordinator.wait(30)
        for host in hosts:
            host.stop()
    assert list(outside.iterdir()) == [], f"files outside the data root: {list(outside.iterdir())}; {outcomes}"
    real = swap if race.is_symlink() else race
    masters = [p for p in real.iterdir() if p.name.startswith("m") and ".part" not in p.name]
    completed = [o for o in outcomes if isinstance(o, dict) and o["message"].startswith("Completed")]
    assert len(masters) == len(completed), (masters, outcomes)
