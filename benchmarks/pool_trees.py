"""Time the pooling layers of two cnnpool source trees against each other (and PyTorch).

For a change to the pooling base (such as issue 17's N-d geometry) that must
not slow 2-D pooling: each round runs one subprocess per tree, alternately,
on one thread, each timing forward + backward of every workload; the report
gives per-workload medians and minimums over rounds and the new/old ratio.
Separate processes because both trees are the package ``cnnpool``.
``--torch`` adds PyTorch (in the new tree's process) for the 1-D/3-D rows.

Usage::

    python benchmarks/pool_trees.py --old /path/to/old/tree --new . --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKLOADS = {
    # name: (layer expression, input shape, torch function or None)
    "max2d k2 (64,32,32,32)": ("cp.MaxPool2d(2)", (64, 32, 32, 32), "F.max_pool2d(t, 2)"),
    "max2d k3s2p1 (64,32,32,32)": (
        "cp.MaxPool2d(3, 2, 1)",
        (64, 32, 32, 32),
        "F.max_pool2d(t, 3, 2, 1)",
    ),
    "mean2d k2 (64,32,32,32)": ("cp.MeanPool2d(2)", (64, 32, 32, 32), "F.avg_pool2d(t, 2)"),
    "mean2d k3s2p1 (64,32,32,32)": (
        "cp.MeanPool2d(3, 2, 1)",
        (64, 32, 32, 32),
        "F.avg_pool2d(t, 3, 2, 1)",
    ),
    "max2d k2 small (8,16,8,8)": ("cp.MaxPool2d(2)", (8, 16, 8, 8), "F.max_pool2d(t, 2)"),
    "mean2d k2 small (8,16,8,8)": ("cp.MeanPool2d(2)", (8, 16, 8, 8), "F.avg_pool2d(t, 2)"),
    "adaptive-max2d 2 small (8,16,8,8)": (
        "cp.AdaptiveMaxPool2d(2)",
        (8, 16, 8, 8),
        "F.adaptive_max_pool2d(t, 2)",
    ),
    "lp2d p2 k2 (32,32,32,32)": ("cp.LpPool2d(2, 2)", (32, 32, 32, 32), "F.lp_pool2d(t, 2, 2)"),
    "adaptive-mean2d 1 (64,32,32,32)": (
        "cp.AdaptiveMeanPool2d(1)",
        (64, 32, 32, 32),
        "F.adaptive_avg_pool2d(t, 1)",
    ),
}
ND_WORKLOADS = {
    "max3d k2 (8,16,16,32,32)": ("cp.MaxPool3d(2)", (8, 16, 16, 32, 32), "F.max_pool3d(t, 2)"),
    "max3d k3s2p1 (8,16,16,32,32)": (
        "cp.MaxPool3d(3, 2, 1)",
        (8, 16, 16, 32, 32),
        "F.max_pool3d(t, 3, 2, 1)",
    ),
    "mean3d k2 (8,16,16,32,32)": ("cp.MeanPool3d(2)", (8, 16, 16, 32, 32), "F.avg_pool3d(t, 2)"),
    "max1d k2 (64,32,4096)": ("cp.MaxPool1d(2)", (64, 32, 4096), "F.max_pool1d(t, 2)"),
    "max1d k3s2p1 (64,32,4096)": (
        "cp.MaxPool1d(3, 2, 1)",
        (64, 32, 4096),
        "F.max_pool1d(t, 3, 2, 1)",
    ),
    "mean1d k2 (64,32,4096)": ("cp.MeanPool1d(2)", (64, 32, 4096), "F.avg_pool1d(t, 2)"),
}

CHILD = r"""
import json, sys, time
import numpy as np
import cnnpool as cp
workloads, repeats, with_torch = json.loads(sys.argv[1])
if with_torch:
    import torch
    torch.set_num_threads(1)
    F = torch.nn.functional
out = {}
for name, (expr, shape, texpr) in workloads.items():
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    layer = eval(expr)
    g = np.ones(layer(x).shape, np.float32)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        layer(x)
        layer.backward(g)
        times.append(time.perf_counter() - t0)
    out[name] = min(times)
    if with_torch:
        t = torch.tensor(x, requires_grad=True)
        tg = torch.tensor(g)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            y = eval(texpr)
            y.backward(tg)
            times.append(time.perf_counter() - t0)
            t.grad = None
        out["torch " + name] = min(times)
print(json.dumps(out))
"""


def _run(tree: str, workloads: dict, repeats: int, with_torch: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.path.abspath(tree))
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the other tree untouched
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([workloads, repeats, with_torch])],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="source tree of the old cnnpool (built)")
    parser.add_argument("--new", default=".", help="source tree of the new cnnpool (built)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=15, help="calls per round (min taken)")
    parser.add_argument("--nd", action="store_true", help="also 1-D/3-D rows vs PyTorch")
    parser.add_argument("--only", default="", help="only workloads whose name contains this")
    args = parser.parse_args()
    workloads = {k: v for k, v in WORKLOADS.items() if args.only in k}
    samples: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    for r in range(args.rounds):
        for which, tree in (
            (("old", args.old), ("new", args.new))
            if r % 2
            else (
                ("new", args.new),
                ("old", args.old),
            )
        ):
            for name, t in _run(tree, workloads, args.repeats, False).items():
                samples[which].setdefault(name, []).append(t)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print("| workload | old median ms | new median ms | new/old (median) | new/old (min) |")
    print("|---|---|---|---|---|")
    for name in workloads:
        old, new = samples["old"][name], samples["new"][name]
        mo, mn = statistics.median(old), statistics.median(new)
        print(
            f"| {name} | {mo * 1e3:.3f} | {mn * 1e3:.3f} | {mn / mo:.3f} | "
            f"{min(new) / min(old):.3f} |"
        )
    if args.nd:
        nd: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, t in _run(args.new, ND_WORKLOADS, args.repeats, True).items():
                nd.setdefault(name, []).append(t)
        print()
        print("| workload (fwd+bwd, 1 thread) | cnnpool ms | torch ms | torch/cnnpool |")
        print("|---|---|---|---|")
        for name in ND_WORKLOADS:
            c, t = statistics.median(nd[name]), statistics.median(nd["torch " + name])
            print(f"| {name} | {c * 1e3:.2f} | {t * 1e3:.2f} | {t / c:.2f}x |")


if __name__ == "__main__":
    main()
