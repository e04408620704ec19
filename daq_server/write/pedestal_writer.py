"""A pedestal acquisition (write request ``"pedestal": true``): dark frames into a pedestal file.

Same interface as ``daq_server.write.image_writer.ImageWriter`` (``put``, ``drain``, ``close``,
``n_written``), so the writer process and the driver treat both alike. Each frame is added to the
native accumulator (``daq_server.pipeline.pedestal``) straight from the ring buffer; frames that lost
packets are skipped. The file (``daq_server.write.pedestal_file``) is created when the acquisition
starts (so a bad path is refused at once) and filled when it closes.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from daq_server.config import as_dict
from daq_server.pipeline.pedestal import PedestalAccumulator
from daq_server.receive.image_source import ReceivedImage
from daq_server.write import file_layout
from daq_server.write.file_layout import LayoutError
from daq_server.write.hdf5_writer import WriterError
from daq_server.write.nxmx import gap_mask
from daq_server.write.output_file import OutputPathError
from daq_server.write.pedestal_file import write_pedestal_file
from daq_server.write.pixel_mask import GAP_PIXEL
from daq_server.write.request import WriteTarget

_log = logging.getLogger("daq_server.write.pedestal_writer")


class PedestalWriter:
    """Accumulates ``target``'s dark frames and writes its pedestal file at close."""

    def __init__(self, target: WriteTarget, compression_threads: int = 0):
        """``compression_threads`` is not used (the interface of ImageWriter)."""
        if np.dtype(target.dtype) != np.uint16:
            raise ValueError(f"a pedestal is taken from raw uint16 images, not {np.dtype(target.dtype)}")
        self.target = target
        self.compression: dict[str, int] = {}
        self.last_image: dict | None = None
        self.n_written = 0
        self._start_time = time.time()
        try:  # created now (a bad path refuses the request), under a hidden name until it is filled
            self._created = file_layout.create_file(target)
        except LayoutError as error:
            raise WriterError(str(error)) from None
        try:
            self._accumulator = PedestalAccumulator(target.shape)
        except BaseException:
            self._abandon()
            raise

    def put(self, image: ReceivedImage) -> None:
        """Add one dark frame (a frame that lost packets is counted but not used)."""
        self._accumulator.add(image.data, complete=image.n_missing_packets == 0)
        self.n_written += 1

    def drain(self, wait: bool = False, keep: int = 0) -> None:
        """Nothing is in flight: every frame is added when it is put."""

    def idle(self) -> None:
        """Nothing to record while frames pause: the file is written at close."""

    def close(self, write_pending: bool = True, summary: dict | None = None) -> None:
        """Write the pedestal of the frames added (also after a failure: they were dark frames)."""
        if self._accumulator is None:
            return
        config = as_dict(self.target.config)
        gap = gap_mask(config, self.target.shape)
        pedestal = self._accumulator.result(sensor=gap == 0)
        skipped = self._accumulator.skipped
        self._accumulator.close()
        self._accumulator = None
        attributes = file_layout.entry_attributes(self.target.request, config) | {"n_images_written": self.n_written}
        attributes |= {
            str(k): v if isinstance(v, str | int | float | bool) else str(v) for k, v in (summary or {}).items()
        }
        name = self.target.output.path
        try:
            write_pedestal_file(self._created, pedestal, gap & GAP_PIXEL, attributes, self._start_time, skipped)
            self._created.publish()
        except (OSError, RuntimeError, OutputPathError) as error:
            raise WriterError(f"cannot write the pedestal file {name}: {error}") from None
        finally:
            self._created.close_folder()
            self._created.close()
        _log.info(
            "pedestal %s: frames per gain stage %s, %d skipped, %d pixels flagged",
            name, pedestal.frames, skipped, pedestal.n_flagged,
        )  # fmt: skip

    def _abandon(self) -> None:
        self._created.remove()
        self._created.close_folder()
        self._created.close()
