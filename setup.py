"""Build the Cython extensions of cnnpool.

Every ``.pyx`` file under ``cnnpool/`` becomes one extension module named
after its path, so adding a kernel module needs no edit here.

Environment switches
--------------------
CNNPOOL_DEBUG=1
    Sanitizer/debug build: Cython bounds and wraparound checks on,
    ``-O1 -g -fsanitize=address,undefined``.  See README ("Debug build").
CNNPOOL_NO_OPENMP=1
    Build without OpenMP even where the compiler supports it.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent.resolve()
DEBUG = os.environ.get("CNNPOOL_DEBUG", "") not in ("", "0")


def openmp_flags():
    """Return (compile, link) flags for OpenMP, or empty lists where unsupported.

    Tries to compile and link a tiny OpenMP program with the compiler Python
    was built with; any failure means a clean serial build.
    """
    if os.environ.get("CNNPOOL_NO_OPENMP", "") not in ("", "0"):
        return [], []
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return [], []
    source = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "check_openmp.c")
        src.write_text(source)
        cmd = [cc, "-fopenmp", str(src), "-o", str(Path(tmp, "check_openmp"))]
        try:
            ok = subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
    if not ok:
        print("cnnpool: compiler has no OpenMP; building serial kernels", file=sys.stderr)
        return [], []
    return ["-fopenmp"], ["-fopenmp"]


def extensions():
    omp_compile, omp_link = openmp_flags()
    if DEBUG:
        opt = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
        link = ["-fsanitize=address,undefined"]
    else:
        opt = ["-O3"]
        link = []
    exts = []
    for pyx in sorted(HERE.glob("cnnpool/**/*.pyx")):
        rel = pyx.relative_to(HERE)
        name = ".".join(rel.with_suffix("").parts)
        exts.append(
            Extension(
                name,
                [str(rel)],
                include_dirs=[np.get_include()],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
                extra_compile_args=opt + omp_compile,
                extra_link_args=link + omp_link,
            )
        )
    directives = {
        "language_level": 3,
        "boundscheck": DEBUG,
        "wraparound": DEBUG,
        "initializedcheck": DEBUG,
        "cdivision": True,
        "embedsignature": True,
    }
    return cythonize(exts, compiler_directives=directives, quiet=True, force=mode_changed())


def mode_changed():
    """True when this tree was last built in the other mode (debug vs optimised).

    Cython regenerates a ``.c`` file only when its ``.pyx`` is newer, never
    because the directives changed, and setuptools then keeps the old
    ``.so``: without this, ``CNNPOOL_DEBUG=1`` in a tree built before would
    silently give the optimised, unchecked extensions (or the reverse).
    """
    marker = HERE / "build" / "cnnpool-build-mode"
    mode = "debug" if DEBUG else "optimised"
    try:
        previous = marker.read_text().strip()
    except OSError:
        previous = None  # a fresh tree, or one built before this marker existed
    try:
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(mode + "\n")
    except OSError:
        pass
    return previous != mode and (DEBUG or previous is not None)


setup(ext_modules=extensions())
