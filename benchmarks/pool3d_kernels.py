#!/usr/bin/env python
"""3-D and 1-D pooling: cnnpool's compiled kernels against PyTorch, one thread.

Times forward+backward (and the inference forward) of max and mean
pooling on issue 17's shapes, cnnpool and PyTorch interleaved in one
process (A B B A ...), and prints the medians, the minimums and the
ratios torch / cnnpool as Markdown, with the machine's load before and
after (the machine is shared: read ratios, not absolute times):

* 3-D on (8, 16, 16, 32, 32) float32: ``max_pool3d``/``avg_pool3d`` with
  kernel 2 stride 2, kernel 3 stride 2 padding 1, kernel 3 stride 1
  padding 1 (target: max forward+backward at least 3x faster);
* 1-D on (64, 32, 4096) float32: ``max_pool1d``/``avg_pool1d`` with kernel
  2 stride 2, kernel 3 stride 2 padding 1, kernel 4 stride 4 (target:
  max at least 3x); also max 1-D run through the 2-D kernels as
  (N, C, 1, L) (``MaxPool2d((1, k))``), the route 1-D would take without
  the 1-D kernels.

cnnpool is timed at the kernel level (``cnnpool.pooling._ext._pool3d``),
with output buffers reused from call to call as the layers reuse theirs;
PyTorch through ``torch.nn.functional`` and autograd, as a user calls it.

Run from the repository root:  python benchmarks/pool3d_kernels.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy and the OpenMP runtime start

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from layerbench.harness import interleaved  # noqa: E402

import cnnpool as cp  # noqa: E402
from cnnpool.pooling._ext import _pool3d  # noqa: E402
from cnnpool.pooling.geometry import axis_taps, output_size  # noqa: E402


def _ranges(size, k, s, p):
    out = output_size(size, k, s, p, 1, False)
    taps = axis_taps(size, out, k, s, p, 1)
    return np.ascontiguousarray(taps.positions[:, 0]), taps.lo, taps.hi


def _divisor(axes):
    """count_include_pad=False divisors: the windows' input taps (outer product per axis)."""
    counts = [np.asarray(r[2] - r[1], dtype=np.float64) for r in axes]  # taps inside
    div = counts[0]
    for c in counts[1:]:
        div = np.multiply.outer(div, c)
    return div


def _pool3d_passes(torch, x, k, s, p):
    """{pass: {competitor: fn}} for 3-D max and mean on x (N, C, D, H, W)."""
    F = torch.nn.functional
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    planes = x.reshape((n * c,) + spatial)
    axes = [_ranges(size, k, s, p) for size in spatial]
    y, am = _pool3d.max_forward_3d(planes, *axes, (1, 1, 1))
    y_buf, am_buf, gx_buf = np.empty_like(y), np.empty_like(am), np.empty_like(planes)
    g = np.ones_like(y)
    tx = torch.from_numpy(x).requires_grad_()
    tg = torch.ones((n, c) + y.shape[1:])
    div = _divisor(axes)  # torch's below: count_include_pad=False

    def ours_max():
        _pool3d.max_forward_3d(planes, *axes, (1, 1, 1), out=y_buf, argmax=am_buf)
        _pool3d.max_backward_3d(g, am_buf, spatial, out=gx_buf)

    def ours_max_infer():
        _pool3d.max_forward_3d(planes, *axes, (1, 1, 1), out=y_buf, indices=False)

    def ours_mean():
        _pool3d.mean_forward_3d(planes, *axes, (1, 1, 1), div, out=y_buf)
        _pool3d.mean_backward_3d(g, spatial, *axes, (1, 1, 1), div, out=gx_buf)

    def torch_max():
        F.max_pool3d(tx, k, s, p).backward(tg)
        tx.grad = None

    def torch_max_infer():
        with torch.no_grad():
            F.max_pool3d(tx, k, s, p)

    def torch_mean():
        F.avg_pool3d(tx, k, s, p, count_include_pad=False).backward(tg)
        tx.grad = None

    return {
        "max fwd+bwd": {"cnnpool": ours_max, "torch": torch_max},
        "max fwd (inference)": {"cnnpool": ours_max_infer, "torch": torch_max_infer},
        "mean fwd+bwd": {"cnnpool": ours_mean, "torch": torch_mean},
    }


