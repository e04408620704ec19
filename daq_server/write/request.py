"""The write request, validated once and then passed whole: from the REST endpoint through the writer
driver to the writer process, which creates its file.

Rules of the original server plus ours: the file must be new (nothing already written is
ever overwritten) and lie inside the server's data root, reached without following a
symbolic link (see ``daq_server.write.output_file``); numbers are bounded.

:class:`WriteRequest` is what the user asked; :class:`WriteTarget` is one file a writer process writes for
it: the request itself, plus what the server adds (the detector config, the image geometry, the
compression, and which share of the images when several processes write one acquisition).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, create_model, field_validator

from daq_server.config import DaqConfig
from daq_server.pipeline.jungfrau_conversion import ConversionSpec
from daq_server.pipeline.pedestal import MAX_FRAMES as MAX_PEDESTAL_FRAMES
from daq_server.stream.stream2_feed import StreamSpec
from daq_server.write.nxmx import REQUEST_FIELDS as NEXUS_FIELDS
from daq_server.write.output_file import (
    MAX_PATH_BYTES,
    OutputPath,
    OutputPathError,
    check_creatable,
    make_folders,
    split_output_path,
)

MAX_N_IMAGES = 2**31 - 1
MAX_RUN_ID = 2**63 - 1
MAX_CREATE_FOLDERS = 32


class RequestError(ValueError):
    """A write request that cannot be accepted; the message says why."""


def _nexus_field(kind: type, unit: str) -> tuple:
    if kind is str:
        return Annotated[str, Field(max_length=1000)] | None, None
    return Annotated[float, Field(allow_inf_nan=False, description=unit)] | None, None


NexusValues = create_model(
    "NexusValues",
    __config__=ConfigDict(extra="forbid", frozen=True),
    __doc__="Optional NXmx values of a write request (``daq_server.write.nxmx.REQUEST_FIELDS``), None where not given.",
    **{name: _nexus_field(kind, unit) for name, (kind, unit) in NEXUS_FIELDS.items()},
)


RunKey = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
RunValue = Annotated[str, Field(max_length=1000)] | int | Annotated[float, Field(allow_inf_nan=False)] | bool


class RunIdentity(BaseModel):
    """The run an acquisition belongs to, as the bluesky start document says (the devices send it): written
    into the file (``/entry/entry_identifier_uuid``, ``entry_identifier``, ``title``, ``/entry/run``), the
    status and the acquisition log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    """The run's start-document uid."""
    scan_id: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None
    plan_name: Annotated[str, Field(max_length=256)] | None = None
    metadata: Annotated[dict[RunKey, RunValue], Field(max_length=32)] = {}
    """Further start-document keys (strings, numbers, booleans) that the device's mapping names."""

    def as_json(self) -> dict:
        return self.model_dump(exclude_none=True, exclude_defaults=False)


@dataclass(frozen=True)
class WriteRequest:
    """A validated write request."""

    output: OutputPath
    """The new file: inside the data root, reached without following a symbolic link."""
    n_images: int
    run_id: int
    nexus: NexusValues = NexusValues()
    """Optional NXmx values given with the request."""
    gated: bool = False
    """Write only the images software triggers ask for (``POST /writer/trigger``), not every image."""
    image_statistics: bool = False
    """Compute, store and report each image's sum and maximum (``daq_server.write.image_statistics``)."""
    run: RunIdentity | None = None
    """The bluesky run the acquisition belongs to, when a device sent it."""
    pedestal: bool = False
    """A pedestal acquisition: the n_images dark frames become the pedestal file ``output_file``
    (gain-switching detectors; ``daq_server.write.pedestal_writer``)."""
    raw: bool = False
    """Write the raw gain-switching words although the config asks for a conversion."""

    @property
    def output_file(self) -> str:
        return self.output.path

    def info(self) -> dict:
        """The ``info`` object of the status and the log."""
        info = {"n_images": self.n_images, "output_file": self.output_file, "run_id": self.run_id}
        if self.run is not None:
            info["run"] = self.run.as_json()
        if self.pedestal:
            info["pedestal"] = True
        if self.raw:
            info["raw"] = True
        return info


