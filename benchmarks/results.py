"""Cost of the per-image results stage of one thread, next to a memory copy of the same images.

    python benchmarks/results.py [--images N]

Prints one table. Each row runs the native results stage (``daq_server.pipeline.image_results``,
csrc/pipeline/image_results.c) alone on simulated photon images (``photons`` content, flux 0.2, with rings and
spots) of a 1-module and a 4-module Jungfrau and of an Eiger module (4 half-modules, 16 bit): the radial
profile alone (200 bins in q), four 200 x 200 ROI sums alone, the spot count alone (threshold 5, at least 2
pixels), and all three, as the pipeline runs them. Rates are per second of this thread's CPU time (1 core):
ns per pixel and images per second per core; the limit beside them is a plain memory copy of the same
images (numpy), in the same run. Nothing here is a test.
"""

from __future__ import annotations

import argparse

import numpy as np
from compression import best_rate  # benchmarks/compression.py: the same CPU-time rate
from compression import images as eiger_images
from jungfrau_conversion import stack

from daq_server.pipeline.image_results import ImageResults, RadialGeometry, rectangle
from sim import configs

PIXEL_M = 75e-6


def stages(shape: tuple[int, int]) -> dict[str, dict]:
    """The rows' stage settings for images of ``shape``."""
    geometry = RadialGeometry(shape[1] / 2, shape[0] / 2, PIXEL_M, PIXEL_M, 0.08, 1.0)
    rois = {f"roi{k}": rectangle(shape, 200 * k, 100, 200 * k + 200, 300) for k in range(4)}
    radial = (geometry, "q", 200)
    spots = (5.0, 2)
    return {"radial profile": {"radial": radial}, "4 ROI sums": {"rois": rois}, "spot count": {"spots": spots},
            "all three": {"radial": radial, "rois": rois, "spots": spots}}  # fmt: skip


def rows(label: str, data: list[np.ndarray]) -> None:
    shape, nbytes = data[0].shape, sum(image.nbytes for image in data)
    pixels = data[0].size * len(data)
    target = np.empty_like(data[0])
    copy = best_rate(lambda: [np.copyto(target, image) for image in data], nbytes)  # GB/s
    copy_ns = nbytes / (copy * 1e9) / pixels * 1e9
    print(f"{label:<26} {'memcpy':<16} {copy_ns:>9.2f} {copy * 1e9 / data[0].nbytes:>12.0f}")
    excluded = np.zeros(shape, bool)
    for name, settings in stages(shape).items():
        stage = ImageResults(shape, data[0].dtype, excluded, **settings)
        rate = best_rate(lambda stage=stage: [stage.compute(image) for image in data], nbytes)
        ns = nbytes / (rate * 1e9) / pixels * 1e9
        print(f"{'':<26} {name:<16} {ns:>9.2f} {rate * 1e9 / data[0].nbytes:>12.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="images per row (default 16)")
    args = parser.parse_args()
    print(f"{'images':<26} {'stage':<16} {'ns/pixel':>9} {'images/s/core':>12}")
    for n_modules in (1, 4):
        config = configs.jungfrau_config(n_modules, 40000)
        data = stack(config, range(1, args.images + 1), "photons", 0.2)
        rows(f"Jungfrau {n_modules} module(s) {data[0].shape[1]}x{data[0].shape[0]}", data)
    data = eiger_images("photons", 0.2, args.images)
    rows(f"Eiger 16 bit {data[0].shape[1]}x{data[0].shape[0]}", data)


if __name__ == "__main__":
    main()
