"""Example detector configs (the JSON both the server and the simulator read).

Used by the demo, the tests and the benchmarks, and a starting point for a real beamline
config: only ``start_udp_port`` and ``detector_name`` usually change.
"""

from __future__ import annotations


def _config(name: str, kind: str, bit_depth: int, height: int, width: int, positions: dict, port: int) -> dict:
    return {
        "detector_name": name,
        "detector_type": kind,
        "bit_depth": bit_depth,
        "image_pixel_height": height,
        "image_pixel_width": width,
        "n_modules": len(positions) or 8,
        "start_udp_port": port,
        "writer_user_id": 0,
        "module_positions": positions,
    }


def jungfrau_config(n_modules: int, start_udp_port: int, name: str = "JF") -> dict:
    """n Jungfrau modules stacked vertically, every odd module mirrored (written bottom-up)."""
    positions = {}
    for m in range(n_modules):
        top, bottom = 512 * m, 512 * m + 511
        positions[str(m)] = [0, top, 1023, bottom] if m % 2 == 0 else [0, bottom, 1023, top]
    return _config(name, "jungfrau", 16, 512 * n_modules, 1024, positions, start_udp_port)


def eiger_config(bit_depth: int, start_udp_port: int, name: str = "EG") -> dict:
    """One Eiger module: 4 half-module ports, 2-px chip gaps, the bottom half mirrored."""
    positions = {
        "0": [0, 0, 513, 255],
        "1": [516, 0, 1029, 255],
        "2": [0, 513, 513, 258],
        "3": [516, 513, 1029, 258],
    }
    return _config(name, "eiger", bit_depth, 514, 1030, positions, start_udp_port)


def gigafrost_config(width: int, height: int, start_udp_port: int, name: str = "GF") -> dict:
    """A GigaFrost: 8 streams placed by quadrant and link, so no module_positions."""
    return _config(name, "gigafrost", 16, height, width, {}, start_udp_port)
