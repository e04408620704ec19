"""bitshuffle+LZ4 by the native pool: chunks the real HDF5 filter (hdf5plugin) reads bit-exact,
files written through the real chain equal to the uncompressed images, and the thread option."""

import os
import subprocess
import sys
import threading
import time

import h5py
import hdf5plugin
import numpy as np
import pytest
from conftest import RunningDaq, child_pids, free_udp_ports
from expected import expected_image

from daq_server.pipeline.compression import compress
from daq_server.pipeline.image_pipeline import ImagePipeline
from sim import configs as example_configs

CASES = [
    (np.uint8, (3, 5)),
    (np.uint16, (512, 1024)),
    (np.uint16, (514, 1030)),
    (np.uint16, (1, 4103)),
    (np.uint32, (7, 1)),
    (np.uint32, (100, 333)),
    (np.uint64, (1, 8)),
]


def random_image(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    bits = 8 * np.dtype(dtype).itemsize
    return (rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype) >> (seed % bits)).astype(dtype)


def write_chunks(path, images, chunks):
    with h5py.File(path, "w") as f:
        for k, (image, chunk) in enumerate(zip(images, chunks, strict=True)):
            d = f.create_dataset(
                f"d{k}", shape=(1, *image.shape), chunks=(1, *image.shape), dtype=image.dtype,
                **hdf5plugin.Bitshuffle(cname="lz4"),
            )  # fmt: skip
            d.id.write_direct_chunk((0,) * (image.ndim + 1), chunk)


def test_chunks_decompress_bit_exact_with_the_hdf5_filter(tmp_path):
    images = [random_image(dtype, shape, seed) for seed, (dtype, shape) in enumerate(CASES)]
    write_chunks(tmp_path / "c.h5", images, [compress(image) for image in images])
    with h5py.File(tmp_path / "c.h5", "r") as f:
        for k, image in enumerate(images):
            assert np.array_equal(f[f"d{k}"][0], image), f"{image.dtype} {image.shape}"


def small_value_images() -> list[np.ndarray]:
    """Images whose bit planes are mostly zero bytes (the run encoder's blocks): photon-like counts,
    all zeros, a single hit, runs of every length at every offset, blocks of small values next to
    blocks with high bytes (each encoder on its blocks of one image), and photon counts with a few
    no-data pixels (every bit set: still the run encoder's blocks)."""
    rng = np.random.default_rng(7)
    photons = rng.poisson(0.2, (512, 1024)).astype(np.uint16)
    photons[100:104, 200:204] = 255  # a spot, still small
    hit = np.zeros((256, 1030), np.uint16)
    hit[17, 3] = 1
    runs = np.zeros(64 * 4096, np.uint16)
    at = 0
    for length in range(1, 600):  # non-zero values spaced by zero runs of every length
        at += length
        runs[at % runs.size] = length % 200 + 1
    mixed = rng.poisson(0.5, (64, 1024)).astype(np.uint16)
    mixed[:8] += 3000  # the first blocks have high bytes
    small32 = rng.poisson(3.0, (100, 333)).astype(np.uint32)
    flagged = rng.poisson(0.2, (512, 1024)).astype(np.uint16)  # converted Jungfrau: a few no-data pixels
    flagged.flat[rng.choice(flagged.size, 90, replace=False)] = 0xFFFF
    return [photons, np.zeros((512, 1024), np.uint16), hit, runs.reshape(64, 4096), mixed, small32, flagged]


def test_small_value_chunks_decompress_bit_exact_with_the_hdf5_filter(tmp_path):
    images = small_value_images()
    chunks = [compress(image) for image in images]
    write_chunks(tmp_path / "c.h5", images, chunks)
    with h5py.File(tmp_path / "c.h5", "r") as f:
        for k, image in enumerate(images):
            assert np.array_equal(f[f"d{k}"][0], image), f"image {k}: {image.dtype} {image.shape}"
    assert len(chunks[1]) < images[1].nbytes / 100, "zero planes shrink to almost nothing"
    assert len(chunks[0]) < images[0].nbytes / 4, "photon-like counts compress"
    assert len(chunks[6]) < images[6].nbytes / 4, "and so do they with a few no-data pixels"


def test_pool_returns_chunks_in_submission_order_equal_to_single_compression(tmp_path):
    images = [random_image(np.uint16, (256, 1024), seed) for seed in range(12)]
    pool = ImagePipeline(3, images[0].nbytes, 2, in_flight=4)
    chunks, tags = [], []
    try:
        for k, image in enumerate(images):
            pool.submit(image, 100 + k)
            while pool.pending >= pool.in_flight:
                chunk = pool.next(timeout=5)
                chunks.append(bytes(chunk.data))
                tags.append(chunk.tag)
                pool.done(chunk)
        while (chunk := pool.next(timeout=5)) is not None:
            chunks.append(bytes(chunk.data))
            tags.append(chunk.tag)
            pool.done(chunk)
        counters = pool.counters()
    finally:
        pool.close()
    assert tags == list(range(100, 112))
    assert chunks == [compress(image) for image in images]
    assert counters["images"] == 12 and counters["bytes_in"] == 12 * images[0].nbytes
    assert counters["bytes_out"] == sum(len(c) for c in chunks)
    assert pool.final_counters == counters, "kept when the pool closes"