def _pool1d_passes(torch, x, k, s, p):
    F = torch.nn.functional
    n, c, length = x.shape
    signals = x.reshape(n * c, length)
    axis = _ranges(length, k, s, p)
    y, am = _pool3d.max_forward_1d(signals, axis, 1)
    y_buf, am_buf, gx_buf = np.empty_like(y), np.empty_like(am), np.empty_like(signals)
    g = np.ones_like(y)
    tx = torch.from_numpy(x).requires_grad_()
    tg = torch.ones((n, c, y.shape[1]))
    div = np.asarray(axis[2] - axis[1], dtype=np.float64)
    layer2d = cp.MaxPool2d((1, k), stride=(1, s), padding=(0, p))
    x4 = x.reshape(n, c, 1, length)
    g4 = np.ones((n, c, 1, y.shape[1]), np.float32)

    def ours_max():
        _pool3d.max_forward_1d(signals, axis, 1, out=y_buf, argmax=am_buf)
        _pool3d.max_backward_1d(g, am_buf, length, out=gx_buf)

    def ours_max_2d():
        layer2d.forward(x4)
        layer2d.backward(g4)

    def ours_mean():
        _pool3d.mean_forward_1d(signals, axis, 1, div, out=y_buf)
        _pool3d.mean_backward_1d(g, length, axis, 1, div, out=gx_buf)

    def torch_max():
        F.max_pool1d(tx, k, s, p).backward(tg)
        tx.grad = None

    def torch_mean():
        F.avg_pool1d(tx, k, s, p, count_include_pad=False).backward(tg)
        tx.grad = None

    return {
        "max fwd+bwd": {"cnnpool": ours_max, "torch": torch_max, "2-D kernels": ours_max_2d},
        "mean fwd+bwd": {"cnnpool": ours_mean, "torch": torch_mean},
    }


def _load():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=21, help="rounds per pass (default 21)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    cp.set_num_threads(1)
    rng = np.random.default_rng(0)
    x3 = rng.standard_normal((8, 16, 16, 32, 32)).astype(np.float32)
    x1 = rng.standard_normal((64, 32, 4096)).astype(np.float32)
    geometries = [(2, 2, 0), (3, 2, 1), (3, 1, 1)]
    workloads = [
        (f"3-D (8,16,16,32,32) k{k} s{s} p{p}", _pool3d_passes(torch, x3, k, s, p))
        for k, s, p in geometries
    ]
    workloads += [
        (f"1-D (64,32,4096) k{k} s{s} p{p}", _pool1d_passes(torch, x1, k, s, p))
        for k, s, p in [(2, 2, 0), (3, 2, 1), (4, 4, 0)]
    ]
    print(f"load before: {_load()}\n")
    print(
        "| workload | pass | cnnpool median (min), ms | torch median (min), ms "
        "| torch / cnnpool, median (min) |"
    )
    print("|---|---|---|---|---|")
    for name, passes in workloads:
        for pass_name, competitors in passes.items():
            times = interleaved(competitors, args.repeats)
            tmin, tmed, _ = times["torch"]
            for who in [c for c in competitors if c != "torch"]:
                omin, omed, _ = times[who]
                label = pass_name if who == "cnnpool" else f"{pass_name}, {who}"
                ours = f"{omed * 1e3:.2f} ({omin * 1e3:.2f})"
                theirs = f"{tmed * 1e3:.2f} ({tmin * 1e3:.2f})"
                ratio = f"{tmed / omed:.2f} ({tmin / omin:.2f})"
                print(f"| {name} | {label} | {ours} | {theirs} | {ratio} |", flush=True)
    print(f"\nload after: {_load()}")


if __name__ == "__main__":
    main()
