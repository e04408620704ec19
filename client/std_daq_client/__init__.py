"""Python client for the standard DAQ (std-daq) REST API.

Depends only on ``requests`` (and ``tqdm`` for the progress bar of ``std_cli_write_sync``). See
:class:`StdDaqClient`.
"""

from ._client import StdDaqClient
from ._exceptions import ServerUnreachable, StdDaqAdminException
from .acquisitions import AcquisitionState, AcquisitionView, Message, WriterState, follow_acquisition

__version__ = "0.1.0"

__all__ = [
    "StdDaqClient",
    "StdDaqAdminException",
    "ServerUnreachable",
    "AcquisitionState",
    "AcquisitionView",
    "Message",
    "WriterState",
    "follow_acquisition",
]
