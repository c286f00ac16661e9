"""Runtime CPU dispatch: each kernel module loads the variant this CPU can run best.

On x86-64 the default build compiles every hot kernel module three times
from the same C (``setup.py``, ``DISPATCHED``): the baseline keeps the
module's name and place (``pooling/_ext/_kernels.*.so``), the AVX2/FMA and
AVX-512 builds sit in ``_avx2/`` and ``_avx512/`` folders beside it under the
same file name.  Importing this module (``cnnpool/__init__.py`` does, before
any kernel module) runs :func:`install`, which puts a finder first on
``sys.meta_path``; when a ``cnnpool`` module that has such variants is
imported, by any import statement, it loads the best one the CPU and its OS support *under the
module's own name*, so the rest of the package (and a test, or a user's
code) imports kernel modules as usual and gets the chosen variant.
:func:`cnnpool.show_config` reports each choice and why.

``CNNPOOL_CPU=baseline|avx2|avx512`` caps the level (for testing the
fallbacks on a newer CPU); asking for a level this CPU or OS lacks, or
setting it on a build without variants, is refused when cnnpool is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from . import _cpu

ENV = "CNNPOOL_CPU"

_V3 = ("avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "lzcnt", "movbe")
_V4 = ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")

#: CPU levels, lowest first: name -> (the CPU features it needs, what it is).
#: setup.py compiles them (LEVELS there: the compiler flags); keep in step.
LEVELS: dict[str, tuple[tuple[str, ...], str]] = {
    "baseline": ((), "x86-64 (SSE2): any x86-64 CPU"),
    "avx2": (_V3, "x86-64-v3: AVX2, FMA, BMI1/2 (Haswell, Zen 1 and newer)"),
    "avx512": (_V3 + _V4, "x86-64-v4: AVX-512 F/BW/CD/DQ/VL (Skylake-X, Zen 4 and newer)"),
}


class CPUVariantError(ImportError):
    """``CNNPOOL_CPU`` asks for a CPU level this machine or build cannot give."""


def supported_levels(features: frozenset[str]) -> list[str]:
    """The levels whose every required feature is in ``features``, lowest first."""
    return [name for name, (needs, _) in LEVELS.items() if set(needs) <= features]


def _missing(level: str, features: frozenset[str]) -> list[str]:
    return [f for f in LEVELS[level][0] if f not in features]


class _VariantFinder(importlib.abc.MetaPathFinder):
    """Finds a cnnpool module's CPU variant in the ``_<level>/`` folders of its package."""

    def __init__(self, allowed: list[str], reason: str) -> None:
        self.allowed = allowed  # levels this CPU (and CNNPOOL_CPU) allows, lowest first
        self.reason = reason  # why the highest of them
        self.chosen: dict[str, tuple[str, str, str]] = {}  # name -> (level, why, file)
        self._listing: dict[str, frozenset[str]] = {}

    def _files(self, folder: str) -> frozenset[str]:
        if folder not in self._listing:
            try:
                self._listing[folder] = frozenset(os.listdir(folder))
            except OSError:
                self._listing[folder] = frozenset()
        return self._listing[folder]

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if path is None or not fullname.startswith("cnnpool."):
            return None
        leaf = fullname.rpartition(".")[2]
        names = [leaf + suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES]
        built: dict[str, str] = {}  # level -> file, for the levels compiled for this module
        for level in LEVELS:
            if level == "baseline":
                continue
            for folder in path:
                sub = os.path.join(folder, "_" + level)
                hit = next((n for n in names if n in self._files(sub)), None)
                if hit is not None:
                    built[level] = os.path.join(sub, hit)
                    break
        if not built:
            return None  # not a dispatched module: the usual finders load it
        best = max(
            (lvl for lvl in self.allowed if lvl in built or lvl == "baseline"),
            key=list(LEVELS).index,
        )
        if best == self.allowed[-1]:
            why = self.reason
        else:
            why = f"the highest level built for this module (baseline, {', '.join(built)})"
        if best == "baseline":
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            self.chosen[fullname] = (best, why, spec.origin if spec and spec.origin else "?")
            return spec
        file = built[best]
        loader = importlib.machinery.ExtensionFileLoader(fullname, file)
        spec = importlib.util.spec_from_file_location(fullname, file, loader=loader)
        self.chosen[fullname] = (best, why, file)
        return spec


_finder: _VariantFinder | None = None


def plan(requested: str, features: frozenset[str], mode: str) -> tuple[list[str], str]:
    """The levels dispatched modules may load, lowest first, and why the highest.

    Parameters
    ----------
    requested : str
        The value of ``CNNPOOL_CPU`` ('' when unset).
    features : frozenset of str
        What the CPU has and the OS supports (:func:`cnnpool._cpu.x86_features`).
    mode : str
        The build's mode (:func:`cnnpool._cpu.build_info`): ``dispatch``,
        ``native`` or ``portable``, maybe with ``_debug``.

    Raises
    ------
    CPUVariantError
        ``requested`` names an unknown level, a level the features lack (the
        message names the missing ones), or is set on a build without
        variants.
    """
    allowed = supported_levels(features)
    requested = requested.strip().lower()
    if not requested:
        higher = [lvl for lvl in LEVELS if lvl not in allowed]
        if not higher:
            return (
                allowed,
                "the CPU has every feature of the highest level and the OS saves its state",
            )
        missing = ", ".join(_missing(higher[0], features))
        return allowed, f"no {higher[0]}: the CPU or its OS lacks {missing}"
    if requested not in LEVELS:
        raise CPUVariantError(
            f"{ENV}={requested!r} is not a CPU level; use one of "
            f"{', '.join(LEVELS)} (or leave it unset for the best this CPU supports)"
        )
    if not mode.startswith("dispatch"):
        raise CPUVariantError(
            f"{ENV}={requested} asks for a CPU variant, but this build has none "
            f"(built in {mode!r} mode: CNNPOOL_NATIVE=1, CNNPOOL_PORTABLE=1 or a "
            "non-x86-64 target); unset it, or rebuild without those switches"
        )
    if requested not in allowed:
        raise CPUVariantError(
            f"{ENV}={requested} asks for {LEVELS[requested][1]}, but this CPU or its "
            f"OS lacks {', '.join(_missing(requested, features))}; levels it "
            f"supports: {', '.join(allowed)}"
        )
    return allowed[: allowed.index(requested) + 1], f"forced by {ENV}={requested}"


def install() -> None:
    """Check ``CNNPOOL_CPU`` and put the variant finder first on ``sys.meta_path`` (once).

    Raises
    ------
    CPUVariantError
        As :func:`plan`.
    """
    global _finder
    if _finder is not None:
        return
    allowed, reason = plan(
        os.environ.get(ENV, ""), _cpu.x86_features(), str(_cpu.build_info()["mode"])
    )
    _finder = _VariantFinder(allowed, reason)
    sys.meta_path.insert(0, _finder)


def chosen() -> dict[str, tuple[str, str, str]]:
    """``{module name: (level, why, file)}`` for every dispatched module imported so far."""
    return dict(_finder.chosen) if _finder is not None else {}


def best_level() -> tuple[str, str]:
    """(the highest level dispatched modules may load in this process, why)."""
    if _finder is None:
        return "baseline", "cnnpool._dispatch.install() has not run"
    return _finder.allowed[-1], _finder.reason


# cnnpool/__init__.py imports this module before any kernel module.
install()
