"""What a pooling strategy costs next to the compiled built-ins.

Times one forward + backward pass of every strategy on the same input,
(64, 32, 32, 32) float32 by default, 2x2 windows with stride 2, on one
thread, the layers interleaved round by round, and prints a Markdown table
with each median time as a multiple of the compiled ``MaxPool2d``'s.  The rows:

* the compiled built-ins (``MaxPool2d``, ``MeanPool2d``);
* a strategy compiled through the ``_strategy.pxd`` extension point
  (``LpPool2d``'s own path, ``LpWindow`` run by the window driver);
* the same strategies on the generic path (``use_fast_path = False``):
  compiled gather and scatter, their ``pool``/``route`` in NumPy;
* the pure-Python Lp strategy written from scratch in
  ``docs/writing_a_strategy.md``;
* the other new strategies.

Run:  python benchmarks/strategy_cost.py [--shape 64 32 32 32] [--repeat 15]
(``OMP_NUM_THREADS`` is set to 1 unless you set it.)
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before the OpenMP runtime starts

import numpy as np  # noqa: E402

import cnnpool as cp  # noqa: E402
from cnnpool import _parallel  # noqa: E402


class ScratchLp(cp.Pool2d):
    """The guide's from-scratch Lp strategy (pure NumPy, no padding)."""

    def __init__(self, norm, kernel_size, stride=None):
        super().__init__(kernel_size, stride)
        self.norm = norm

    def pool(self, windows):
        return np.sum(np.abs(windows) ** self.norm, axis=-1) ** (1.0 / self.norm)

    def route(self, windows, pooled):
        p = self.norm
        with np.errstate(divide="ignore", invalid="ignore"):
            local = np.sign(windows) * np.abs(windows) ** (p - 1) / pooled[..., None] ** (p - 1)
        return np.where(pooled[..., None] > 0, local, 0)


def generic(layer):
    layer.use_fast_path = False
    return layer


def layers():
    return [
        ("MaxPool2d (compiled)", cp.MaxPool2d(2)),
        ("MeanPool2d (compiled)", cp.MeanPool2d(2)),
        ("LpPool2d p=2 (compiled via _strategy.pxd)", cp.LpPool2d(2, 2)),
        ("MaxPool2d (generic: NumPy pool/route)", generic(cp.MaxPool2d(2))),
        ("MeanPool2d (generic: NumPy pool/route)", generic(cp.MeanPool2d(2))),
        ("LpPool2d p=2 (generic: NumPy pool/route)", generic(cp.LpPool2d(2, 2))),
        ("Lp from scratch (the guide's pure-Python strategy)", ScratchLp(2.0, 2)),
        ("MixedPool2d (compiled max + mean, blended)", cp.MixedPool2d(2)),
        ("MixedPool2d (generic)", generic(cp.MixedPool2d(2))),
        ("GatedPool2d (generic)", cp.GatedPool2d(2)),
        ("StochasticPool2d, training (generic)", cp.StochasticPool2d(2, rng=0)),
        ("AdaptiveMaxPool2d to 16x16 (compiled)", cp.AdaptiveMaxPool2d(16)),
    ]


def time_layers(named, x, g, repeat, clock):
    """Per layer, the times of ``repeat`` forward + backward passes, interleaved.

    Every round times each layer once, in turn, so that a change in the
    machine's load reaches all of them alike.
    """
    for _, layer in named:
        layer.forward(x)
        layer.backward(g)  # warm-up: geometry caches, first-touch of buffers
    times = [[] for _ in named]
    for _ in range(repeat):
        for (_, layer), row in zip(named, times, strict=True):
            start = clock()
            layer.forward(x)
            layer.backward(g)
            row.append(clock() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[64, 32, 32, 32])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--wall",
        action="store_true",
        help="time by the wall clock instead of this process's CPU time "
        "(CPU time, the default, is robust to a busy machine when "
        "single-threaded)",
    )
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.wall else time.process_time
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal(args.shape)).astype(np.float32)  # post-ReLU-like
    g = rng.standard_normal(cp.MaxPool2d(2).output_shape(x.shape)).astype(np.float32)
    named = layers()
    times = time_layers(named, x, g, args.repeat, clock)
    medians = [float(np.median(t)) for t in times]
    print(
        f"forward + backward, x {tuple(args.shape)} float32, 2x2 stride 2, "
        f"{_parallel.max_threads()} thread(s), {args.repeat} interleaved rounds "
        f"({'wall' if args.wall else 'CPU'} time); "
        f"cnnpool {cp.__version__}, NumPy {np.__version__}, "
        f"{platform.processor() or platform.machine()}"
    )
    print()
    print("| strategy | median ms | min ms | x compiled MaxPool2d (median) |")
    print("|---|---:|---:|---:|")
    for (name, _), t, med in zip(named, times, medians, strict=True):
        print(f"| {name} | {1e3 * med:.2f} | {1e3 * min(t):.2f} | {med / medians[0]:.1f} |")


if __name__ == "__main__":
    main()
