"""Only here because cffi_modules has no pyproject.toml spelling; all metadata is in pyproject.toml."""

from setuptools import setup

setup(
    cffi_modules=[
        "csrc/build_receiver.py:ffibuilder",
        "csrc/build_sim.py:ffibuilder",
        "csrc/build_compress.py:ffibuilder",
    ]
)
