"""Validation of a write request (``output_file``, ``n_images``, ``run_id``).

Rules of the original server plus ours: the file must be new (nothing already written is
ever overwritten) and lie inside the server's data root.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from daq_server.file_owner import FileOwnerError, can_create_in
from daq_server.nexus_layout import REQUEST_FIELDS as NEXUS_FIELDS


class RequestError(ValueError):
    """A write request that cannot be accepted; the message says why."""


@dataclass(frozen=True)
class WriteRequest:
    output_file: str
    n_images: int
    run_id: int
    nexus: dict = field(default_factory=dict)
    """Optional NXmx values given with the request (keys of ``daq_server.nexus_layout.REQUEST_FIELDS``)."""
    gated: bool = False
    """Write only the images software triggers ask for (``POST /writer/trigger``), not every image."""

    def info(self) -> dict:
        return {"n_images": self.n_images, "output_file": self.output_file, "run_id": self.run_id}


def _as_int(value, name: str) -> int:
    if isinstance(value, bool):
        raise RequestError(f"{name} must be an integer, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise RequestError(f"{name} must be an integer, not {value!r}")


def parse_write_request(body: object, data_root: Path, writer_user_id: int) -> WriteRequest:
    """Check a request body; RequestError with the first problem found."""
    if not isinstance(body, dict):
        raise RequestError("The write request must be a JSON object with output_file and n_images")
    unknown = set(body) - {"output_file", "n_images", "run_id", "gated"} - set(NEXUS_FIELDS)
    if unknown:
        raise RequestError(f"Unknown field(s) in the write request: {', '.join(sorted(unknown))}")
    if "output_file" not in body or body["output_file"] in (None, ""):
        raise RequestError("output_file is mandatory")
    if "n_images" not in body:
        raise RequestError("n_images is mandatory")
    n_images = _as_int(body["n_images"], "n_images")
    if n_images < 1:
        raise RequestError(f"n_images must be at least 1, not {n_images}")
    run_id = _as_int(body["run_id"], "run_id") if body.get("run_id") is not None else time.time_ns()

    output_file = body["output_file"]
    if not isinstance(output_file, str) or "\0" in output_file:
        raise RequestError("output_file must be a path string")
    if not output_file.startswith("/"):
        raise RequestError(f"output_file must be an absolute path, not '{output_file}'")
    path = Path(output_file)
    if not path.suffix or output_file.endswith("/"):
        raise RequestError(f"output_file must name a file with an extension (e.g. .h5), not '{output_file}'")
    root = data_root.resolve()
    folder = path.parent.resolve()
    if folder != root and root not in folder.parents:
        raise RequestError(f"output_file must lie inside the data root {root}, not '{output_file}'")
    if not folder.is_dir():
        raise RequestError(f"The folder {folder} does not exist; create it first")
    target = folder / path.name
    if target.exists() or target.is_symlink():
        raise RequestError(f"output_file {target} exists already; choose a new file name")
    try:
        allowed = can_create_in(folder, writer_user_id)
    except FileOwnerError as error:
        raise RequestError(str(error)) from None
    if not allowed:
        who = f"User id {writer_user_id}" if writer_user_id > 0 else "The server"
        raise RequestError(f"{who} may not create files in {folder}")
    gated = body.get("gated", False)
    if not isinstance(gated, bool):
        raise RequestError(f"gated must be true or false, not {gated!r}")
    nexus = _nexus_fields(body)
    return WriteRequest(output_file=str(target), n_images=n_images, run_id=run_id, nexus=nexus, gated=gated)


def _nexus_fields(body: dict) -> dict:
    """The optional NXmx fields of the request, type-checked (None means not given)."""
    found = {}
    for name, (kind, unit) in NEXUS_FIELDS.items():
        value = body.get(name)
        if value is None:
            continue
        if kind is str:
            if not isinstance(value, str) or len(value) > 1000:
                raise RequestError(f"{name} must be a text of at most 1000 characters, not {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise RequestError(f"{name} must be a number ({unit}), not {value!r}")
        found[name] = kind(value)
    return found
