#!/usr/bin/env python
"""What the private input copies of ``Linear`` and the 1x1 ``Conv2d`` cost.

Those layers keep their own copy of a caller's input for the backward pass
(``cnnpool._checks.owned``), so that editing ``x`` after the forward pass
cannot change the gradients.  This times, on one thread, interleaved in one
process (A B B A ...), each workload with the copy and with it switched off
(``owned`` replaced by the identity, the earlier behaviour), and prints the
medians, the minimums and their ratios as a Markdown table:

* TS: one training step of the comparison CNN (``bench_layers.py``'s TS);
* Linear(1024, 3) forward+backward on a batch of 16: the layer alone, where
  the copy weighs most (its GEMM is small next to the copied input);
* Conv2d(16, 32, 1) forward+backward on (16, 16, 32, 32): the 1x1 path.

Run from the repository root:  python benchmarks/input_copy_cost.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy and the OpenMP runtime start

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from bench_layers import cnnpool_train_step, interleaved  # noqa: E402

import cnnpool as cp  # noqa: E402
from cnnpool import _checks  # noqa: E402

_OWNED = _checks.owned


def _no_copy(x, given, buffers=None):
    return x


def _layer_step(layer, x):
    y = layer(x)
    g = np.ones_like(y)

    def step():
        layer.forward(x)
        layer.backward(g)

    return step


def _with(step, copy):
    def run():
        _checks.owned = _OWNED if copy else _no_copy
        step()

    return run


def main():
    rng = np.random.default_rng(0)
    workloads = {
        "TS training step": lambda: cnnpool_train_step(cp),
        "Linear(1024, 3), batch 16": lambda: _layer_step(
            cp.Linear(1024, 3, rng=0), rng.standard_normal((16, 1024)).astype(np.float32)
        ),
        "Conv2d(16, 32, 1), (16, 16, 32, 32)": lambda: _layer_step(
            cp.Conv2d(16, 32, 1, rng=0), rng.standard_normal((16, 16, 32, 32)).astype(np.float32)
        ),
    }
    print("| workload | copy: median (min), us | no copy: median (min), us | ratio median (min) |")
    print("|---|---|---|---|")
    for name, make in workloads.items():
        times = interleaved({"copy": _with(make(), True), "alias": _with(make(), False)}, 300)
        (cmin, cmed, _), (amin, amed, _) = times["copy"], times["alias"]
        print(
            f"| {name} | {cmed * 1e6:.1f} ({cmin * 1e6:.1f}) | {amed * 1e6:.1f} "
            f"({amin * 1e6:.1f}) | {cmed / amed:.3f} ({cmin / amin:.3f}) |"
        )
    _checks.owned = _OWNED


if __name__ == "__main__":
    main()