@dataclass(frozen=True)
class Share:
    """Images ``index``, ``index + count``, ``index + 2 count`` … of an acquisition that ``count`` writer
    processes write together, each into a part file of its own (``output``, named by the file layout)."""

    index: int
    count: int
    output: OutputPath


@dataclass(frozen=True)
class WriteTarget:
    """One file a writer process writes: the request whole, and what the server adds to it."""

    request: WriteRequest
    config: DaqConfig
    shape: tuple[int, int]
    dtype: str
    compression: str = "none"
    share: Share | None = None
    """None: this file holds every image of the acquisition."""
    conversion: ConversionSpec | None = None
    """Raw gain-switching images are converted (to ``dtype``: photons or keV) before they are written."""
    stream: StreamSpec | None = None
    """Each image written also goes out on the Stream2 image stream (``daq_server.stream``)."""

    @property
    def output(self) -> OutputPath:
        """Where this file goes: the requested file, or its part."""
        return self.request.output if self.share is None else self.share.output

    @property
    def n_images(self) -> int:
        """Images this file is to hold."""
        if self.share is None:
            return self.request.n_images
        return len(range(self.share.index, self.request.n_images, self.share.count))

    @property
    def user_id(self) -> int:
        return self.config.writer_user_id

    @property
    def image_bytes(self) -> int:
        return self.shape[0] * self.shape[1] * np.dtype(self.dtype).itemsize

    @property
    def raw_image_bytes(self) -> int:
        """Bytes of one image as the receiver delivers it (before a conversion)."""
        return self.shape[0] * self.shape[1] * 2 if self.conversion is not None else self.image_bytes


