#!/usr/bin/env python
"""Compare two (or more) builds of cnnpool on the pooling workloads, interleaved.

Two builds cannot be imported in one process (their modules share names),
so each runs in its own worker process (``PYTHONPATH`` set to its source
tree, built in place), and the parent asks them for samples in turn, order
reversed every round: a slow spell of a shared machine hits them alike.
Every worker runs single-threaded (``OMP_NUM_THREADS=1``).

Usage, from the repository root::

    python benchmarks/bench_builds.py dispatch=. native=/tmp/cnnpool-native
    python benchmarks/bench_builds.py avx512=.:avx512 avx2=.:avx2 --rounds 9

Each argument is ``label=TREE`` or ``label=TREE:LEVEL`` (``LEVEL`` sets
``CNNPOOL_CPU`` in that worker).  Workloads (those of
``bench_layers.py``): W1 max/mean 2x2 stride 2 on (64, 32, 32, 32) float32,
W2 3x3 stride 2 padding 1 on the same input, W5 = W1 in float64; each
forward and forward+backward.  The table gives the median and the minimum
per call (ms) of each build, and each build's median over the first one's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

WORKER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import cnnpool as cp

    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((64, 32, 32, 32)).astype(np.float32)
    x64 = x32.astype(np.float64)
    layers = {
        "W1 max": (cp.MaxPool2d(2), x32),
        "W1 mean": (cp.MeanPool2d(2), x32),
        "W2 max": (cp.MaxPool2d(3, stride=2, padding=1), x32),
        "W2 mean": (cp.MeanPool2d(3, stride=2, padding=1), x32),
        "W5 max": (cp.MaxPool2d(2), x64),
        "W5 mean": (cp.MeanPool2d(2), x64),
    }
    grads = {k: np.ones_like(layer(x)) for k, (layer, x) in layers.items()}
    report = cp.show_config("dicts")
    level = report["modules"].get("cnnpool.pooling._ext._kernels", {}).get("level")
    print(json.dumps({"mode": report["build"]["mode"], "level": level}), flush=True)
    for line in sys.stdin:
        name, kind, n = line.split("|")
        layer, x = layers[name]
        g = grads[name]
        out = []
        for _ in range(int(n)):
            t = time.perf_counter()
            y = layer(x)
            if kind == "fwd+bwd":
                layer.backward(g)
            out.append(time.perf_counter() - t)
            del y
        print(json.dumps(out), flush=True)
    """
)

WORKLOADS = ("W1 max", "W1 mean", "W2 max", "W2 mean", "W5 max", "W5 mean")
PASSES = ("fwd", "fwd+bwd")


def start(tree, level):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), OMP_NUM_THREADS="1")
    env.pop("CNNPOOL_CPU", None)
    if level:
        env["CNNPOOL_CPU"] = level
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=os.path.abspath(tree),
    )
    info = json.loads(proc.stdout.readline())
    return proc, info


def ask(proc, name, kind, n):
    proc.stdin.write(f"{name}|{kind}|{n}\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("builds", nargs="+", help="label=TREE or label=TREE:LEVEL")
    parser.add_argument("--rounds", type=int, default=7, help="alternations (default 7)")
    parser.add_argument("--calls", type=int, default=5, help="calls per sample (default 5)")
    args = parser.parse_args(argv)
    builds = {}
    for spec in args.builds:
        label, _, rest = spec.partition("=")
        tree, _, level = rest.partition(":")
        builds[label] = start(tree, level)
    labels = list(builds)
    for label, (_, info) in builds.items():
        print(f"{label}: build mode {info['mode']}, kernels level {info['level']}")
    with open("/proc/loadavg") if os.path.exists("/proc/loadavg") else open(os.devnull) as f:
        print(f"load average at start: {f.read().strip()}")
    samples = {(lab, w, p): [] for lab in labels for w in WORKLOADS for p in PASSES}
    for label in labels:  # warm-up
        for w in WORKLOADS:
            for p in PASSES:
                ask(builds[label][0], w, p, 2)
    for r in range(args.rounds):
        order = labels if r % 2 == 0 else labels[::-1]
        for w in WORKLOADS:
            for p in PASSES:
                for label in order:
                    samples[(label, w, p)] += ask(builds[label][0], w, p, args.calls)
    for proc, _ in builds.values():
        proc.stdin.close()
        proc.wait()
    head = "| workload | " + " | ".join(f"{lab} median / min (ms)" for lab in labels)
    head += " | " + " | ".join(f"{lab} / {labels[0]} (median, min)" for lab in labels[1:]) + " |"
    print(head)
    print("|" + "---|" * (1 + 2 * len(labels) - 1))
    for w in WORKLOADS:
        for p in PASSES:
            med = {lab: statistics.median(samples[(lab, w, p)]) * 1e3 for lab in labels}
            low = {lab: min(samples[(lab, w, p)]) * 1e3 for lab in labels}
            cells = [f"{med[lab]:.3f} / {low[lab]:.3f}" for lab in labels]
            ratios = [
                f"{med[lab] / med[labels[0]]:.3f}, {low[lab] / low[labels[0]]:.3f}"
                for lab in labels[1:]
            ]
            print(f"| {w} {p} | " + " | ".join(cells + ratios) + " |")
    with open("/proc/loadavg") if os.path.exists("/proc/loadavg") else open(os.devnull) as f:
        print(f"load average at end: {f.read().strip()}")


if __name__ == "__main__":
    main()
