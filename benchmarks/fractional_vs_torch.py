"""FractionalMaxPool2d against PyTorch's CPU kernel, one thread, interleaved.

Both run with the same ``_random_samples`` (so the same windows), in turn,
round after round in one process; the table gives per-thread CPU times
(``time.thread_time``: meaningful on a loaded machine, where wall times are
not), medians and minimums, and PyTorch's median over ours.  MaxPool2d 2x2
on the same input is listed for scale.

    OMP_NUM_THREADS=1 python benchmarks/fractional_vs_torch.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import cnnpool as cp  # noqa: E402

WORKLOADS = [
    # (label, shape, kernel, output_ratio, dtype)
    ("W1, k=2, ratio 1/2", (64, 32, 32, 32), 2, 0.5, np.float32),
    ("W1, k=2, ratio 1/sqrt(2)", (64, 32, 32, 32), 2, 0.7071, np.float32),
    ("W1, k=3, ratio 1/sqrt(2)", (64, 32, 32, 32), 3, 0.7071, np.float32),
    ("W1 float64, k=2, ratio 1/sqrt(2)", (64, 32, 32, 32), 2, 0.7071, np.float64),
    ("(8, 32, 128, 128), k=3, ratio 1/sqrt(2)", (8, 32, 128, 128), 3, 0.7071, np.float32),
]


def _cases(shape, kernel, ratio, dtype):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    samples = rng.random(shape[:2] + (2,)).astype(dtype)
    ours = cp.FractionalMaxPool2d(kernel, output_ratio=ratio, samples=samples)
    y = ours(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    xt = torch.from_numpy(x).requires_grad_(True)
    st, gt = torch.from_numpy(samples), torch.from_numpy(g)

    def torch_forward():
        with torch.no_grad():
            F.fractional_max_pool2d(xt, kernel, output_ratio=(ratio, ratio), _random_samples=st)

    def torch_both():
        xt.grad = None
        out = F.fractional_max_pool2d(xt, kernel, output_ratio=(ratio, ratio), _random_samples=st)
        out.backward(gt)

    def ours_both():
        ours(x)
        ours.backward(g)

    maxpool = cp.MaxPool2d(2)
    gm = np.ones(maxpool.output_shape(shape), dtype)

    def max_both():
        maxpool(x)
        maxpool.backward(gm)

    return {
        "ours forward": lambda: ours(x),
        "torch forward": torch_forward,
        "ours forward+backward": ours_both,
        "torch forward+backward": torch_both,
        "MaxPool2d 2x2 forward+backward": max_both,
    }


def _cell(med, low, name):
    return f"{med[name]:.2f} ({low[name]:.2f})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    cp.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.1f}, {args.rounds} interleaved rounds, one thread")
    print()
    print(
        "| workload | ours fwd ms (min) | torch fwd ms (min) | torch / ours fwd "
        "| ours fwd+bwd ms (min) | torch fwd+bwd ms (min) | torch / ours fwd+bwd "
        "| MaxPool2d 2x2 fwd+bwd ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, shape, kernel, ratio, dtype in WORKLOADS:
        cases = _cases(shape, kernel, ratio, dtype)
        times = {name: [] for name in cases}
        for fn in cases.values():
            fn()  # warm up
        for _ in range(args.rounds):
            for name, fn in cases.items():
                start = time.thread_time()
                fn()
                times[name].append((time.thread_time() - start) * 1e3)
        med = {k: float(np.median(v)) for k, v in times.items()}
        low = {k: float(np.min(v)) for k, v in times.items()}

        print(
            f"| {label} | {_cell(med, low, 'ours forward')} | {_cell(med, low, 'torch forward')} | "
            f"{med['torch forward'] / med['ours forward']:.1f}x | "
            f"{_cell(med, low, 'ours forward+backward')} | "
            f"{_cell(med, low, 'torch forward+backward')} | "
            f"{med['torch forward+backward'] / med['ours forward+backward']:.1f}x | "
            f"{med['MaxPool2d 2x2 forward+backward']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
