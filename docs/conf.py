"""Sphinx configuration of the std-daq documentation."""

import sys
from importlib import metadata
from pathlib import Path

# The project is installed (editable) in the venv; the path is a fallback for a plain checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:  # ophyd-async defines pydantic models at import; once autodoc has inspected ours, that import fails
    import ophyd_async.core  # noqa: F401
except ImportError:  # docs without the ophyd extra: the ophyd pages then warn
    pass

project = "std-daq"
author = "std-daq developers"
copyright = "std-daq developers"
try:
    release = metadata.version("std-daq")
except metadata.PackageNotFoundError:
    release = "0.1.0"
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
nitpicky = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "alabaster"
html_theme_options = {
    "description": "Standard detector DAQ: UDP receiver, HDF5 writer, REST server, client, simulator",
    "fixed_sidebar": True,
}
