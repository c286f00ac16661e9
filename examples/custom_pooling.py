"""Write your own pooling strategy, check its gradient, and race it against max and mean.

Softmax pooling: each window's output is a weighted mean of its elements,
with weights ``softmax(beta * x)`` over the window.  ``beta = 0`` is mean
pooling; as ``beta`` grows it becomes max pooling.  Its gradient sits
between the two: most of it goes to the largest elements, some to all.

A strategy is two NumPy functions over windows shaped ``(N, C, OH, OW, K)``:

* ``pool(windows)``: the pooled value of each window, ``(N, C, OH, OW)``;
* ``route(windows, pooled)``: ``d pooled / d window element``, ``(N, C, OH, OW, K)``.

``cnnpool.Pool2d`` does the rest (geometry, windowing, the backward scatter).

Run:  python examples/custom_pooling.py [--seeds 6] [--epochs 4] [--out results_custom]

The comparison at the end is ``cnnpool-compare`` with the strategy named by
file and class; from a shell the same is

    cnnpool-compare --pool max --pool mean --pool examples/custom_pooling.py:SoftmaxPool2d
"""

import argparse
import os
import sys

import numpy as np

import cnnpool as cp


class SoftmaxPool2d(cp.Pool2d):
    """Softmax-weighted pooling: ``sum(softmax(beta * w) * w)`` over each window ``w``."""

    strategy_name = "softmax"  # the name cnnpool-compare shows in its tables
    pad_value = 0.0

    def __init__(self, kernel_size, stride=None, padding=0, beta=2.0):
        super().__init__(kernel_size, stride, padding)
        self.beta = float(beta)

    def _weights(self, windows):
        inside = self.geometry.inside  # (OH, OW, K): True where a tap hits the input
        logits = np.where(inside, self.beta * windows, -np.inf)
        logits = logits - logits.max(axis=-1, keepdims=True)  # stable softmax
        e = np.exp(logits)
        return e / e.sum(axis=-1, keepdims=True)

    def pool(self, windows):
        return np.sum(self._weights(windows) * windows, axis=-1)

    def route(self, windows, pooled):
        # d/dx_j sum_i w_i x_i = w_j * (1 + beta * (x_j - pooled))
        w = self._weights(windows)
        return w * (1.0 + self.beta * (windows - pooled[..., None]))

    def extra_repr(self):
        return super().extra_repr() + f", beta={self.beta:g}"


def check():
    """Forward on a tiny example, limits beta -> 0 and beta -> inf, and gradcheck."""
    x = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    print("input 4x4:\n", x[0, 0])
    for beta in (0.0, 2.0, 50.0):
        print(f"softmax pooling 2x2, beta={beta:g}:\n", SoftmaxPool2d(2, beta=beta)(x)[0, 0])
    print("max pooling 2x2:\n", cp.MaxPool2d(2)(x)[0, 0])
    print("mean pooling 2x2:\n", cp.MeanPool2d(2)(x)[0, 0])

    pool = SoftmaxPool2d(2, beta=2.0)
    y = pool(x)
    g = pool.backward(np.ones_like(y))[0, 0]
    print("gradient of sum(output) w.r.t. the input (between max's 0/1 and mean's 1/4):")
    print(np.round(g, 3))

    rng = np.random.default_rng(0)
    worst = 0.0
    for kwargs in (
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=3, stride=1, beta=0.5),
    ):
        err = cp.gradcheck(SoftmaxPool2d(**kwargs), rng.standard_normal((2, 3, 7, 7)))
        print(f"gradcheck SoftmaxPool2d({kwargs}): worst relative error {err:.1e}")
        worst = max(worst, err)
    if worst > 1e-6:
        raise SystemExit(f"gradient check FAILED ({worst:.1e})")
    print("gradient check passed\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="6", help="seeds for the comparison (default 6)")
    parser.add_argument("--epochs", default="4", help="epochs per run (default 4)")
    parser.add_argument("--dataset", default="textures", choices=("faces", "textures"))
    parser.add_argument("--out", default="results_custom", help="output directory")
    parser.add_argument("--jobs", default=None, help="seeds in parallel (default: all cores)")
    args = parser.parse_args(argv)

    check()

    from cnnpool.experiments.cli import main as compare

    spec = f"{os.path.abspath(__file__)}:SoftmaxPool2d"
    cli_args = [
        "--dataset",
        args.dataset,
        "--seeds",
        args.seeds,
        "--epochs",
        args.epochs,
        "--out",
        args.out,
        "--pool",
        "max",
        "--pool",
        "mean",
        "--pool",
        spec,
    ]
    if args.jobs:
        cli_args += ["--jobs", args.jobs]
    print("cnnpool-compare " + " ".join(cli_args) + "\n")
    return compare(cli_args)


if __name__ == "__main__":
    sys.exit(main())
