"""Gain maps in their HDF5 form, written from PSI's binary per-module files (docs/jungfrau.rst).

    python -m daq_server.write.gain_map_file --output maps.h5 gainMaps_M001.bin gainMaps_M002.bin

The HDF5 form is the layout of PSI's ``jungfrau_utils``: dataset ``gains`` of shape (3, n_modules x rows,
columns), the G0, G1 and G2 maps of the modules stacked in module order, in ADU/keV; the source files
and their sha256 are attributes. The binary files are read and checked like the server reads them
(``detectors.gain_maps``). ``std_daq_sim --write-gain-maps maps.h5`` writes its maps this way.
The file is created new (never overwritten), through the file layout's ``create_new`` like every file
the project writes.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from daq_server.write.file_layout import LayoutError, new_file
from daq_server.write.output_file import OutputPathError, split_output_path
from detectors.gain_maps import HDF5_DATASET, check_gains, file_sha256, read_psi_binary


def write_hdf5_gain_maps(path: str, gains: np.ndarray, attributes: dict) -> None:
    """Write ``gains`` (n_modules, 3, rows, cols) as the HDF5 form at the new file ``path``."""
    path = os.path.abspath(path)
    n, stages, rows, cols = gains.shape
    with new_file(split_output_path(path, os.path.dirname(path)), 0) as created, created.open_hdf5() as f:
        dataset = f.create_dataset(HDF5_DATASET, data=gains.transpose(1, 0, 2, 3).reshape(stages, n * rows, cols))
        dataset.attrs.update({
            "units": "ADU/keV",
            "stages": "G0 G1 G2",
            "layout": "(stage, n_modules x module rows, module columns), modules stacked in module order",
            "n_modules": n,
            **attributes,
        })  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m daq_server.write.gain_map_file", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--output", required=True, help="the new HDF5 file")
    parser.add_argument("--rows", type=int, default=512, help="module rows (Jungfrau: 512)")
    parser.add_argument("--cols", type=int, default=1024, help="module columns (Jungfrau: 1024)")
    parser.add_argument("--source", default="", help="text for the 'source' attribute")
    parser.add_argument("files", nargs="+", help="PSI binary gain maps, one per module, in module order")
    args = parser.parse_args(argv)
    try:
        gains = np.stack([read_psi_binary(name, args.rows, args.cols) for name in args.files])
        check_gains(gains, args.files)
        attributes = {
            "source": args.source or "PSI binary gain maps",
            "original_files": " ".join(os.path.basename(f) for f in args.files),
            "original_sha256": " ".join(file_sha256(f) for f in args.files),
        }
        write_hdf5_gain_maps(args.output, gains, attributes)
    except (ValueError, OSError, OutputPathError, LayoutError) as error:
        sys.exit(f"gain maps: {error}")


if __name__ == "__main__":
    main()
