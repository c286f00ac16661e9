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
CNNPOOL_PORTABLE=1
    Build for the baseline of the target architecture (x86-64: SSE2), for
    wheels that run on other machines.  By default the kernels are compiled
    with ``-march=native``, for the CPU of the machine that builds them
    (``pip install`` from source builds on the machine that runs the code):
    AVX2 doubles the width of the pooling loops and gives them blends.  A
    compiler that refuses the flag (or a CPU it does not know) falls back
    to a portable build, as a compiler without OpenMP gives a serial one.
    Either way ``-ffp-contract=off``: no fused multiply-add may change a
    rounding, so results are the same bits with and without AVX2/FMA.
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
PORTABLE = os.environ.get("CNNPOOL_PORTABLE", "") not in ("", "0")


def _compiler():
    """The C compiler Python was built with (or ``$CC``); None if not on PATH."""
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc").split()[0]
    return cc if shutil.which(cc) is not None else None


def _try_compile(flags, source="int main(void){return 0;}\n"):
    """True when the compiler builds and links ``source`` with ``flags``."""
    cc = _compiler()
    if cc is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "check.c")
        src.write_text(source)
        cmd = [cc, *flags, str(src), "-o", str(Path(tmp, "check"))]
        try:
            return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False


def arch_flags():
    """``-march=native`` unless CNNPOOL_PORTABLE=1 or the compiler refuses it.

    With it, loops the compiler vectorises use 256-bit vectors even on
    AVX-512 CPUs (``-mprefer-vector-width=256``): the pooling loops, whose
    windows are strided pairs, ran 1.2-1.5x faster so on a Zen 5 (W1 max
    forward 0.45 -> 0.31 ms, W5 mean forward+backward 1.30 -> 1.00 ms).  The
    hand-written AVX-512 kernels (intrinsics) are not affected.
    """
    if PORTABLE:
        return []
    if not _try_compile(["-march=native"]):
        print("cnnpool: compiler refuses -march=native; portable build", file=sys.stderr)
        return []
    flags = ["-march=native"]
    if _try_compile(flags + ["-mprefer-vector-width=256"]):
        flags.append("-mprefer-vector-width=256")
    return flags


def openmp_flags():
    """Return (compile, link) flags for OpenMP, or empty lists where unsupported.

    Tries to compile and link a tiny OpenMP program with the compiler Python
    was built with; any failure means a clean serial build.
    """
    if os.environ.get("CNNPOOL_NO_OPENMP", "") not in ("", "0"):
        return [], []
    source = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    if not _try_compile(["-fopenmp"], source):
        print("cnnpool: compiler has no OpenMP; building serial kernels", file=sys.stderr)
        return [], []
    return ["-fopenmp"], ["-fopenmp"]


def extensions():
    omp_compile, omp_link = openmp_flags()
    arch = arch_flags()
    if DEBUG:
        opt = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
        link = ["-fsanitize=address,undefined"]
    else:
        # -g0: Python's own CFLAGS carry -g, which would triple the size of
        # every shared object with debug information nobody installs for.
        opt = ["-O3", "-g0"]
        link = []
    # -fno-math-errno: sqrt and friends need not set errno, so loops over
    # them can use vector instructions (the values are the same either way).
    opt += arch + ["-ffp-contract=off", "-fno-math-errno"]
    exts = []
    for pyx in sorted(HERE.glob("cnnpool/**/*.pyx")):
        rel = pyx.relative_to(HERE)
        name = ".".join(rel.with_suffix("").parts)
        # A C header next to the .pyx (its SIMD micro-kernels) is part of it:
        # editing the header must rebuild the extension.
        header = rel.with_suffix(".h")
        exts.append(
            Extension(
                name,
                [str(rel)],
                depends=[str(header)] if (HERE / header).exists() else [],
                include_dirs=[np.get_include()],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]
                + ([("CNNPOOL_DEBUG", "1")] if DEBUG else []),
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
    return cythonize(exts, compiler_directives=directives, quiet=True, force=mode_changed(arch))


def mode_changed(arch):
    """True when this tree was last built in another mode (debug vs optimised, or arch).

    Cython regenerates a ``.c`` file only when its ``.pyx`` is newer, never
    because the directives changed, and setuptools then keeps the old
    ``.so``: without this, ``CNNPOOL_DEBUG=1`` in a tree built before would
    silently give the optimised, unchecked extensions (or the reverse), and
    CNNPOOL_PORTABLE=1 would keep the ``-march=native`` objects.
    """
    marker = HERE / "build" / "cnnpool-build-mode"
    mode = ("debug" if DEBUG else "optimised") + (" " + " ".join(arch) if arch else "")
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
