"""What a pooling strategy costs next to the compiled built-ins.

Times one forward + backward pass of every strategy on the same input,
(64, 32, 32, 32) float32 by default, 2x2 windows with stride 2, on one
thread, and prints a Markdown table with each time as a multiple of the
compiled ``MaxPool2d``.  The rows:

* the compiled built-ins (``MaxPool2d``, ``MeanPool2d``);
* ``LpPool2d``'s compiled path (``LpWindow``'s arithmetic in loops that
  read the planes in place) and the same ``LpWindow`` run by the
  ``_strategy.pxd`` window driver, as a user's compiled strategy is;
* the same strategies on the generic path (``use_fast_path = False``):
  compiled gather and scatter, their ``pool``/``route`` in NumPy;
* the pure-Python Lp strategy written from scratch in
  ``docs/writing_a_strategy.md``;
* the other new strategies;
* the JIT tier (``JitPool2d``, with Numba): softmax pooling exactly as
  ``examples/custom_pooling.py`` writes it, the same softmax pooling in
  NumPy (the example before the JIT tier) and in PyTorch (``F.unfold`` +
  autograd, one thread), and an Lp p=2 written by a user on the JIT tier.

All layers are timed interleaved, one forward + backward each per round,
so that a busy machine slows them alike; the table gives the median and
the minimum over the rounds, and the ratio of medians to ``MaxPool2d``.

Run:  python benchmarks/strategy_cost.py [--shape 64 32 32 32] [--repeat 7] [--jit-only]
(``OMP_NUM_THREADS`` is set to 1 unless you set it.)
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before the OpenMP runtime starts

import numpy as np  # noqa: E402

import cnnpool as cp  # noqa: E402
from cnnpool import _parallel  # noqa: E402
from cnnpool.pooling.strategies._lp import LpWindow  # noqa: E402


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


class NumpySoftmax(cp.Pool2d):
    """Softmax pooling in NumPy: ``examples/custom_pooling.py`` before the JIT tier."""

    def __init__(self, kernel_size, stride=None, padding=0, beta=2.0):
        super().__init__(kernel_size, stride, padding)
        self.beta = float(beta)

    def _weights(self, windows):
        logits = np.where(self.geometry.inside, self.beta * windows, -np.inf)
        logits = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=-1, keepdims=True)

    def pool(self, windows):
        return np.sum(self._weights(windows) * windows, axis=-1)

    def route(self, windows, pooled):
        w = self._weights(windows)
        return w * (1.0 + self.beta * (windows - pooled[..., None]))


class JitL2(cp.JitPool2d):
    """Lp pooling with p = 2 as a user writes it on the JIT tier."""

    @staticmethod
    def window(values, params):
        s = 0.0
        for v in values:
            s += v * v
        return math.sqrt(s)

    @staticmethod
    def window_grad(values, pooled, params, grad):
        if pooled > 0:
            inv = 1.0 / pooled
            for i in range(len(values)):
                grad[i] = values[i] * inv


class TorchSoftmax:
    """The same softmax pooling in PyTorch: ``F.unfold`` + autograd (k x k, stride k)."""

    def __init__(self, kernel_size, beta=2.0):
        import torch

        torch.set_num_threads(1)
        self.torch, self.k, self.beta = torch, kernel_size, beta

    def forward(self, x):
        torch, k = self.torch, self.k
        n, c, h, w = x.shape
        self.x = torch.from_numpy(x).requires_grad_()
        cols = torch.nn.functional.unfold(self.x, k, stride=k).view(n, c, k * k, -1)
        weights = torch.softmax(self.beta * cols, dim=2)
        self.y = (weights * cols).sum(dim=2).view(n, c, h // k, w // k)
        return self.y.detach().numpy()

    def backward(self, g):
        self.y.backward(self.torch.from_numpy(g))
        return self.x.grad.numpy()


def example_softmax():
    """``SoftmaxPool2d`` from ``examples/custom_pooling.py``, loaded from its file."""
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "custom_pooling.py")
    spec = importlib.util.spec_from_file_location("custom_pooling", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SoftmaxPool2d


def jit_layers():
    rows = [
        ("MaxPool2d (compiled)", cp.MaxPool2d(2)),
        ("softmax pooling, JIT tier (examples/custom_pooling.py)", example_softmax()(2)),
        ("softmax pooling, NumPy pool/route", NumpySoftmax(2)),
    ]
    if importlib.util.find_spec("torch") is not None:
        rows.append(("softmax pooling, PyTorch F.unfold + autograd", TorchSoftmax(2)))
    rows.append(("Lp p=2 written by a user, JIT tier", JitL2(2)))
    return rows


def generic(layer):
    layer.use_fast_path = False
    return layer


def layers():
    return [
        ("MaxPool2d (compiled)", cp.MaxPool2d(2)),
        ("MeanPool2d (compiled)", cp.MeanPool2d(2)),
        ("LpPool2d p=2 (compiled, reads the planes in place)", cp.LpPool2d(2, 2)),
        (
            "CompiledPool2d(LpWindow(2)) (the _strategy.pxd window driver)",
            cp.CompiledPool2d(LpWindow(2.0), 2),
        ),
        ("MaxPool2d (generic: NumPy pool/route)", generic(cp.MaxPool2d(2))),
        ("MeanPool2d (generic: NumPy pool/route)", generic(cp.MeanPool2d(2))),
        ("LpPool2d p=2 (generic: NumPy pool/route)", generic(cp.LpPool2d(2, 2))),
        ("Lp from scratch (the guide's pure-Python strategy)", ScratchLp(2.0, 2)),
        ("MixedPool2d (compiled max + mean, blended)", cp.MixedPool2d(2)),
        ("MixedPool2d (generic)", generic(cp.MixedPool2d(2))),
        ("GatedPool2d (compiled max + mean, compiled gate)", cp.GatedPool2d(2)),
        ("GatedPool2d (generic)", generic(cp.GatedPool2d(2))),
        ("StochasticPool2d, training (compiled)", cp.StochasticPool2d(2, rng=0)),
        ("StochasticPool2d, training (generic)", generic(cp.StochasticPool2d(2, rng=0))),
        ("AdaptiveMaxPool2d to 16x16 (compiled)", cp.AdaptiveMaxPool2d(16)),
    ]


def time_layers(named, x, g, repeat, clock):
    """``{name: [seconds per round]}``, the layers interleaved round by round."""
    for _, layer in named:
        layer.forward(x)
        layer.backward(g)  # warm-up: compiles, geometry caches, first-touch of buffers
    times = {name: [] for name, _ in named}
    for _ in range(repeat):
        for name, layer in named:
            start = clock()
            layer.forward(x)
            layer.backward(g)
            times[name].append(clock() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[64, 32, 32, 32])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--wall",
        action="store_true",
        help="time by the wall clock instead of this process's CPU time "
        "(CPU time, the default, is robust to a busy machine when "
        "single-threaded)",
    )
    parser.add_argument(
        "--jit-only", action="store_true", help="only MaxPool2d and the JIT-tier rows"
    )
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.wall else time.process_time
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal(args.shape)).astype(np.float32)  # post-ReLU-like
    g = rng.standard_normal(cp.MaxPool2d(2).output_shape(x.shape)).astype(np.float32)
    named = jit_layers() if args.jit_only else layers() + jit_layers()[1:]
    times = time_layers(named, x, g, args.repeat, clock)
    base = float(np.median(times[named[0][0]]))
    print(
        f"forward + backward, x {tuple(args.shape)} float32, 2x2 stride 2, "
        f"{_parallel.max_threads()} thread(s), {args.repeat} interleaved rounds "
        f"({'wall' if args.wall else 'CPU'} time); "
        f"cnnpool {cp.__version__}, NumPy {np.__version__}, "
        f"{platform.processor() or platform.machine()}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print()
    print("| strategy | median ms | min ms | x compiled MaxPool2d |")
    print("|---|---:|---:|---:|")
    for name, _ in named:
        t = times[name]
        med = float(np.median(t))
        print(f"| {name} | {1e3 * med:.2f} | {1e3 * min(t):.2f} | {med / base:.1f} |")


if __name__ == "__main__":
    main()
