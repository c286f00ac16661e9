"""Conv2d forward+backward of two checkouts of cnnpool, timed alternately.

For "did this change slow an existing path": each checkout (a directory with
a built ``cnnpool/``) runs in a worker process of its own, one thread, and
the workers take turns, one sample each, on every shape, so that both see
the same machine load.  Prints medians, minimums and new/old ratios.

Run: ``python benchmarks/conv_ab.py --old /path/to/old --new . [--rounds 25]
[--only "I19 b" "V11 conv2"]`` (shapes by the names of
``benchmarks/layerbench/workloads.py``'s ``CONV_SHAPES``; default: a few
of them, one per conv path).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

_WORKER = r"""
import sys, time
import numpy as np
import cnnpool as cp
cp.set_num_threads(1)
layers = {}
for line in sys.stdin:
    name, shape, out, k, s, p, groups, reps = eval(line)
    if name not in layers:
        rng = np.random.default_rng(0)
        extra = {"groups": groups} if groups != 1 else {}  # an old checkout may lack it
        conv = cp.Conv2d(shape[1], out, k, stride=s, padding=p, rng=0, **extra)
        x = rng.standard_normal(shape).astype(np.float32)
        g = rng.standard_normal(conv.output_shape(shape)).astype(np.float32)
        for _ in range(2):
            conv.forward(x); conv.backward(g)
        layers[name] = conv, x, g
    conv, x, g = layers[name]
    t = time.perf_counter()
    for _ in range(reps):
        conv.forward(x); conv.backward(g)
    print((time.perf_counter() - t) / reps, flush=True)
"""

DEFAULT = ["I19 a", "I19 b", "R18 layer1", "R18 layer2 down", "R18 layer4", "V11 conv2"]


def _shapes():
    sys.path.insert(0, str(Path(__file__).parent))
    from layerbench.workloads import CONV_SHAPES

    return {row[0]: row[1:] for row in CONV_SHAPES}


def _worker(root):
    env = dict(os.environ, PYTHONPATH=str(Path(root).resolve()), OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd="/",
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, help="checkout with the old build")
    parser.add_argument("--new", default=".", help="checkout with the new build")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--only", nargs="*", default=DEFAULT, help="CONV_SHAPES names")
    args = parser.parse_args(argv)
    shapes = _shapes()
    workers = {"old": _worker(args.old), "new": _worker(args.new)}
    try:
        print(f"load: {os.getloadavg()}")
        print(f"{'shape':18s} {'old ms (med/min)':>18s} {'new ms (med/min)':>18s}  new/old")
        for name in args.only:
            shape, out, k, s, p = shapes[name]
            reps = 3 if shape[0] * shape[1] * shape[2] * shape[3] > 1 << 18 else 200
            times = {"old": [], "new": []}
            for r in range(args.rounds):
                order = ("old", "new") if r % 2 == 0 else ("new", "old")
                for who in order:
                    proc = workers[who]
                    proc.stdin.write(repr((name, shape, out, k, s, p, 1, reps)) + "\n")
                    proc.stdin.flush()
                    times[who].append(float(proc.stdout.readline()) * 1e3)
            med = {w: statistics.median(t) for w, t in times.items()}
            low = {w: min(t) for w, t in times.items()}
            ratio, low_ratio = med["new"] / med["old"], low["new"] / low["old"]
            print(
                f"{name:18s} {med['old']:8.3f}/{low['old']:8.3f} {med['new']:8.3f}/"
                f"{low['new']:8.3f}  {ratio:.3f} (min {low_ratio:.3f})"
            )
        print(f"load: {os.getloadavg()}")
    finally:
        for proc in workers.values():
            proc.stdin.close()
            proc.wait()


if __name__ == "__main__":
    main()
