"""Reading the images back: a handler for event-model's ``Filler`` (and databroker v1/v2)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle/LZ4 filter of compressed DAQ files)
import numpy as np

from ._documents import IMAGE_DATASET, SPEC


class StdDaqHDF5Handler:
    """Returns image ``index`` of a DAQ file for each Datum; registered under :data:`SPEC`.

    The ``Filler`` creates one handler per Resource, as ``StdDaqHDF5Handler(root/resource_path,
    **resource_kwargs)``, and calls it with each Datum's ``datum_kwargs`` (``index``).

    Example::

        from event_model import Filler
        from ophyd_stddaq import SPEC, StdDaqHDF5Handler

        with Filler({SPEC: StdDaqHDF5Handler}, inplace=False) as filler:
            for name, doc in documents:
                name, doc = filler(name, doc)   # events now hold numpy images

    Parameters
    ----------
    filename:
        Path of the HDF5 file as seen by the reader.
    dataset:
        The image dataset, ``/entry/data/data``.
    """

    specs = frozenset({SPEC})

    def __init__(self, filename: str, dataset: str = IMAGE_DATASET) -> None:
        self.filename = filename
        self._file = h5py.File(filename, "r")
        self._dataset = self._file[dataset]

    def __call__(self, index: int) -> np.ndarray:
        """Image ``index`` (0-based) as a 2-d array."""
        if not 0 <= index < self._dataset.shape[0]:
            raise IndexError(f"{self.filename} holds {self._dataset.shape[0]} images, there is no image {index}")
        return self._dataset[index]

    def get_file_list(self, datum_kwargs_gen: Iterable[dict[str, Any]]) -> list[str]:
        """The files the data lives in (for databroker's file management): just this one."""
        return [self.filename]

    def close(self) -> None:
        """Close the HDF5 file."""
        self._file.close()
