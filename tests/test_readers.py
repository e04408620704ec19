"""Readers never break the writer: a live viewer that opens the file with ``swmr=True`` the moment its name
appears succeeds at the first try, holds it open through the end of the acquisition, and the acquisition still
ends "Completed." with every image and its end time in the file."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
from conftest import wait_for

READER = r"""
import json, os, sys, time
import h5py
path, ended = sys.argv[1], sys.argv[2]
while not os.path.exists(path):
    time.sleep(0.002)
tries, first_error = 0, ""
while True:
    tries += 1
    try:
        f = h5py.File(path, "r", swmr=True)
        break
    except OSError as error:
        first_error = first_error or str(error)[:200]
        time.sleep(0.01)
seen = 0
while not os.path.exists(ended):
    images = f["entry/data/data"]
    images.refresh()
    seen = max(seen, images.shape[0])
    time.sleep(0.02)
time.sleep(1.0)  # still open while the writer closes
images = f["entry/data/data"]
images.refresh()
seen = max(seen, images.shape[0])
f.close()
print(json.dumps({"tries": tries, "seen": seen, "first_error": first_error}))
"""


def test_a_reader_from_the_first_moment_to_after_the_end_breaks_nothing(daq, tmp_path):
    script = tmp_path / "reader.py"
    script.write_text(READER)
    for k in range(3):
        output, ended = daq.data_root / f"live{k}.h5", tmp_path / f"ended{k}"
        reader = subprocess.Popen([sys.executable, str(script), str(output), str(ended)], stdout=subprocess.PIPE,
                                  text=True)  # fmt: skip
        daq.client.start_writer_async({"output_file": str(output), "n_images": 60})
        detector = daq.simulator(n_images=60, first_frame=1 + 100 * k)
        detector.start()
        try:
            wait_for(lambda: daq.client.get_status()["state"] == "READY", timeout=60)
        finally:
            detector.stop()
        ended.touch()
        said = json.loads(reader.communicate(timeout=60)[0])
        acquisition = daq.client.get_status()["acquisition"]
        assert (acquisition["state"], acquisition["message"]) == ("FINISHED", "Completed."), acquisition["message"]
        assert acquisition["stats"]["n_write_completed"] == 60
        assert said == {"tries": 1, "seen": 60, "first_error": ""}, said
        with h5py.File(output, "r") as f:
            assert f["entry/data/data"].shape[0] == 60 and f["entry/end_time"][()]
    assert not [p.name for p in daq.data_root.iterdir() if p.name.startswith(".")], "no temporary file left"
