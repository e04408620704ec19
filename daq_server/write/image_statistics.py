"""Per-image statistics of an acquisition that asks for them (write request ``"image_statistics": true``).

For every image written: the sum and the maximum of its pixels, the pixels of lost packets left out
(gap pixels are 0 and need no care). They go into ``/entry/data/image_sum`` (``uint64``) and
``/entry/data/image_max`` (the images' unsigned type), which grow with the images like
``n_missing_packets``, and the writer status reports them for the last image written. The cost is
one pass over each image (numpy on the ring buffer's view, no copy): about 0.5 ms for a megapixel
image of 16 bit; images with lost packets take a second pass.
"""

from __future__ import annotations

import h5py
import numpy as np


def sum_and_max(image: np.ndarray, missing: np.ndarray | None, missing_value: int | None) -> tuple[int, int]:
    """Sum and maximum of ``image``'s pixels; those where ``missing`` is true (lost packets) left out."""
    total = int(image.sum(dtype=np.uint64))
    top = int(image.max())
    if missing is not None and missing_value is not None:
        n_missing = int(np.count_nonzero(missing))
        if n_missing:
            total -= n_missing * missing_value
            if top == missing_value:
                top = int(image.max(initial=0, where=~missing))
    return total, top


class ImageStatistics:
    """The ``image_sum`` and ``image_max`` datasets of a file, and the values not yet written into them.

    Parameters
    ----------
    group:
        ``/entry/data`` of a new file, before SWMR mode (the datasets are created empty here).
    dtype:
        The images' dtype (``image_max`` has its unsigned type in native byte order).
    chunk:
        Entries per chunk, as the other per-image datasets.
    """

    def __init__(self, group: h5py.Group, dtype: np.dtype, chunk: int) -> None:
        grow = {"shape": (0,), "maxshape": (None,), "chunks": (chunk,)}
        self.image_sum = group.create_dataset("image_sum", dtype=np.uint64, **grow)
        self.image_sum.attrs["description"] = "sum of the image's pixels, those of lost packets left out"
        self.image_max = group.create_dataset("image_max", dtype=np.dtype(dtype).newbyteorder("="), **grow)
        self.image_max.attrs["description"] = "largest pixel value of the image, those of lost packets left out"
        self._pending: list[tuple[int, int]] = []

    def add(self, image: np.ndarray, missing: np.ndarray | None, missing_value: int | None) -> tuple[int, int]:
        """Compute (sum, max) of the next image; kept until :meth:`flush`."""
        values = sum_and_max(image, missing, missing_value)
        self._pending.append(values)
        return values

    def flush(self, start: int, end: int) -> None:
        """Write the pending values as entries ``start`` .. ``end`` - 1."""
        if not self._pending:
            return
        sums, maxima = zip(*self._pending, strict=True)
        for dataset, values in ((self.image_sum, sums), (self.image_max, maxima)):
            dataset.resize(end, axis=0)
            dataset[start:end] = np.array(values, dtype=dataset.dtype)
        self._pending.clear()

    @property
    def datasets(self) -> list[h5py.Dataset]:
        return [self.image_sum, self.image_max]
