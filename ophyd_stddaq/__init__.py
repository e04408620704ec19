"""ophyd/bluesky integration of the std-daq: drive the DAQ from plans and from IPython.

``StdDaqDetector`` is an ophyd-async ``StandardDetector`` (the DAQ as data writer, a trigger/arm
controller, a path provider); ``StdDaq`` below is the ophyd (v1) device.

``StdDaq`` is an ophyd ``Device`` built from small parts: client access (``std_daq_client`` only),
a path provider (a new file name per acquisition), Status objects that follow the DAQ status and
report progress, and Resource/Datum documents that point at the images in the HDF5 file, which
``StdDaqHDF5Handler`` reads back.
"""

from ._access import OPEN_ENDED_IMAGES, DaqAccess
from ._configuration import DETECTOR_FIELDS, EXPOSURE_FIELDS
from ._device import StdDaq
from ._documents import IMAGE_DATASET, MIMETYPE, SPEC, ImageAssets, StreamImageAssets
from ._errors import StdDaqAcquisitionError
from ._handler import StdDaqHDF5Handler
from ._path_provider import PathProvider, UniqueFilePathProvider
from ._pedestal import CONVERSION_FIELDS, ConversionSignal, conversion_values, pedestal_plan
from ._run_identity import RUN_METADATA, RunFollower, run_file_stem, run_request_fields
from ._signals import DaqConfigSignal, DaqStatusSignal, ImageReferenceSignal, ImageStatisticSignal
from ._status import AcquisitionStatus, StatusMonitor

try:  # the ophyd-async detector needs ophyd-async (in the ``ophyd`` extra)
    from ._async_detector import DaqConnector, StdDaqDetector
    from ._async_logic import (
        AcquisitionPlan,
        FreeRunningAcquireLogic,
        ImageStreamProvider,
        SimulatorTriggerAcquireLogic,
        StdDaqDataLogic,
        StdDaqTriggerLogic,
        folders_to_create,
    )
    from ._slsdet import SlsDetAcquireLogic
except ImportError:  # pragma: no cover - ophyd v1 only
    pass

__all__ = [
    "StdDaq",
    "pedestal_plan",
    "CONVERSION_FIELDS",
    "ConversionSignal",
    "conversion_values",
    "StdDaqDetector",
    "DaqConnector",
    "OPEN_ENDED_IMAGES",
    "AcquisitionPlan",
    "FreeRunningAcquireLogic",
    "SimulatorTriggerAcquireLogic",
    "StdDaqDataLogic",
    "StdDaqTriggerLogic",
    "SlsDetAcquireLogic",
    "ImageStreamProvider",
    "folders_to_create",
    "RUN_METADATA",
    "RunFollower",
    "run_file_stem",
    "run_request_fields",
    "DETECTOR_FIELDS",
    "EXPOSURE_FIELDS",
    "StdDaqAcquisitionError",
    "StdDaqHDF5Handler",
    "SPEC",
    "IMAGE_DATASET",
    "PathProvider",
    "UniqueFilePathProvider",
    "ImageAssets",
    "StreamImageAssets",
    "MIMETYPE",
    "DaqAccess",
    "AcquisitionStatus",
    "StatusMonitor",
    "DaqConfigSignal",
    "DaqStatusSignal",
    "ImageReferenceSignal",
    "ImageStatisticSignal",
]
