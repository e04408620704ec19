"""Simulated detectors: Jungfrau and Eiger UDP packet streams for CI, demos and benchmarks."""

from sim.detector import SimulatedDetector, module_geometry, module_pixels

__all__ = ["SimulatedDetector", "module_geometry", "module_pixels"]
