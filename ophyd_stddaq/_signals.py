"""Signals backed by the DAQ: config fields (settable through ``set_config``) and read-only status fields."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from ophyd import Signal
from ophyd.status import Status
from ophyd.utils import ReadOnlyError

from ._access import DaqAccess

CONFIG_CACHE_S = 0.2
"""Reads of several config signals within this time share one ``get_config`` call."""

STATUS_CACHE_S = 0.05
"""Reads of several status signals within this time share one ``get_status`` call."""


def _access_of(signal: Signal) -> DaqAccess:
    """The DaqAccess of the StdDaq device this signal belongs to (searched up the parents)."""
    obj = signal.parent
    while obj is not None:
        access = getattr(obj, "_daq_access", None)
        if access is not None:
            return access
        obj = obj.parent
    raise RuntimeError(f"{signal.name} is not part of a StdDaq device")


class _DaqSignal(Signal):
    """Common part: a declared data type (values are not inferred) and a value fetched on ``get``."""

    def __init__(self, *, data_type: str, name: str, parent: Any = None, kind: str = "config", **kwargs: Any):
        self.data_type = data_type
        super().__init__(name=name, parent=parent, kind=kind, value=None, **kwargs)

    def _fetch(self) -> Any:
        raise NotImplementedError

    @property
    def _source(self) -> str:
        raise NotImplementedError

    def _update(self, value: Any, timestamp: float | None = None) -> None:
        """Store ``value`` as the readback and run the value subscriptions if it changed."""
        old = self._readback
        self._readback = value
        self._metadata["timestamp"] = time.time() if timestamp is None else timestamp
        if old != value:
            self._run_subs(sub_type=self.SUB_VALUE, old_value=old, value=value, timestamp=self.timestamp)

    def get(self, **kwargs: Any) -> Any:
        """The current value, read from the DAQ."""
        self._update(self._fetch())
        return self._readback

    def describe(self) -> dict[str, dict[str, Any]]:
        return {self.name: {"source": self._source, "dtype": self.data_type, "shape": []}}


class DaqConfigSignal(_DaqSignal):
    """One field of the DAQ config.

    ``get()`` reads it from the DAQ; ``put(value)`` / ``set(value)`` sends ``set_config({field: value})``
    (the server validates: an invalid value raises ``StdDaqAdminException`` with its message, and the
    config is unchanged). ``module_positions`` is a dict; it is read into documents as JSON text.

    Parameters
    ----------
    field:
        Name of the config field, e.g. ``"bit_depth"``.
    data_type:
        Event-model dtype of the value: ``"integer"`` or ``"string"``.
    """

    def __init__(self, *, field: str, data_type: str, name: str, parent: Any = None, **kwargs: Any):
        self.field = field
        super().__init__(data_type=data_type, name=name, parent=parent, **kwargs)

    @property
    def _source(self) -> str:
        return f"{_access_of(self).url_base}/daq/config:{self.field}"

    def _fetch(self) -> Any:
        return _access_of(self).config(max_age=CONFIG_CACHE_S)[self.field]

    def read(self) -> dict[str, dict[str, Any]]:
        value = self.get()
        if isinstance(value, dict | list):
            value = json.dumps(value, sort_keys=True)
        return {self.name: {"value": value, "timestamp": self.timestamp}}

    def put(self, value: Any, **kwargs: Any) -> None:
        """Apply ``value`` to the DAQ config (``set_config``); raises if the server refuses it."""
        if self.field == "module_positions" and isinstance(value, str):
            value = json.loads(value)
        applied = _access_of(self).set_config({self.field: value})
        self._update(applied[self.field])

    def set(self, value: Any, **kwargs: Any) -> Status:
        """Like :meth:`put`, returning a finished Status (for ``bps.mv``)."""
        self.put(value)
        status = Status(self)
        status.set_finished()
        return status


class DaqStatusSignal(_DaqSignal):
    """One field of the DAQ status object (read-only), e.g. ``("acquisition", "state")``.

    ``get()`` reads the DAQ status; while a Status of the device is waiting, the device's status
    monitor also pushes every status it sees, so subscriptions fire without polling of your own.
    Values are ``None`` where the DAQ reports null (before the first acquisition).

    Parameters
    ----------
    path:
        Keys leading to the field inside the status object.
    data_type:
        Event-model dtype of the value: ``"integer"``, ``"number"`` or ``"string"``.
    """

    def __init__(self, *, path: tuple[str, ...], data_type: str, name: str, parent: Any = None, **kwargs: Any):
        self.path = tuple(path)
        kwargs.setdefault("kind", "omitted")
        super().__init__(data_type=data_type, name=name, parent=parent, **kwargs)
        self._metadata.update(write_access=False)

    @property
    def _source(self) -> str:
        return f"{_access_of(self).url_base}/writer/status:{'/'.join(self.path)}"

    def value_in(self, status: dict[str, Any]) -> Any:
        """This signal's field in a DAQ status object."""
        value: Any = status
        for key in self.path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def _fetch(self) -> Any:
        return self.value_in(_access_of(self).status(max_age=STATUS_CACHE_S))

    def refresh(self, status: dict[str, Any]) -> None:
        """Take the value from a status seen by the device (runs subscriptions on change)."""
        self._update(self.value_in(status))

    def put(self, value: Any, **kwargs: Any) -> None:
        raise ReadOnlyError(f"{self.name} is read-only: it reports the DAQ status")

    def set(self, value: Any, **kwargs: Any) -> Status:
        raise ReadOnlyError(f"{self.name} is read-only: it reports the DAQ status")


