"""Reading files the server wrote: ``open_images`` registers the compression filter first and
turns HDF5's vague "missing plugin" error into advice on what to install."""

from __future__ import annotations

from pathlib import Path

import h5py

MISSING_FILTER_ADVICE = (
    "the images are compressed with bitshuffle+LZ4 (HDF5 filter 32008): install hdf5plugin "
    "(pip install hdf5plugin) and import it before reading, or point HDF5_PLUGIN_PATH at the bitshuffle plugin"
)


def _register_filters() -> bool:
    try:
        import hdf5plugin  # noqa: F401 - importing registers the filters with HDF5
    except ImportError:
        return False
    return True


def open_images(path: str | Path) -> h5py.File:
    """Open a file written by the server for reading, compressed or not.

    Raises OSError with :data:`MISSING_FILTER_ADVICE` when the images cannot be decompressed."""
    have_filters = _register_filters()
    f = h5py.File(path, "r")
    images = f.get("entry/data/data")
    if images is not None and images.shape[0] > 0 and images.id.get_storage_size() > 0:
        try:
            images[0, :1, :1]
        except OSError as error:
            f.close()
            if have_filters and "plugin" not in str(error):
                raise
            raise OSError(f"cannot read the images of {path}: {MISSING_FILTER_ADVICE}") from error
    return f
