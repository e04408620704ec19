"""Compression speed and ratio of one thread, next to this machine's memory copy rate.

    python benchmarks/compression.py [--images N]

Prints one table. Each row compresses the same simulated Eiger images (4 half-modules, 16 bit,
512 x 1024) with:
  * ours         ``daq_server.pipeline.compression.compress``: our bitshuffle (AVX2 where present) and, on
                 blocks of small values, our LZ4 run encoder (csrc/pipeline/lz4_runs.c), else liblz4
  * hdf5plugin   the bitshuffle library's own filter (``hdf5plugin.Bitshuffle(cname="lz4")``) writing
                 the images into an in-memory HDF5 file, as any h5py user would
GB/s are uncompressed bytes per second of this thread's CPU time (1 core); the limit beside them
is a plain memory copy of the same images (numpy), in the same run. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import time

import h5py
import hdf5plugin
import numpy as np

from daq_server.pipeline.compression import compress
from sim import configs, module_pixels

CASES = [("photons, flux 0.02", "photons", 0.02), ("photons, flux 0.2", "photons", 0.2),
         ("photons, flux 1", "photons", 1.0), ("jungfrau-raw", "jungfrau-raw", 0.2),
         ("ramp", "ramp", 0.2)]  # fmt: skip


def images(content: str, flux: float, n: int) -> list[np.ndarray]:
    """n images of 4 half-modules stacked (the acceptance check's Eiger layout; 16 distinct frames)."""
    config = configs.eiger_config(16, 40000)
    height = 256
    out = []
    for frame in range(n):
        image = np.empty((4 * height, 512), np.uint16)
        for m in range(4):
            image[m * height : (m + 1) * height] = module_pixels(frame, m, config, content, seed=1, flux=flux)
        out.append(image)
    return out


def best_rate(run, nbytes: int, repeats: int = 3) -> float:
    """GB/s of thread CPU time, the best of a few runs (a busy or virtual machine only slows a run)."""
    best = 0.0
    for _ in range(repeats):
        start = time.thread_time()
        run()
        best = max(best, nbytes / max(time.thread_time() - start, 1e-9) / 1e9)
    return best


def memory_copy_rate(data: list[np.ndarray]) -> float:
    target = np.empty_like(data[0])
    return best_rate(lambda: [np.copyto(target, image) for image in data], sum(i.nbytes for i in data))


def ours(data: list[np.ndarray]) -> tuple[float, float]:
    sizes = []
    rate = best_rate(lambda: sizes.extend(len(compress(image)) for image in data), sum(i.nbytes for i in data))
    return rate, sum(i.nbytes for i in data) / (sum(sizes) / 3)


def reference(data: list[np.ndarray]) -> tuple[float, float]:
    result = {}

    def write() -> None:
        with h5py.File("bench.h5", "w", driver="core", backing_store=False) as f:
            d = f.create_dataset("d", (len(data), *data[0].shape), np.uint16, chunks=(1, *data[0].shape),
                                 **hdf5plugin.Bitshuffle(cname="lz4"))  # fmt: skip
            for k, image in enumerate(data):
                d[k] = image
            result["stored"] = d.id.get_storage_size()

    rate = best_rate(write, sum(i.nbytes for i in data))
    return rate, sum(i.nbytes for i in data) / result["stored"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="images per case (16 distinct frames repeat)")
    args = parser.parse_args()
    print(f"{'content':<20} {'ours GB/s':>10} {'ratio':>6} {'hdf5plugin GB/s':>16} {'ratio':>6} {'memcpy GB/s':>12}")
    for label, content, flux in CASES:
        data = images(content, flux, args.images)
        copy = memory_copy_rate(data)
        our_rate, our_ratio = ours(data)
        ref_rate, ref_ratio = reference(data)
        print(f"{label:<20} {our_rate:>10.2f} {our_ratio:>6.1f} {ref_rate:>16.2f} {ref_ratio:>6.1f} {copy:>12.1f}")


if __name__ == "__main__":
    main()