def test_pool_refuses_bad_thread_counts_and_large_images():
    with pytest.raises(ValueError, match="compression threads"):
        ImagePipeline(0, 1024, 2)
    pool = ImagePipeline(1, 1024, 2)
    try:
        with pytest.raises(ValueError, match="does not fit"):
            pool.submit(np.zeros(1024, np.uint16), 0)
    finally:
        pool.close()


def compression_threads(pid: int) -> int:
    """The compressing threads of the server ``pid`` and of its writer processes."""
    names = []
    for process in (pid, *child_pids(pid)):
        tasks = f"/proc/{process}/task"
        try:
            for task in os.listdir(tasks):
                names.append(open(f"{tasks}/{task}/comm").read().strip())
        except OSError:
            pass  # the thread or process ended meanwhile
    return names.count("daq-compress")


@pytest.mark.parametrize("threads", [1, 3, None])
def test_compressed_acquisition_equals_the_uncompressed_images(tmp_path, threads):
    """``threads`` None: the default, one per CPU when the receive threads are real-time, else one less."""
    config = example_configs.eiger_config(16, free_udp_ports(4))
    option = [] if threads is None else ["--compression-threads", str(threads)]
    daq = RunningDaq(tmp_path, config, extra_args=["--compression", "bitshuffle-lz4", *option])
    daq.start()
    if threads is None:
        cpus = len(os.sched_getaffinity(0))
        threads = cpus if daq.client.get_deployment_status()["receiver"]["realtime"] else max(1, cpus - 1)
    seen = set()
    acquired = threading.Event()

    def watch() -> None:  # the pool's threads start one by one: keep the most seen during the acquisition
        while not acquired.is_set():
            seen.add(compression_threads(daq.proc.pid))
            time.sleep(0.02)

    try:
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            status, output = daq.acquire("compressed.h5", 40, rate_hz=200, content="photons", seed=2, first_frame=901)
        finally:
            acquired.set()
            watcher.join()
    finally:
        daq.stop()
    assert max(seen, default=0) == threads, "the pool runs --compression-threads native threads"
    assert status["acquisition"]["message"] == "Completed."
    with h5py.File(output, "r") as f:
        data = f["entry/data/data"]
        assert "32008" in data._filters
        assert data.id.get_storage_size() < data.size * 2 / 3, "photon images compress well"
        frames = f["entry/data/image_id"][:]
        assert np.array_equal(np.diff(frames), np.ones(39))
        for i, frame in enumerate(frames):
            assert np.array_equal(data[i], expected_image(config, int(frame), content="photons", seed=2))


def test_server_refuses_a_bad_thread_count(tmp_path):
    config = tmp_path / "c.json"
    config.write_text("{}")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "daq_server.serve.cli",
            "--config",
            str(config),
            "--data-root",
            str(tmp_path),
            "--compression-threads",
            "500",
        ],  # fmt: skip
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0 and "--compression-threads must be 1 to 64" in run.stderr


def test_reading_without_the_plugin_fails(tmp_path):
    """What a reader without hdf5plugin sees (documented in docs/compression.rst)."""
    image = random_image(np.uint16, (64, 64), 3)
    write_chunks(tmp_path / "c.h5", [image], [compress(image)])
    code = "import h5py; h5py.File(r'%s', 'r')['d0'][0]" % (tmp_path / "c.h5")
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode != 0 and "Can't synchronously read data" in run.stderr
    code = "import hdf5plugin, h5py; print(h5py.File(r'%s', 'r')['d0'][0].sum())" % (tmp_path / "c.h5")
    assert int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout) == image.sum()


def test_reader_helper_reads_compressed_files_and_explains_a_missing_plugin(tmp_path):
    image = random_image(np.uint16, (64, 64), 5)
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("entry/data/data", shape=(1, 64, 64), chunks=(1, 64, 64), dtype=np.uint16,
                             **hdf5plugin.Bitshuffle(cname="lz4"))  # fmt: skip
        d.id.write_direct_chunk((0, 0, 0), compress(image))
    from daq_server.write.reading import open_images

    with open_images(path) as f:
        assert np.array_equal(f["entry/data/data"][0], image)
    # a Python without hdf5plugin: the helper says what to install
    code = (
        "import sys; sys.modules['hdf5plugin'] = None\n"
        "from daq_server.write.reading import open_images\n"
        f"open_images(r'{path}')"
    )
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode != 0 and "pip install hdf5plugin" in run.stderr
