"""Write your own pooling strategy, check its gradient, and race it against max and mean.

Softmax pooling: each window's output is a weighted mean of its elements,
with weights ``softmax(beta * x)`` over the window.  ``beta = 0`` is mean
pooling; as ``beta`` grows it becomes max pooling.  Its gradient sits
between the two: most of it goes to the largest elements, some to all.

A strategy on the JIT tier is two functions of one window, in plain Python:

* ``window(values, params)``: the pooled value of one window, a float;
  ``values`` holds the window's taps that fall inside the input, ``(n,)``;
* ``window_grad(values, pooled, params, grad)``: ``d pooled / d values[i]``
  written into ``grad[i]``.

``params`` holds the attributes named in ``window_params`` (here ``beta``).
``cnnpool.JitPool2d`` compiles both with Numba (``pip install
"cnnpool[jit]"``) into kernels over whole batches, and does the rest
(geometry, threads, the backward scatter).  Without Numba the same code runs
in plain Python, slowly.

Run:  python examples/custom_pooling.py [--seeds 6] [--epochs 4] [--out results_custom]

The comparison at the end is ``cnnpool-compare`` with the strategy named by
file and class; from a shell the same is

    cnnpool-compare --pool max --pool mean --pool examples/custom_pooling.py:SoftmaxPool2d
"""

import argparse
import math
import os
import sys

import numpy as np

import cnnpool as cp


class SoftmaxPool2d(cp.JitPool2d):
    """Softmax-weighted pooling: ``sum(softmax(beta * w) * w)`` over each window ``w``."""

    strategy_name = "softmax"  # the name cnnpool-compare shows in its tables
    window_params = ("beta",)  # what reaches window/window_grad as params[0]

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, beta=2.0):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.beta = float(beta)

    @staticmethod
    def window(values, params):
        beta = params[0]
        top = beta * values[0]  # the largest logit, for a stable softmax
        for v in values:
            top = max(top, beta * v)
        num = den = 0.0
        for v in values:
            e = math.exp(beta * v - top)
            num += e * v
            den += e
        return num / den

    @staticmethod
    def window_grad(values, pooled, params, grad):
        # d/dx_j sum_i w_i x_i = w_j * (1 + beta * (x_j - pooled))
        beta = params[0]
        top = beta * values[0]
        for v in values:
            top = max(top, beta * v)
        den = 0.0
        for j in range(len(values)):
            grad[j] = math.exp(beta * values[j] - top)  # the weights, not yet normalised
            den += grad[j]
        for j in range(len(values)):
            grad[j] = grad[j] / den * (1.0 + beta * (values[j] - pooled))


def check():
    """Forward on a tiny example, limits beta -> 0 and beta -> inf, and gradcheck."""
    x = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    print("input 4x4:\n", x[0, 0])
    for beta in (0.0, 2.0, 50.0):
        print(f"softmax pooling 2x2, beta={beta:g}:\n", SoftmaxPool2d(2, beta=beta)(x)[0, 0])
    print("max pooling 2x2:\n", cp.MaxPool2d(2)(x)[0, 0])
    print("mean pooling 2x2:\n", cp.MeanPool2d(2)(x)[0, 0])
    if not np.allclose(SoftmaxPool2d(2, beta=0.0)(x), cp.MeanPool2d(2)(x), rtol=1e-12):
        raise SystemExit("beta -> 0 should be mean pooling")
    if not np.allclose(SoftmaxPool2d(2, beta=50.0)(x), cp.MaxPool2d(2)(x), rtol=1e-12):
        raise SystemExit("beta -> inf should be max pooling")

    pool = SoftmaxPool2d(2, beta=2.0)
    y = pool(x)
    reference = SoftmaxPool2d(2, beta=2.0)
    reference.use_fast_path = False  # the same functions, in plain Python per window
    if not np.allclose(y, reference(x), rtol=1e-12):
        raise SystemExit("the compiled kernel and the plain-Python reference disagree")
    g = pool.backward(np.ones_like(y))[0, 0]
    print("gradient of sum(output) w.r.t. the input (between max's 0/1 and mean's 1/4):")
    print(np.round(g, 3))

    rng = np.random.default_rng(0)
    worst = 0.0
    for kwargs in (
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=3, stride=1, beta=0.5),
        dict(kernel_size=3, stride=2, dilation=2, ceil_mode=True, beta=-1.0),
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
