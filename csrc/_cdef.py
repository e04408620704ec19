"""Turn our C headers into cffi ``cdef`` text, so each declaration is written once.

Only used by native_modules.py (cffi_modules in setup.py). The C sources sit in one
folder per binary (``receiver/``, ``sim/``, ``pipeline/``); ``detectors/detector_formats.h`` is the one
description of each detector type that all of them include.
"""

import re
from pathlib import Path

HERE = Path(__file__).parent
FORMATS = "detectors/detector_formats.h"


def header_cdef(name: str) -> str:
    """Declarations of a cffi-friendly header: preprocessor lines dropped, integer #defines kept."""
    lines = []
    for line in (HERE / name).read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if re.match(r"#define\s+\w+\s+\(?-?\d+\)?\s*$", stripped):
                lines.append(stripped)
            continue
        lines.append(line)
    return "\n".join(lines)


def formats_cdef() -> str:
    """The det_format table and its lookup from detector_formats.h (shared by both modules)."""
    text = (HERE / FORMATS).read_text()
    names = re.findall(r"#define\s+((?:DET_KIND|FORMAT|SLS|MAX|CHIP|GF|GAIN)_\w+|N_DET_KINDS)\s+\S+", text)
    defines = "\n".join(f"#define {name} ..." for name in names)  # values taken from the C header
    struct = re.search(r"typedef struct det_format \{.*?\} det_format;", text, re.S).group(0)
    signatures = (
        "int det_format_lookup(int kind, int bit_depth, int image_width, int image_height, det_format *out);\n"
        "const char *det_kind_name(int kind);\n"
        "int det_kind_by_name(const char *name);\n"
    )
    return f"{defines}\n{struct}\n{signatures}"


def compile_args() -> list[str]:
    return ["-O3", "-std=gnu11", "-Wall", "-Wno-unused-function"]


def make_builder(
    module: str,
    folder: str,
    header: str,
    sources: list[str],
    extra_headers: tuple[str, ...] = (),
    libraries: tuple[str, ...] = (),
    formats: bool = True,
):
    """A cffi builder for ``module`` exposing ``header`` and ``extra_headers`` of ``folder`` (plus the
    formats unless ``formats`` is false), compiled from ``sources`` there and linked with ``libraries``."""
    from cffi import FFI

    builder = FFI()
    headers = [f"{folder}/{name}" for name in (header, *extra_headers)]
    builder.cdef(
        (formats_cdef() if formats else "") + "".join(header_cdef(name) + "\n" for name in headers if name != FORMATS)
    )
    builder.set_source(
        module,
        "".join(f'#include "{Path(name).name}"\n' for name in headers),
        sources=[f"csrc/{folder}/{name}" for name in sources],  # relative to the project root, where the build runs
        include_dirs=[f"csrc/{folder}", "csrc/detectors"],
        extra_compile_args=compile_args(),
        libraries=["pthread", "m", *libraries],
    )
    return builder
