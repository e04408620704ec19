"""Output files stay inside the data root (no symbolic link followed, even one swapped in while a
request runs), a refused request leaves nothing on disk, and state-folder or config-file failures
answer a clear refusal."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import requests
from conftest import RunningDaq, jungfrau_config

from std_daq_client import StdDaqAdminException

SWAPPER = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = sys.argv[1].encode(), sys.argv[2].encode()
while True:
    libc.renameat2(-100, a, -100, b, 2)  # RENAME_EXCHANGE: the folder and the link trade names
"""


def write_async(daq, output_file, n_images=1) -> dict:
    return requests.post(
        daq.url + "/writer/write_async", json={"output_file": str(output_file), "n_images": n_images}, timeout=30
    ).json()


def open_files_below(pid: int, folder) -> list[str]:
    """What process ``pid`` holds open in ``folder`` (files and folders)."""
    held = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            held.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return [path for path in held if path.startswith(str(folder))]


def test_a_folder_swapped_for_a_link_never_lets_a_file_out(daq, tmp_path):
    race, swap, outside = daq.data_root / "race", daq.data_root / "race_swap", tmp_path / "outside"
    race.mkdir()
    outside.mkdir()
    swap.symlink_to(outside)
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(race), str(swap)])
    answers = {}
    try:
        for i in range(150):
            answers[f"f{i}.h5"] = write_async(daq, race / f"f{i}.h5")
            if answers[f"f{i}.h5"]["status"] == "ok":
                requests.post(daq.url + "/writer/stop", timeout=30)
    finally:
        swapper.kill()
        swapper.wait()
    real = swap if race.is_symlink() else race
    assert os.listdir(outside) == []
    made = set(os.listdir(real))
    refused = {name for name, answer in answers.items() if answer["status"] != "ok"}
    accepted = set(answers) - refused
    assert made == accepted, "every accepted request made its file, no refused one did"
    assert all("symbolic link" in answers[n]["message"] or "not a folder" in answers[n]["message"] or
               "Cannot create" in answers[n]["message"] for n in refused)  # fmt: skip
    if race.is_symlink():
        race.rename(daq.data_root / "tmp")
        swap.rename(race)
    assert open_files_below(daq.proc.pid, daq.data_root) == []
    assert write_async(daq, race / "plain.h5")["status"] == "ok"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root, out: (root / "link").symlink_to(out), "symbolic link"),
        (lambda root, out: (root / "link").symlink_to(root / "link"), "symbolic link"),  # a loop
        (lambda root, out: (root / "link").symlink_to(root), "symbolic link"),  # even one that stays inside
        (lambda root, out: (root / "link").write_text("a file"), "not a folder"),
    ],
)
def test_a_link_below_the_data_root_is_refused(daq, tmp_path, make, message):
    outside = tmp_path / "outside"
    outside.mkdir()
    make(daq.data_root, outside)
    with pytest.raises(StdDaqAdminException, match=message):
        daq.client.start_writer_async({"output_file": str(daq.data_root / "link" / "f.h5"), "n_images": 1})
    assert os.listdir(outside) == []
    assert daq.client.get_status()["state"] == "READY"


def test_a_link_as_the_file_name_is_refused_and_its_target_untouched(daq, tmp_path):
    precious = tmp_path / "precious.h5"
    precious.write_bytes(b"keep me")
    (daq.data_root / "f.h5").symlink_to(precious)
    with pytest.raises(StdDaqAdminException, match="exists already"):
        daq.client.start_writer_async({"output_file": str(daq.data_root / "f.h5"), "n_images": 1})
    assert precious.read_bytes() == b"keep me"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a" * 256 + ".h5", "longer than 255 bytes"),
        ("d/" * 2100 + "f.h5", "longer than 4095"),
        ("ä" * 130 + ".h5", "255"),
    ],
)
def test_overlong_names_are_refused(daq, name, message):
    answer = requests.post(
        daq.url + "/writer/write_async", json={"output_file": f"{daq.data_root}/{name}", "n_images": 1}, timeout=30
    )
    assert answer.status_code == 200 and answer.json()["status"] == "error"
    assert message in answer.json()["message"]


