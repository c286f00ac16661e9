"""``cnnpool.show_config()``: how this install was built and which kernels it runs."""

from __future__ import annotations

import os
import platform
from typing import Any

from . import _cpu, _dispatch, _parallel
from ._version import __version__


def show_config(mode: str = "stdout") -> dict[str, Any] | None:
    """Print (or return) how cnnpool was built and which CPU variant each kernel module runs.

    Parameters
    ----------
    mode : {"stdout", "dicts"}
        ``"stdout"`` prints a short report; ``"dicts"`` returns it as a dict
        instead (keys ``version``, ``build``, ``cpu`` and ``modules``, the
        last ``{module name: {"level", "why", "file"}}``).

    Notes
    -----
    On x86-64 the default build carries each hot kernel module compiled for
    three CPU levels (``baseline``: any x86-64 CPU; ``avx2``: x86-64-v3;
    ``avx512``: x86-64-v4) and loads the best one the CPU and its OS support
    when the module is first imported.  The environment variable
    ``CNNPOOL_CPU`` caps the level (e.g. ``CNNPOOL_CPU=baseline`` to test the
    fallback); see the installation guide.
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    info = _cpu.build_info()
    level, why = _dispatch.best_level()
    report: dict[str, Any] = {
        "version": __version__,
        "build": {
            "mode": info["mode"],
            "compiler": info["compiler"],
            "openmp": info["openmp"],
            "max_threads": _parallel.get_num_threads(),
        },
        "cpu": {
            "machine": platform.machine(),
            "x86_features": sorted(_cpu.x86_features()),
            "level": level if _cpu.is_x86() else None,
            "why": why if _cpu.is_x86() else "not an x86 CPU: one plain-C build",
            _dispatch.ENV: os.environ.get(_dispatch.ENV) or None,
        },
        "modules": {
            name: {"level": lvl, "why": reason, "file": file}
            for name, (lvl, reason, file) in sorted(_dispatch.chosen().items())
        },
    }
    if mode == "dicts":
        return report
    build, cpu = report["build"], report["cpu"]
    openmp = f"OpenMP {build['openmp']}" if build["openmp"] else "no OpenMP (serial kernels)"
    lines = [
        f"cnnpool {report['version']}",
        f"  build: {build['mode']}; {build['compiler']}; {openmp}; threads: {build['max_threads']}",
        f"  CPU: {cpu['machine']}; level {cpu['level']} ({cpu['why']})",
    ]
    if cpu["x86_features"]:
        lines.append(f"  features (CPU and OS): {' '.join(cpu['x86_features'])}")
    if report["modules"]:
        lines.append("  kernel modules (CPU variant):")
        width = max(len(name) for name in report["modules"])
        for name, entry in report["modules"].items():
            # The reason is the CPU's (above) unless this module differs.
            why = "" if entry["why"] == cpu["why"] else f" ({entry['why']})"
            lines.append(f"    {name:<{width}}  {entry['level']}{why}")
    else:
        lines.append("  kernel modules: one build each (no CPU variants)")
    print("\n".join(lines))
    return None
