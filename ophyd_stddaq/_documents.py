"""Documents that point the run's events at the images in the DAQ's HDF5 file: StreamResource/StreamDatum
(the default; what tiled and ophyd-async use) or the older Resource/Datum."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any
from uuid import uuid4

from event_model import ComposeStreamResource

SPEC = "STD_DAQ_HDF5"
"""The ``spec`` of our Resource documents: register :class:`StdDaqHDF5Handler` for it."""

IMAGE_DATASET = "/entry/data/data"
"""The images in a DAQ file: shape (n_images, image_pixel_height, image_pixel_width)."""

MIMETYPE = "application/x-hdf5"
"""The ``mimetype`` of our StreamResource documents (tiled reads it without any registration)."""


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


class StreamImageAssets:
    """The StreamResource document of one output file and a StreamDatum per image referenced.

    The StreamResource names the file as a ``file://localhost/...`` URI, with ``dataset`` and
    ``chunk_shape`` (one image per chunk) in ``parameters``; each StreamDatum covers one image
    (``indices`` ``{"start": i, "stop": i + 1}``). Documents wait in a queue for ``collect_asset_docs``.

    Parameters
    ----------
    output_file:
        Absolute path of the HDF5 file (as the reader sees it).
    data_key:
        The data key of the images in the event descriptor.
    shape:
        (height, width) of one image.
    """

    def __init__(self, output_file: str, data_key: str, shape: tuple[int, int], dataset: str = IMAGE_DATASET) -> None:
        self.bundle = ComposeStreamResource()(
            mimetype=MIMETYPE,
            uri="file://localhost" + str(PurePosixPath(output_file)),
            data_key=data_key,
            parameters={"dataset": dataset, "chunk_shape": (1, *shape)},
        )
        self.resource: dict[str, Any] = dict(self.bundle.stream_resource_doc)
        self._pending: deque[tuple[str, dict[str, Any]]] = deque([("stream_resource", self.resource)])

    def datum(self, index: int, stop: int | None = None) -> str:
        """Queue the StreamDatum of image ``index`` (0-based in the dataset), or of images ``index`` to
        ``stop`` (exclusive); return its uid."""
        doc = dict(self.bundle.compose_stream_datum({"start": index, "stop": index + 1 if stop is None else stop}))
        self._pending.append(("stream_datum", doc))
        return doc["uid"]

    def pop_pending(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield, and forget, the documents queued so far (the StreamResource first, once)."""
        while self._pending:
            yield self._pending.popleft()