@pytest.mark.skipif(os.geteuid() != 0, reason="creating files as another user needs root")
def test_the_file_belongs_to_writer_user_id_and_a_folder_it_may_not_enter_is_refused(daq):
    own = daq.data_root / "own"
    own.mkdir()
    os.chown(own, 4321, 4321)
    closed = daq.data_root / "closed"
    closed.mkdir(mode=0o700)
    daq.client.set_config({"writer_user_id": 4321})
    assert write_async(daq, own / "mine.h5")["status"] == "ok"
    requests.post(daq.url + "/writer/stop", timeout=30)
    assert (own / "mine.h5").stat().st_uid == 4321
    answer = write_async(daq, closed / "f.h5")
    assert answer["status"] == "error" and "4321 may not" in answer["message"]
    assert os.listdir(closed) == []


def test_a_state_folder_that_cannot_take_the_marker_refuses_and_leaves_no_file(daq):
    state = daq.config_file.with_name(daq.config_file.name + ".state")
    (state / "acquisition_in_progress.json").mkdir()  # writing the marker fails, as on a full disk
    answer = write_async(daq, daq.data_root / "f.h5")
    assert answer["status"] == "error" and "state folder" in answer["message"]
    assert os.listdir(daq.data_root) == []
    assert open_files_below(daq.proc.pid, daq.data_root) == []
    assert daq.client.get_status()["state"] == "READY"


def test_a_log_that_cannot_be_written_loses_neither_the_acquisition_nor_the_answer(daq):
    state = daq.config_file.with_name(daq.config_file.name + ".state")
    (state / "acquisitions.jsonl").mkdir()  # appending fails
    assert write_async(daq, daq.data_root / "f.h5", n_images=5)["status"] == "ok"
    stopped = requests.post(daq.url + "/writer/stop", timeout=30)
    assert stopped.status_code == 200 and stopped.json()["writer"]["acquisition"]["message"] == "Interrupted."
    logs = daq.client.get_logs(3)
    assert [log["info"]["output_file"] for log in logs] == [str(daq.data_root / "f.h5")]


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_set_config_keeps_the_config_files_mode_and_owner(daq):
    daq.config_file.chmod(0o640)
    os.chown(daq.config_file, 1234, 2345)
    daq.client.set_config({"detector_name": "renamed"})
    info = daq.config_file.stat()
    assert (info.st_mode & 0o777, info.st_uid, info.st_gid) == (0o640, 1234, 2345)
    assert '"renamed"' in daq.config_file.read_text()


def test_server_without_data_root_refuses_to_start(tmp_path):
    config = tmp_path / "c.json"
    config.write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "daq_server.serve.cli", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "--data-root" in result.stderr


def test_concurrent_requests_create_at_most_one_file(daq):
    """Many clients asking for the same new file at once: one wins, the others are refused cleanly."""
    target = daq.data_root / "same.h5"
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(write_async(daq, target))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(a["status"] == "ok" for a in answers) == 1
    assert os.listdir(daq.data_root) == ["same.h5"]


def test_a_config_file_that_cannot_be_rewritten_keeps_the_old_config(tmp_path):
    daq = RunningDaq(tmp_path, jungfrau_config(1), max_file_bytes=64)  # the config JSON does not fit
    daq.start()
    try:
        before = daq.client.get_config()
        text = daq.config_file.read_text()
        answer = requests.post(daq.url + "/daq/config", json={"detector_name": "renamed"}, timeout=30).json()
        assert answer["status"] == "error" and "Cannot write the config file" in answer["message"]
        assert daq.client.get_config() == before
        assert daq.config_file.read_text() == text
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".config-")] == []
        assert daq.client.get_deployment_status()["status"] == "SUCCESS"  # the old config runs again
    finally:
        daq.stop()
