"""Timing, thread pinning, machine description, worker subprocesses, memory probes."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class Skip(Exception):
    """A workload cannot run here (layer or library missing)."""


def require(module, name):
    """``module.name``, or :class:`Skip` when this cnnpool does not have it yet."""
    layer = getattr(module, name, None)
    if layer is None:
        raise Skip(f"cnnpool has no {name} yet")
    return layer


# ============================================================== measuring ====
def _per_call(fn, budget=1e-3):
    """How many calls make one sample last about ``budget`` seconds."""
    t0 = time.perf_counter()
    fn()
    single = max(time.perf_counter() - t0, 1e-7)
    return max(1, min(1000, int(budget / single)))


def interleaved(competitors, repeats, warmup=3, seconds=None):
    """Time ``{name: fn}`` alternately; return ``{name: (min_s, median_s, calls)}``.

    With ``seconds``, fewer rounds (at least 5) when ``repeats`` rounds of
    all competitors would take longer than that: the big layer shapes then
    cost a bounded time each.
    """
    names = list(competitors)
    for name in names:
        for _ in range(warmup):
            competitors[name]()
    calls = {name: _per_call(competitors[name]) for name in names}
    if seconds is not None:
        t0 = time.perf_counter()
        for name in names:
            for _ in range(calls[name]):
                competitors[name]()
        one_round = max(time.perf_counter() - t0, 1e-9)
        repeats = max(5, min(repeats, int(seconds / one_round)))
    samples = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            fn, k = competitors[name], calls[name]
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            samples[name].append((time.perf_counter() - t0) / k)
    out = {}
    for name in names:
        s = sorted(samples[name])
        out[name] = (s[0], s[len(s) // 2], len(s) * calls[name])
    return out


def on_threads(cp, n, fn):
    """``fn`` run with cnnpool's kernels capped at ``n`` threads (0: no cap)."""

    def run():
        cp.set_num_threads(n)
        try:
            fn()
        finally:
            cp.set_num_threads(0)

    return run


def _records(key, desc, pass_name, result):
    """One record per competitor of an :func:`interleaved` result."""
    return [
        dict(
            workload=key,
            description=desc,
            pass_=pass_name,
            competitor=name,
            min=best,
            median=median,
            calls=n,
        )
        for name, (best, median, n) in result.items()
    ]


# =============================================================== worker ====
def run_worker(workloads, threads, repeats, only):
    """Time every selected workload on ``threads`` threads (in this process)."""
    import numpy as np

    import cnnpool as cp

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(threads)
    records, notes = [], []
    for key, work in workloads.items():
        if only and not any(key.startswith(o) or key == o for o in only):
            continue
        try:
            passes = work.make(cp, torch)
        except Skip as exc:
            notes.append(f"{key}: skipped ({exc})")
            print(f"[{threads} thread(s)] {key}: skipped ({exc})", file=sys.stderr, flush=True)
            continue
        for pass_name, competitors in passes.items():
            reps = max(5, int(repeats * work.repeats))
            result = interleaved(competitors, reps, seconds=work.seconds)
            records += _records(key, work.description, pass_name, result)
            if threads > 1 and hasattr(cp, "set_num_threads"):
                # cnnpool on 1 thread and on all of them, interleaved in this
                # one process: on a VM whose second core comes and goes, two
                # separate runs minutes apart compare the machine, not the code.
                scaling = interleaved(
                    {
                        "cnnpool@1": on_threads(cp, 1, competitors["cnnpool"]),
                        f"cnnpool@{threads}": on_threads(cp, 0, competitors["cnnpool"]),
                    },
                    reps,
                    seconds=work.seconds,
                )
                records += _records(key, work.description, pass_name, scaling)
            cpm = result["cnnpool"][1] * 1e3
            tm = result["torch"][1] * 1e3 if "torch" in result else float("nan")
            print(
                f"[{threads} thread(s)] {key:12s} {pass_name:17s} cnnpool {cpm:8.3f} ms"
                f"  torch {tm:8.3f} ms  ({os.getloadavg()[0]:.1f} load)",
                file=sys.stderr,
                flush=True,
            )
    info = machine_info(np, torch, cp)
    return dict(threads=threads, records=records, notes=notes, machine=info)


def machine_info(np, torch, cp):
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = "unknown"
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{deps.get('name')} {deps.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older NumPy: leave it unknown
        pass
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        have = set(text.split("flags", 1)[1].split("\n", 1)[0].split())
        flags = ", ".join(f for f in ("avx2", "fma", "avx512f") if f in have)
    except (OSError, IndexError):
        pass
    try:
        from cnnpool import _parallel

        openmp = _parallel.openmp_enabled()
    except ImportError:
        openmp = None
    info = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "simd": flags,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "torch": getattr(torch, "__version__", None),
        "cnnpool": getattr(cp, "__version__", "?"),
        "cnnpool_openmp": openmp,
        "platform": platform.platform(),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if torch is not None:
        info["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
    return info


# ========================================================= memory probe ====
def run_memory(step_builders, library):
    """Peak memory of one training step of ``library`` in this fresh process.

    ``step_builders`` is ``{"cnnpool": make(cp), "torch": make(torch)}``,
    each returning the step function.
    """
    import tracemalloc

    import numpy  # noqa: F401  (imported before the baseline)

    def hwm_and_rss():
        fields = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                fields[key] = int(value.split()[0]) * 1024
        return fields.get("VmHWM"), fields.get("VmRSS")

    if library == "torch":
        import torch

        torch.set_num_threads(1)
        step = step_builders["torch"](torch)
    else:
        import cnnpool as cp

        step = step_builders["cnnpool"](cp)
    result = {}
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        _, before = hwm_and_rss()
        step()
        peak, _ = hwm_and_rss()
        result["rss_growth_first_step"] = peak - before
        step()
        step()
        peak, _ = hwm_and_rss()
        # The high-water mark of three steps over the resident set before the
        # first: buffers a library keeps between steps count, as do
        # transient ones it frees.
        result["rss_peak_three_steps"] = peak - before
        Path("/proc/self/clear_refs").write_text("5")
        _, before = hwm_and_rss()
        step()
        peak, _ = hwm_and_rss()
        result["rss_growth_warm_step"] = peak - before
    except (OSError, TypeError):
        result["rss_growth_first_step"] = None
    if library == "cnnpool":
        step()
        tracemalloc.start()
        step()
        result["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result


# ============================================================ subprocess ====
def subprocess_json(script, args_list, threads):
    """Run ``script args_list`` with every thread variable set to ``threads``; its JSON."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    cmd = [sys.executable, str(script)] + args_list
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed: {' '.join(cmd)}")
    return json.loads(proc.stdout)
