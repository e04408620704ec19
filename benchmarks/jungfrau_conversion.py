"""Jungfrau conversion and pedestal speed of one thread, next to this machine's memory copy rate.

    python benchmarks/jungfrau_conversion.py [--images N] [--modules M]

Prints one table. Each row converts the same simulated Jungfrau images (``jungfrau-raw`` of M modules,
default noise, at several photon fluxes) with the native conversion (``daq_server.pipeline.jungfrau_conversion``,
csrc/pipeline/jungfrau_conversion.c) to photon counts (uint16) and to keV (float32), with the
simulator's own gain maps and pedestals; and adds the same number of pedestal-mode frames to the
native pedestal accumulator (csrc/pipeline/jungfrau_pedestal.c). GB/s are raw (input) bytes per
second of this thread's CPU time (1 core); the limit beside them is a plain memory copy of the same
raw images (numpy), in the same run. The ratio columns are bitshuffle+LZ4 compression ratios of the
raw and of the photon images (``daq_server.pipeline.compression``). Nothing here is a test.
"""

from __future__ import annotations

import argparse

import numpy as np
from compression import best_rate  # benchmarks/compression.py: the same CPU-time rate

from daq_server.pipeline.compression import compress
from daq_server.pipeline.jungfrau_conversion import JungfrauConversion, image_gains
from daq_server.pipeline.pedestal import PedestalAccumulator
from detectors.gain_maps import GainMaps
from sim import configs, module_pixels
from sim.jungfrau import module_calibration

FLUXES = (0.02, 0.2, 2.0)
ENERGY_KEV = 12.4


def stack(config: dict, frames: range, content: str, flux: float = 0.2) -> list[np.ndarray]:
    """Images of the config's modules stacked (module m at rows 512 m; the simulator's 16 frames repeat)."""
    n = config["n_modules"]
    out = []
    for frame in frames:
        image = np.empty((512 * n, 1024), np.uint16)
        for m in range(n):
            image[512 * m : 512 * (m + 1)] = module_pixels(frame, m, config, content, seed=1, flux=flux)
        out.append(image)
    return out


def conversion_rows(config: dict, n_images: int, flux: float, photons, kev) -> None:
    """The photon and keV rows of one flux."""
    data = stack(config, range(1, n_images + 1), "jungfrau-raw", flux)
    nbytes = sum(image.nbytes for image in data)
    target = np.empty_like(data[0])
    copy = best_rate(lambda: [np.copyto(target, image) for image in data], nbytes)
    out16, out32 = np.empty(data[0].shape, np.uint16), np.empty(data[0].shape, np.float32)
    rate16 = best_rate(lambda: [photons.convert(image, out16) for image in data], nbytes)
    rate32 = best_rate(lambda: [kev.convert(image, out32) for image in data], nbytes)
    raw_ratio = nbytes / sum(len(compress(image)) for image in data)
    photon_ratio = nbytes / sum(len(compress(photons.convert(image)[0])) for image in data)
    print(f"{f'photons, flux {flux}':<28} {rate16:>7.2f} {copy:>12.1f} {raw_ratio:>10.1f} {photon_ratio:>13.1f}")
    print(f"{f'keV, flux {flux}':<28} {rate32:>7.2f} {copy:>12.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="images per row")
    parser.add_argument("--modules", type=int, default=1, help="Jungfrau modules per image (tables grow with them)")
    args = parser.parse_args()
    config = configs.jungfrau_config(args.modules, 40000)
    config["module_positions"] = {str(m): [0, 512 * m, 1023, 512 * m + 511] for m in range(args.modules)}
    calibration = [module_calibration(config, m, seed=1) for m in range(args.modules)]
    gains = image_gains(config, GainMaps(np.stack([c.gains for c in calibration]), (), ()))
    pedestal = np.concatenate([c.pedestals for c in calibration], axis=1).astype(np.float32)
    flagged = np.concatenate([c.states for c in calibration]) != 0
    photons = JungfrauConversion(gains, pedestal, flagged, "photons", ENERGY_KEV)
    kev = JungfrauConversion(gains, pedestal, flagged, "keV")
    print(f"{args.modules} module(s), {args.images} images per row, raw GB/s per core of CPU time")
    print(f"{'row':<28} {'GB/s':>7} {'memcpy GB/s':>12} {'raw ratio':>10} {'photon ratio':>13}")
    for flux in FLUXES:
        conversion_rows(config, args.images, flux, photons, kev)
    dark = stack(config, range(1, args.images + 1), "jungfrau-pedestal")
    nbytes = sum(image.nbytes for image in dark)
    accumulator = PedestalAccumulator(dark[0].shape)
    rate = best_rate(lambda: [accumulator.add(image) for image in dark], nbytes)
    target = np.empty_like(dark[0])
    copy = best_rate(lambda: [np.copyto(target, image) for image in dark], nbytes)
    print(f"{'pedestal accumulation':<28} {rate:>7.2f} {copy:>12.1f}")


if __name__ == "__main__":
    main()
