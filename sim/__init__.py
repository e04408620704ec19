"""Simulated detectors for CI, demos and benchmarks: Jungfrau, Eiger and GigaFrost UDP packet
streams, and a bsread ZeroMQ image source."""

from sim.detector import SimulatedDetector, module_geometry, module_pixels

__all__ = ["SimulatedDetector", "module_geometry", "module_pixels"]
