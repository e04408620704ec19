"""The pedestal file: a NeXus file holding every pixel's pedestal per gain stage (docs/jungfrau.rst).

Layout (image pixels, the same (height, width) as the acquisition's images)::

    /entry                                  NXentry  (run_id, detector_name, ... as attributes; start/end time)
    /entry/definition                       "pedestal"
    /entry/data                             NXdata, signal "pedestal" (a link)
    /entry/instrument/detector              NXdetector
        pedestal          float32 (3, height, width)  ADU, mean per gain stage 0, 1, 2 (NaN: never seen)
        pedestal_rms      float32 (3, height, width)  ADU
        pedestal_frames   uint32  (3, height, width)  frames in which the pixel reported that stage
        gain_stage_frames uint64  (3,)                frames of each stage (the stage most pixels reported)
        frames_skipped    uint64                      frames not used (lost packets, no valid stage)
        pixel_mask        uint32  (height, width)     NXmx bits: 0 gap, 1 dead, 4 noisy (see below)

The mask's limits are attributes of ``pixel_mask``. The file is created like every output file
(``daq_server.write.output_file``: inside the data root, no link followed, as ``writer_user_id``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from daq_server.pipeline.pedestal import DEAD_PIXEL, NOISY_PIXEL, Pedestal
from daq_server.write.nxmx import iso_time
from daq_server.write.output_file import CreatedFile
from daq_server.write.pixel_mask import GAP_PIXEL
from detectors.gain_maps import file_sha256

DEFINITION = "pedestal"
DETECTOR = "entry/instrument/detector"
MASK_DESCRIPTION = (
    f"NXmx pixel_mask bits: bit 0 (value {GAP_PIXEL}) gap, no sensor; bit 1 (value {DEAD_PIXEL}) dead: pedestal out "
    f"of range, or the pixel did not report the frame's gain stage in most frames of a stage; bit 4 (value "
    f"{NOISY_PIXEL}) noisy: RMS above the limit in some stage"
)


@dataclass(frozen=True)
class PedestalFile:
    """A pedestal read back: what a conversion needs, and what to say about it."""

    path: str
    sha256: str
    mean: np.ndarray
    """(3, height, width) float32 ADU."""
    mask: np.ndarray
    """(height, width) uint32 NXmx bits (gap bits included)."""
    gain_stage_frames: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.mask.shape)

    @property
    def n_flagged(self) -> int:
        return int(np.count_nonzero(self.mask & ~np.uint32(GAP_PIXEL)))


def write_pedestal_file(
    created: CreatedFile, pedestal: Pedestal, gap: np.ndarray, entry_attributes: dict, start_time: float, skipped: int
) -> None:
    """Fill the created (empty) file with ``pedestal``; ``gap`` is the gap mask (NXmx bit 0)."""
    with created.open_hdf5() as f:
        f.attrs.update({"NX_class": "NXroot", "default": "entry"})
        entry = f.create_group("entry")
        entry.attrs.update({**entry_attributes, "NX_class": "NXentry", "default": "data", "start_time": start_time})
        entry.create_dataset("definition", data=DEFINITION, dtype=h5py.string_dtype())
        entry.create_dataset("start_time", data=iso_time(start_time), dtype=h5py.string_dtype())
        entry.create_dataset("end_time", data=iso_time(time.time()), dtype=h5py.string_dtype())
        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        detector = instrument.create_group("detector")
        detector.attrs["NX_class"] = "NXdetector"
        big = {"compression": "gzip", "compression_opts": 4, "chunks": (1, *gap.shape)}
        for name, values in (("pedestal", pedestal.mean), ("pedestal_rms", pedestal.rms)):
            dataset = detector.create_dataset(name, data=values, **big)
            dataset.attrs.update({"units": "ADU", "gain_stages": "0 1 2", "interpretation": "image"})
        detector.create_dataset("pedestal_frames", data=pedestal.count, **big)
        detector.create_dataset("gain_stage_frames", data=np.array(pedestal.frames, dtype=np.uint64))
        detector.create_dataset("frames_skipped", data=np.uint64(skipped))
        mask = detector.create_dataset("pixel_mask", data=pedestal.mask | gap.astype(np.uint32), compression="gzip")
        mask.attrs["description"] = MASK_DESCRIPTION
        mask.attrs["limits"] = json.dumps(asdict(pedestal.limits))
        data = entry.create_group("data")
        data.attrs.update({"NX_class": "NXdata", "signal": "pedestal"})
        data["pedestal"] = detector["pedestal"]


def read_pedestal_file(path: str | Path) -> PedestalFile:
    """The pedestal of a pedestal file; ValueError (naming the file) if it is not one."""
    try:
        sha256 = file_sha256(path)
        with h5py.File(path, "r") as f:
            detector = f.get(DETECTOR)
            definition = f.get("entry/definition")
            if detector is None or definition is None or definition.asstr()[()] != DEFINITION:
                raise ValueError(f"{path} is not a pedestal file (no /entry/definition '{DEFINITION}')")
            mean = detector["pedestal"][()].astype(np.float32)
            mask = detector["pixel_mask"][()].astype(np.uint32)
            frames = tuple(int(n) for n in detector["gain_stage_frames"][()])
    except (OSError, KeyError) as error:
        raise ValueError(f"cannot read the pedestal file {path}: {error}") from None
    if mean.ndim != 3 or mean.shape[0] != 3 or mean.shape[1:] != mask.shape:
        raise ValueError(f"{path}: pedestal {mean.shape} and pixel_mask {mask.shape} do not fit together")
    return PedestalFile(str(path), sha256, mean, mask, frames)  # type: ignore[arg-type]
