"""Standard DAQ server: REST API, writer driver, HDF5 writer, on top of the C receiver."""

__version__ = "0.1.0"
