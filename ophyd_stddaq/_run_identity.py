"""The run an acquisition belongs to: the bluesky start document, sent with the write request.

Both devices follow the start documents of the RunEngine that stages them (:class:`RunFollower`) and send
the run's identity with each write request (:func:`run_request_fields`): ``run`` = ``{"uid", "scan_id",
"plan_name", "metadata"}`` and ``sample_name``. The DAQ writes them into the file (NXentry
``entry_identifier`` = scan_id, ``entry_identifier_uuid`` = uid, ``title`` = plan name, ``/entry/run``,
NXsample ``name``), its status and its acquisition log.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import re
import weakref
from collections.abc import Mapping
from typing import Any

_log = logging.getLogger("ophyd_stddaq")

RUN_METADATA: Mapping[str, str] = {
    "sample": "sample",
    "proposal": "proposal",
    "proposal_id": "proposal_id",
    "experiment": "experiment",
    "beamline_id": "beamline_id",
    "operator": "operator",
    "project": "project",
}
"""The start-document keys sent as the run's metadata by default: start-document key -> name in the file
(``/entry/run/<name>``). A device's ``run_metadata`` replaces it. Values that are strings, numbers or booleans
are sent; a ``sample`` given as a dictionary sends its ``name``; other values are left out."""

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
MAX_METADATA = 32
"""Metadata entries the DAQ accepts per request."""


def _scalar(value: Any) -> str | int | float | bool | None:
    """A value the DAQ accepts (string of at most 1000 characters, integer, finite number, boolean), else None."""
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        value = value["name"]
    if isinstance(value, bool | str):
        return value if not isinstance(value, str) or len(value) <= 1000 else None
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def sample_name(start: Mapping[str, Any]) -> str | None:
    """The sample of a start document: ``sample`` as a string, or the ``name`` of a ``sample`` dictionary."""
    value = start.get("sample")
    if isinstance(value, Mapping):
        value = value.get("name")
    return value if isinstance(value, str) and value.strip() else None


def run_request_fields(start: Mapping[str, Any] | None, mapping: Mapping[str, str] = RUN_METADATA) -> dict[str, Any]:
    """The write-request fields of a run: ``{"run": {...}, "sample_name": ...}`` ({} without a run).

    ``mapping``: start-document key -> metadata name (see :data:`RUN_METADATA`).
    """
    if not start:
        return {}
    run: dict[str, Any] = {}
    if isinstance(start.get("uid"), str):
        run["uid"] = start["uid"][:128]
    scan_id = start.get("scan_id")
    if isinstance(scan_id, int) and not isinstance(scan_id, bool) and -(2**63) <= scan_id < 2**63:
        run["scan_id"] = scan_id
    if isinstance(start.get("plan_name"), str):
        run["plan_name"] = start["plan_name"][:256]
    metadata = {}
    for key, name in mapping.items():
        value = _scalar(start.get(key))
        if value is not None and _KEY.match(name) and len(metadata) < MAX_METADATA:
            metadata[name] = value
    if metadata:
        run["metadata"] = metadata
    fields: dict[str, Any] = {"run": run} if run else {}
    sample = sample_name(start)
    if sample is not None:
        fields["sample_name"] = sample[:1000]
    return fields


def run_file_stem(start: Mapping[str, Any] | None) -> str | None:
    """``<scan_id>_<first 8 characters of the uid>`` of a start document (None without a run)."""
    if not start or not isinstance(start.get("uid"), str):
        return None
    scan_id = start.get("scan_id")
    uid8 = re.sub(r"[^A-Za-z0-9]", "", start["uid"])[:8]
    return f"{scan_id}_{uid8}" if isinstance(scan_id, int) and not isinstance(scan_id, bool) else uid8


def running_engine() -> Any | None:
    """The bluesky RunEngine running a plan on this thread's event loop (None outside a plan).

    A device's ``stage`` (ophyd) and its coroutines (ophyd-async) run on the RunEngine's event loop; the
    engine is the one whose ``loop`` that is and whose ``state`` is ``"running"``.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    try:
        from bluesky import RunEngine
    except ImportError:  # pragma: no cover - bluesky is a dependency of ophyd-async and of our plans
        return None
    for obj in gc.get_objects():
        if isinstance(obj, RunEngine) and getattr(obj, "loop", None) is loop and obj.state == "running":
            return obj
    return None


class RunFollower:
    """Follows the start and stop documents of RunEngines: :attr:`start` is the open run's start document.

    Subscribe it to a RunEngine yourself (``RE.subscribe(det.runs)``), or let the device do it when a
    RunEngine first stages it (:meth:`follow_running_engine`).
    """

    def __init__(self) -> None:
        self.start: dict[str, Any] | None = None
        self._engines: weakref.WeakSet = weakref.WeakSet()
        self._loops: weakref.WeakSet = weakref.WeakSet()

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self.start = doc
        elif name == "stop" and self.start is not None and doc.get("run_start") == self.start.get("uid"):
            self.start = None

    def follow(self, run_engine: Any) -> None:
        """Subscribe to ``run_engine``'s documents (once per engine)."""
        if run_engine in self._engines:
            return
        run_engine.subscribe(self)
        self._engines.add(run_engine)
        self._loops.add(run_engine.loop)

    def follow_running_engine(self) -> None:
        """Subscribe to the RunEngine that runs the current plan, if any and not yet followed."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if loop in self._loops:
            return
        engine = running_engine()
        if engine is not None:
            _log.debug("following the runs of %r", engine)
            self.follow(engine)
