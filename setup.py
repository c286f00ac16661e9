"""Build the Cython extensions of cnnpool.

Every ``.pyx`` file under ``cnnpool/`` becomes one extension module named
after its path, so adding a kernel module needs no edit here.

CPU variants (the default build on x86-64)
------------------------------------------
The hot kernel modules (``DISPATCHED`` below) are compiled three times from
the same generated C: for every x86-64 CPU (``baseline``: ``-march=x86-64``,
SSE2), for AVX2/FMA (``avx2``: ``-march=x86-64-v3``) and for AVX-512
(``avx512``: ``-march=x86-64-v4``, which is what Skylake-X and Zen 4/5 have
in common).  The baseline keeps the module's own name and place; the others go
to ``_avx2/`` and ``_avx512/`` folders beside it.  ``cnnpool/_dispatch.py``
loads the best one this CPU and its OS support when the module is first
imported (``cnnpool.show_config()`` says which; ``CNNPOOL_CPU`` forces a lower
one).  Elsewhere (aarch64, macOS universal2, ...) every module is compiled
once for the compiler's default target: the kernels' intrinsics sit behind
``#if defined(__AVX__)``-style guards, so that is their plain-C path.

Environment switches
--------------------
CNNPOOL_NATIVE=1
    One build for the CPU of the machine that compiles it (``-march=native``),
    no variants: for people building for themselves.  A wheel built so dies
    with an illegal instruction on an older CPU.
CNNPOOL_PORTABLE=1
    One build for the baseline of the target (x86-64: SSE2), no variants:
    the smallest and quickest build, and the slowest kernels.
CNNPOOL_DEBUG=1
    Sanitizer/debug build: Cython bounds and wraparound checks on,
    ``-O1 -g -fsanitize=address,undefined``.  See README ("Debug build").
    Combines with the switches above (default: the CPU variants).
CNNPOOL_NO_OPENMP=1
    Build without OpenMP even where the compiler supports it.

Whatever the target, ``-ffp-contract=off`` (MSVC: its default
``/fp:precise``): no fused multiply-add may change a rounding, so every
variant gives the same bits where the kernels do the same operations.
``pip install`` compiles the extensions in parallel (one job per core)
unless ``build_ext --parallel``/``-j`` says otherwise.
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
from setuptools.command.build_ext import build_ext as _build_ext

HERE = Path(__file__).parent.resolve()


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


DEBUG = _flag("CNNPOOL_DEBUG")
NATIVE = _flag("CNNPOOL_NATIVE")
PORTABLE = _flag("CNNPOOL_PORTABLE")

# The modules compiled once per CPU level: those whose loops the instruction
# set speeds up (the pooling kernels, the direct convolution, the
# element-wise activations: ReLU forward+backward on 1M floats is ~40x
# faster at avx512 than at baseline).  Each variant costs a full compile, so
# modules whose loops are scalar gathers and scatters stay single
# (NOT_DISPATCHED).  A module with a .pxd is never a variant, even if
# listed: other modules cimport its types and functions from the one module
# of that name.
DISPATCHED = (
    "cnnpool/pooling/_ext/*.pyx",
    "cnnpool/pooling/strategies/*.pyx",
    "cnnpool/conv/_direct.pyx",
    "cnnpool/_elementwise.pyx",
)
NOT_DISPATCHED = (
    "cnnpool/pooling/_ext/_windows.pyx",
    "cnnpool/pooling/_ext/_adaptive.pyx",
)

# x86-64 CPU levels, lowest first: folder suffix -> GCC/Clang flags (with a
# fallback for compilers that predate -march=x86-64-vN), MSVC flags.  The
# names, folders and the CPU features each level needs are also in
# cnnpool/_dispatch.py (LEVELS); keep the two in step.
_V3 = ["-mavx", "-mavx2", "-mfma", "-mbmi", "-mbmi2", "-mf16c", "-mlzcnt", "-mmovbe"]
_V4 = _V3 + ["-mavx512f", "-mavx512bw", "-mavx512cd", "-mavx512dq", "-mavx512vl"]
LEVELS = {
    "baseline": ((["-march=x86-64", "-mtune=generic"], None), []),
    # Loops the compiler vectorises use 256-bit vectors on AVX-512 too: the
    # pooling loops (strided pairs) ran 1.2-1.5x faster so on a Zen 5.  The
    # hand-written AVX-512 kernels (intrinsics) are not affected.
    # MSVC's /arch:AVX2 implies FMA but does not define __FMA__, which the
    # direct convolution's header tests with __AVX2__.
    "avx2": ((["-march=x86-64-v3", "-mtune=generic"], _V3), ["/arch:AVX2", "/D__FMA__"]),
    "avx512": (
        (["-march=x86-64-v4", "-mtune=generic", "-mprefer-vector-width=256"], _V4),
        ["/arch:AVX512", "/D__FMA__"],
    ),
}


def target_is_x86_64():
    """True when the extensions are built for x86-64 (not the build machine's arch).

    ``sysconfig.get_platform()`` follows ``_PYTHON_HOST_PLATFORM``, which
    cibuildwheel sets when it cross-compiles (macOS arm64 on an Intel
    runner); ``ARCHFLAGS`` naming another or a second architecture (a
    universal2 build) means no x86 flags either.
    """
    machine = sysconfig.get_platform().rsplit("-", 1)[-1].lower()
    archs = os.environ.get("ARCHFLAGS", "").split()[1::2]
    return machine in ("x86_64", "amd64") and archs in ([], ["x86_64"])


def mode():
    """'dispatch', 'native' or 'portable': what this build compiles for."""
    if NATIVE and PORTABLE:
        sys.exit("setup.py: CNNPOOL_NATIVE=1 and CNNPOOL_PORTABLE=1 contradict each other")
    if NATIVE:
        return "native"
    if PORTABLE or not target_is_x86_64():
        return "portable"
    return "dispatch"


MODE = mode()


def _compiler():
    """The C compiler Python was built with (or ``$CC``); None if not on PATH."""
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc").split()[0]
    return cc if shutil.which(cc) is not None else None


def _try_compile(flags, source="int main(void){return 0;}\n"):
    """True when the (Unix-style) compiler builds and links ``source`` with ``flags``."""
    cc = _compiler()
    if cc is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "check.c")
        src.write_text(source)
        # ARCHFLAGS: macOS cross-compiles (cibuildwheel) name the target there.
        archflags = os.environ.get("ARCHFLAGS", "").split()
        cmd = [cc, *archflags, *flags, str(src), "-o", str(Path(tmp, "check"))]
        try:
            return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False


def _unix_level_flags(level):
    """GCC/Clang flags of a CPU level; None if the compiler refuses both forms."""
    if level == "native":
        if not _try_compile(["-march=native"]):
            print("cnnpool: compiler refuses -march=native; portable build", file=sys.stderr)
            return []
        flags = ["-march=native"]
        if _try_compile(flags + ["-mprefer-vector-width=256"]):
            flags.append("-mprefer-vector-width=256")
        return flags
    if level == "portable":
        return []
    (preferred, fallback), _ = LEVELS[level]
    if _try_compile(preferred):
        return preferred
    if fallback is not None:
        extra = [f for f in preferred if f.startswith("-mprefer")]
        if _try_compile(fallback + extra):
            return fallback + extra
    return None


def _unix_openmp_flags():
    if _flag("CNNPOOL_NO_OPENMP"):
        return []
    source = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    if not _try_compile(["-fopenmp"], source):
        print("cnnpool: compiler has no OpenMP; building serial kernels", file=sys.stderr)
        return []
    return ["-fopenmp"]


class build_ext(_build_ext):
    """Compiler-specific flags per extension, and one compile job per core by default.

    The flags are chosen here, where the compiler (GCC/Clang or MSVC) is
    known; each extension carries its CPU level in ``cnnpool_level``.
    """

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:  # neither --parallel/-j nor a config file set it
            try:
                self.parallel = len(os.sched_getaffinity(0))  # the cores we may use
            except AttributeError:  # macOS, Windows
                self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        msvc = self.compiler.compiler_type == "msvc"
        if msvc:
            # /fp:precise (the default) contracts nothing into FMAs; C99's
            # restrict is __restrict there.
            opt = ["/O2"]
            omp = [] if _flag("CNNPOOL_NO_OPENMP") else ["/openmp"]
            level_flags = {name: msvc_flags for name, (_, msvc_flags) in LEVELS.items()}
            level_flags.update(native=[], portable=[])
            macros = [("restrict", "__restrict")]
            link = []
        else:
            omp = _unix_openmp_flags()
            if DEBUG:
                opt = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
                link = ["-fsanitize=address,undefined"]
            else:
                # -g0: Python's own CFLAGS carry -g, which would triple the
                # size of every shared object with debug information nobody
                # installs for.
                opt = ["-O3", "-g0"]
                link = []
            # -fno-math-errno: sqrt and friends need not set errno, so loops
            # over them can use vector instructions (same values either way).
            opt += ["-ffp-contract=off", "-fno-math-errno"]
            levels = {ext.cnnpool_level for ext in self.extensions}
            level_flags = {level: _unix_level_flags(level) for level in sorted(levels)}
            macros = []
        if level_flags.get("baseline", []) is None:  # no -march=x86-64: its default
            level_flags["baseline"] = []
        kept = []
        for ext in self.extensions:
            flags = level_flags[ext.cnnpool_level]
            if flags is None:  # an old compiler without this instruction set
                print(f"cnnpool: compiler refuses {ext.cnnpool_level}; skipping {ext.name}")
                continue
            ext.extra_compile_args = opt + flags + omp + ext.extra_compile_args
            ext.extra_link_args = link + omp + ext.extra_link_args
            ext.define_macros = ext.define_macros + macros
            kept.append(ext)
        self.extensions = kept
        super().build_extensions()

    def copy_extensions_to_source(self):
        # --inplace: the variants' _avx2/ and _avx512/ folders are not
        # packages, so nothing else creates them in the source tree.  A
        # variant left from an earlier build (another mode, or a module no
        # longer dispatched) would be loaded instead of the fresh module:
        # remove it.
        keep = set()
        for ext in self.extensions:
            (HERE / Path(*ext.name.split(".")[:-1])).mkdir(parents=True, exist_ok=True)
            keep.add(Path(self.get_ext_filename(ext.name)).as_posix())
        for level in LEVELS:
            for stale in HERE.glob(f"cnnpool/**/_{level}/*"):
                rel = stale.relative_to(HERE).as_posix()
                if stale.suffix in (".so", ".pyd") and rel not in keep:
                    print(f"cnnpool: removing stale CPU variant {rel}")
                    stale.unlink()
        super().copy_extensions_to_source()


def _dispatched(rel):
    if rel.with_suffix(".pxd").exists():
        return False
    if any(rel.match(pattern) for pattern in NOT_DISPATCHED):
        return False
    return any(rel.match(pattern) for pattern in DISPATCHED)


def _variant(ext, level):
    """The extension of CPU ``level`` compiled from ``ext``'s generated C.

    Its source is a one-line C file in ``build/`` that includes the module's
    C file, so each level has its own object file (setuptools names object
    files after their source), and its name ends in the module's own name:
    Python calls the ``PyInit__kernels`` the C defines.  Its headers still
    resolve next to the real C file (quoted includes search the including
    file's folder).
    """
    (c_file,) = ext.sources
    c_path = (HERE / c_file).resolve()
    package, _, leaf = ext.name.rpartition(".")
    wrapper = HERE / "build" / "cnnpool-cpu" / level / Path(c_file)
    text = f'/* CPU level {level} of {ext.name} (see setup.py) */\n#include "{c_path.as_posix()}"\n'
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    if not wrapper.exists() or wrapper.read_text() != text:
        wrapper.write_text(text)
    variant = Extension(
        f"{package}._{level}.{leaf}",
        [str(wrapper.relative_to(HERE))],
        depends=[c_file, *ext.depends],
        include_dirs=list(ext.include_dirs),
        define_macros=list(ext.define_macros),
    )
    variant.cnnpool_level = level
    return variant


def extensions():
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
    exts = cythonize(exts, compiler_directives=directives, quiet=True, force=mode_changed())
    variants = []
    for ext in exts:
        rel = Path(*ext.name.split(".")).with_suffix(".pyx")
        if MODE == "dispatch":
            ext.cnnpool_level = "baseline"
            if _dispatched(rel):
                variants += [_variant(ext, level) for level in LEVELS if level != "baseline"]
        else:
            ext.cnnpool_level = MODE
        # What the build was, for cnnpool.show_config() (identifiers only:
        # the C side turns them into strings, the same on every compiler).
        if ext.name == "cnnpool._cpu":
            ext.define_macros.append(("CNNPOOL_BUILD_MODE", MODE + ("_debug" if DEBUG else "")))
    return exts + variants


def mode_changed():
    """True when this tree was last built in another mode (debug vs optimised, or CPU mode).

    Cython regenerates a ``.c`` file only when its ``.pyx`` is newer, never
    because the directives changed, and setuptools then keeps the old
    ``.so``: without this, ``CNNPOOL_DEBUG=1`` in a tree built before would
    silently give the optimised, unchecked extensions (or the reverse), and
    CNNPOOL_NATIVE=1 would keep the objects of the CPU variants.
    """
    marker = HERE / "build" / "cnnpool-build-mode"
    current = ("debug" if DEBUG else "optimised") + " " + MODE
    try:
        previous = marker.read_text().strip()
    except OSError:
        previous = None  # a fresh tree, or one built before this marker existed
    try:
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(current + "\n")
    except OSError:
        pass
    return previous != current and (DEBUG or previous is not None)


setup(ext_modules=extensions(), cmdclass={"build_ext": build_ext})
