"""The acquisition log is bounded (rotated, one older file kept) and reading the last n records costs n."""

from __future__ import annotations

import json

from daq_server.acquire.acquisition_log import AcquisitionLog


def record(i: int) -> dict:
    return {"info": {"output_file": f"/data/run{i}.h5", "n_images": 10, "run_id": i}, "state": "FINISHED"}


def test_the_log_is_rotated_and_reads_back_newest_first_across_both_files(tmp_path):
    log = AcquisitionLog(tmp_path / "acquisitions.jsonl", max_bytes=20_000)
    for i in range(2000):
        log.append(record(i))
    current, older = log.path.stat().st_size, log.older.stat().st_size
    assert current <= 20_000 and older <= 20_000, "at most twice the bound on disk"
    assert [r["info"]["run_id"] for r in log.last(5)] == [1999, 1998, 1997, 1996, 1995]
    everything = log.last(10_000)
    kept = len(log.path.read_text().splitlines()) + len(log.older.read_text().splitlines())
    assert len(everything) == kept and kept >= 20_000 // len(json.dumps(record(1999)) + "\n")
    assert [r["info"]["run_id"] for r in everything] == list(range(1999, 1999 - kept, -1)), "newest first, no gap"


def bytes_read() -> int:
    """Bytes this process has read with read() so far (the kernel's count, /proc/self/io ``rchar``)."""
    for line in open("/proc/self/io").read().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_reading_the_last_records_reads_only_the_end_of_a_big_log(tmp_path):
    log = AcquisitionLog(tmp_path / "acquisitions.jsonl")
    line = json.dumps(record(0)) + "\n"
    with open(log.path, "w") as f:  # 100,000 records written before
        f.write(line * 100_000)
    log.append(record(7))
    size = log.path.stat().st_size
    before = bytes_read()
    newest = log.last(3)
    read = bytes_read() - before
    assert [r["info"]["run_id"] for r in newest] == [7, 0, 0]
    assert size > 8 << 20 and read < 256 << 10, f"read {read} bytes of a {size}-byte log for 3 records"


def test_a_damaged_line_is_skipped(tmp_path):
    log = AcquisitionLog(tmp_path / "acquisitions.jsonl")
    log.append(record(1))
    with open(log.path, "a") as f:
        f.write('{"half a record\n')
    log.append(record(2))
    assert [r["info"]["run_id"] for r in log.last(5)] == [2, 1]
