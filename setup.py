"""cffi_modules and the dependencies, which have no static pyproject.toml spelling here; the rest is in pyproject.toml.

The client is its own distribution (``client/``, name ``std-daq-client``). Built from this source tree, the
server depends on exactly that folder (an absolute ``file:`` URL, computed here because a relative one is not
valid in package metadata), so ``pip install .`` installs the matching client first. Built without the folder
beside it (e.g. from an sdist that lacks it), the dependency is the released ``std-daq-client`` of the same
version. The environment variable STD_DAQ_CLIENT_REQUIREMENT replaces the requirement (``make install`` sets it
to ``std-daq-client`` after installing the client editable, so that the editable client is kept).
"""

import os
from pathlib import Path

from setuptools import setup

VERSION = "0.1.0"
CLIENT = Path(__file__).resolve().parent / "client"
client = f"std-daq-client @ {CLIENT.as_uri()}" if (CLIENT / "pyproject.toml").exists() else f"std-daq-client=={VERSION}"
client = os.environ.get("STD_DAQ_CLIENT_REQUIREMENT") or client

setup(
    cffi_modules=[
        "csrc/native_modules.py:detectors",
        "csrc/native_modules.py:receiver",
        "csrc/native_modules.py:sim",
        "csrc/native_modules.py:pipeline",
    ],
    install_requires=[
        client,
        "cffi>=1.16",
        "numpy>=1.24",
        "h5py>=3.8",
        "hdf5plugin>=4.1",
        "flask>=3.0",
        "waitress>=3.0",
        "pydantic>=2.5",
        "redis>=5",
        "pillow>=10",
        "pyzmq>=25",
        "cbor2>=5.4",
    ],
)