class _WriteRequestCore(BaseModel):
    """The fields of the original API, plus ``gated`` and ``image_statistics``."""

    model_config = ConfigDict(extra="forbid")

    output_file: Annotated[str, Field(min_length=1, max_length=MAX_PATH_BYTES)]
    """Absolute path of the new file, inside the server's data root, with an extension."""
    n_images: Annotated[int, Field(ge=1, le=MAX_N_IMAGES)]
    """Images to write; the acquisition ends when they are written."""
    run_id: Annotated[int, Field(ge=-MAX_RUN_ID - 1, le=MAX_RUN_ID)] | None = None
    """Stored in the file (default: the time of the request in ns)."""
    gated: StrictBool = False
    """Write only the images that ``POST /writer/trigger`` asks for (honest step scans)."""
    run: RunIdentity | None = None
    """The bluesky run: ``{"uid", "scan_id", "plan_name", "metadata": {key: value}}`` (all optional)."""
    create_folders: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_CREATE_FOLDERS,
            description="Create this many folders at the end of output_file's folder path if they do not exist "
            "(as writer_user_id, inside the data root only; ophyd-async's create_dir_depth). Default 0: the "
            "folder must exist.",
        ),
    ] = 0
    image_statistics: Annotated[
        StrictBool,
        Field(
            description="Compute each image's sum and maximum (lost-packet pixels left out): stored as "
            "/entry/data/image_sum and image_max, the last one reported in acquisition.stats.last_image. "
            "Costs one pass over each image."
        ),
    ] = False

    pedestal: Annotated[
        StrictBool,
        Field(
            description="A pedestal acquisition (gain-switching detectors, jungfrau): the n_images dark frames of the "
            "detector's pedestal mode give every pixel's mean and RMS per gain stage, written as the pedestal file "
            "output_file; it becomes the pedestal later acquisitions convert with."
        ),
    ] = False
    raw: Annotated[
        StrictBool,
        Field(description="Write the raw gain-switching words although the config asks for a conversion."),
    ] = False

    @field_validator("n_images", "run_id", "create_folders", mode="before")
    @classmethod
    def _no_bool(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError(f"must be an integer, not {value!r}")
        return value


WriteRequestBody = create_model(
    "WriteRequestBody",
    __base__=_WriteRequestCore,
    __doc__="The JSON body of ``write_async`` / ``write_sync`` (also the OpenAPI description).",
    **{name: _nexus_field(kind, unit) for name, (kind, unit) in NEXUS_FIELDS.items()},
)


def _describe(error: ValidationError) -> str:
    """The first problem, in the words of the original server."""
    item = error.errors()[0]
    field = ".".join(str(p) for p in item["loc"]) or "request"
    value = item.get("input")
    if item["type"] == "extra_forbidden":
        unknown = sorted(str(e["loc"][0]) for e in error.errors() if e["type"] == "extra_forbidden")
        return f"Unknown field(s) in the write request: {', '.join(unknown)[:200]}"
    if item["type"] == "missing" or (field == "output_file" and value in (None, "")):
        return f"{field} is mandatory"
    if field == "n_images" and item["type"] == "greater_than_equal":
        return f"n_images must be at least 1, not {value}"
    if item["type"] == "greater_than_equal":
        return f"{field} must be at least {item['ctx']['ge']}, not {value}"
    if item["type"] == "less_than_equal":
        return f"{field} must be at most {item['ctx']['le']}, not {value}"
    if item["type"].startswith("int_") or item["type"] == "value_error":
        return f"{field} must be an integer, not {str(value)[:40]!r}"
    if item["type"] == "string_too_long":
        return f"output_file is longer than {MAX_PATH_BYTES} characters"
    return f"{field}: {item['msg']}"


def parse_write_request(body: object, data_root: Path, writer_user_id: int) -> WriteRequest:
    """Check a request body; RequestError with the first problem found."""
    if not isinstance(body, dict):
        raise RequestError("The write request must be a JSON object with output_file and n_images")
    try:
        parsed = WriteRequestBody.model_validate(body)
    except ValidationError as error:
        raise RequestError(_describe(error)) from None
    run_id = parsed.run_id if parsed.run_id is not None else time.time_ns()
    output_file = parsed.output_file
    try:
        output = split_output_path(output_file, data_root)
    except OutputPathError as error:
        raise RequestError(str(error)) from None
    if not PurePath(output.name).suffix or output_file.endswith("/"):
        raise RequestError(f"output_file must name a file with an extension (e.g. .h5), not '{output_file}'")
    if parsed.pedestal and (parsed.gated or parsed.raw or parsed.image_statistics):
        raise RequestError(
            "A pedestal acquisition takes every dark frame: it cannot be gated, raw or give image statistics"
        )
    if parsed.pedestal and parsed.n_images > MAX_PEDESTAL_FRAMES:
        raise RequestError(f"A pedestal takes at most {MAX_PEDESTAL_FRAMES} frames, not {parsed.n_images}")
    try:
        if parsed.create_folders:  # last: a request refused for anything else creates no folder
            make_folders(output, parsed.create_folders, writer_user_id)
        check_creatable(output, writer_user_id)
    except OutputPathError as error:
        raise RequestError(str(error)) from None
    return WriteRequest(
        output=output,
        n_images=parsed.n_images,
        run_id=run_id,
        nexus=NexusValues(**{name: getattr(parsed, name) for name in NEXUS_FIELDS}),
        gated=parsed.gated,
        image_statistics=parsed.image_statistics,
        run=parsed.run,
        pedestal=parsed.pedestal,
        raw=parsed.raw,
    )


class StopRequestBody(BaseModel):
    """The JSON body of ``POST /writer/stop`` (optional; an empty body stops as always)."""

    model_config = ConfigDict(extra="forbid")

    n_images: (
        Annotated[
            int,
            Field(
                ge=1,
                le=MAX_N_IMAGES,
                strict=True,
                description="The plan that ran the acquisition ended after this many images: once the file holds "
                "exactly them the acquisition is 'Completed.' with n_images = N, else 'Interrupted.'.",
            ),
        ]
        | None
    ) = None


def stop_request_images(body: object) -> int | None:
    """The ``n_images`` of a ``POST /writer/stop`` body (None: a plain stop); RequestError for a bad body."""
    if body is None:
        return None
    if not isinstance(body, dict):
        raise RequestError('The stop request is empty or a JSON object {"n_images": N}')
    try:
        return StopRequestBody.model_validate(body).n_images
    except ValidationError as error:
        item = error.errors()[0]
        if item["type"] == "extra_forbidden":
            raise RequestError(f"Unknown field(s) in the stop request: {str(item['loc'][0])[:200]}") from None
        value = str(item.get("input"))[:40]
        raise RequestError(f"n_images of a stop must be an integer within 1 … {MAX_N_IMAGES}, not {value}") from None
