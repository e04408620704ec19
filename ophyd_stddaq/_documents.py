"""Resource and Datum documents that point the run's events at the images in the DAQ's HDF5 file."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any
from uuid import uuid4

SPEC = "STD_DAQ_HDF5"
"""The ``spec`` of our Resource documents: register :class:`StdDaqHDF5Handler` for it."""

IMAGE_DATASET = "/entry/data/data"
"""The images in a DAQ file: shape (n_images, image_pixel_height, image_pixel_width)."""


class ImageAssets:
    """The Resource document of one output file and a Datum document per image referenced.

    Documents wait in a queue until the RunEngine asks for them (``collect_asset_docs``), which it
    does after the run has started, so it can fill in ``run_start``. The Resource is queued first.

    The Resource has ``root`` = the file's folder and ``resource_path`` = its name, so a reader on another
    machine maps the folder with the ``root_map`` of event-model's ``Filler`` (or databroker).
    """

    def __init__(self, output_file: str, dataset: str = IMAGE_DATASET) -> None:
        path = PurePosixPath(output_file)
        self.resource: dict[str, Any] = {
            "uid": str(uuid4()),
            "spec": SPEC,
            "root": str(path.parent),
            "resource_path": path.name,
            "resource_kwargs": {"dataset": dataset},
            "path_semantics": "posix",
        }
        self._pending: deque[tuple[str, dict[str, Any]]] = deque([("resource", self.resource)])

    def datum(self, index: int) -> str:
        """Queue the Datum document of image ``index`` (0-based in the dataset); return its ``datum_id``."""
        datum_id = f"{self.resource['uid']}/{index}"
        self._pending.append(
            ("datum", {"resource": self.resource["uid"], "datum_id": datum_id, "datum_kwargs": {"index": index}})
        )
        return datum_id

    def pop_pending(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield, and forget, the documents queued so far (the Resource first, once)."""
        while self._pending:
            yield self._pending.popleft()