class ImageStatisticSignal(Signal):
    """A statistic of the event's image as the DAQ computed it (``acquisition.stats.last_image``): NaN
    until the device puts the value of the event's image, and when the DAQ does not report it.

    Parameters
    ----------
    field:
        ``"sum"`` or ``"max"``: the field of ``last_image``.
    """

    def __init__(self, *, field: str, name: str, parent: Any = None, kind: str = "hinted", **kwargs: Any):
        self.field = field
        super().__init__(name=name, parent=parent, kind=kind, value=math.nan, **kwargs)

    def describe(self) -> dict[str, dict[str, Any]]:
        source = f"{_access_of(self).url_base}/writer/status:acquisition/stats/last_image/{self.field}"
        return {self.name: {"source": source, "dtype": "number", "shape": [], "precision": 0}}


_NUMPY_DTYPES = {1: "|u1", 2: "<u2", 4: "<u4"}


def image_dtype(bit_depth: int) -> str:
    """The numpy dtype string of the images the DAQ writes at ``bit_depth`` (4 and 8 bit -> 1 byte)."""
    n_bytes = max(1, (int(bit_depth) + 7) // 8)
    for size in sorted(_NUMPY_DTYPES):
        if n_bytes <= size:
            return _NUMPY_DTYPES[size]
    raise ValueError(f"no image dtype for bit_depth {bit_depth}")


class ImageReferenceSignal(Signal):
    """The image of an event: a reference into the DAQ's HDF5 file.

    With ``stream = True`` (the default of :class:`~ophyd_stddaq.StdDaq`) ``describe()`` marks it
    ``external: "STREAM:"`` and the event carries no value: a StreamDatum document points at the image. With
    ``stream = False`` its value is a Datum id (``FILESTORE:``). The shape is one image's, ``[height,
    width]``, the rank of the file's image stack per event (tiled then cuts a stack that already holds more
    images than announced, ``docs/tiled.rst``); shape and dtype come from the current DAQ config.
    """

    def __init__(self, *, name: str, parent: Any = None, kind: str = "normal", **kwargs: Any):
        super().__init__(name=name, parent=parent, kind=kind, value="", **kwargs)
        self.stream = False

    def read(self) -> dict[str, dict[str, Any]]:
        return {} if self.stream else super().read()

    def describe(self) -> dict[str, dict[str, Any]]:
        return self.describe_as(self.stream)

    def describe_as(self, stream: bool) -> dict[str, dict[str, Any]]:
        """The data key as StreamResource (``stream``) or Resource/Datum reference."""
        access = _access_of(self)
        config = access.config(max_age=CONFIG_CACHE_S)
        shape = [int(config["image_pixel_height"]), int(config["image_pixel_width"])]
        return {
            self.name: {
                "source": f"{access.url_base} HDF5 /entry/data/data",
                "dtype": "array",
                "shape": shape,
                "dtype_numpy": image_dtype(config["bit_depth"]),
                "external": "STREAM:" if stream else "FILESTORE:",
            }
        }
