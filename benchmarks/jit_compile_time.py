"""How long a JIT strategy takes on first use, and in the next process.

Runs the softmax pooling of ``examples/custom_pooling.py`` (one forward and
one backward, float32, 2x2 windows) in two fresh processes that share an
empty Numba cache directory: the first imports Numba and compiles the
kernels, the second loads them from the disk cache.  Prints, for each, the
time from before the first forward to after the first backward (Numba's
import included) and the whole process's wall time.

The second process's time is then broken down: Numba's import, the
registries Numba loads before it can use any compiled function (its
``numba.np`` modules, whose BLAS check imports SciPy's ``linalg``), and the
rest of the first forward + backward (finding and loading the cached
kernels, cnnpool's own set-up, and running them).

Run:  python benchmarks/jit_compile_time.py [--dtype float32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

CHILD = """
import json, time
t0 = time.perf_counter()
import importlib.util
import numpy as np
import cnnpool as cp
spec = importlib.util.spec_from_file_location("custom_pooling", {example!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
x = np.random.default_rng(0).standard_normal((8, 4, 16, 16)).astype({dtype!r})
layer = module.SoftmaxPool2d(2)
t1 = time.perf_counter()
import numba
t2 = time.perf_counter()
from numba.core.registry import cpu_target
cpu_target.target_context.refresh()  # what the first cache load (or compile) does first
t3 = time.perf_counter()
y = layer(x)
layer.backward(np.ones_like(y))
t4 = time.perf_counter()
print(json.dumps({{"first_call": t4 - t1, "imports": t1 - t0, "numba_import": t2 - t1,
                  "registries": t3 - t2, "rest": t4 - t3}}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument(
        "--repeat", type=int, default=1, help="second processes to run (the times vary under load)"
    )
    args = parser.parse_args(argv)
    example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")
    code = textwrap.dedent(
        CHILD.format(example=os.path.join(example, "custom_pooling.py"), dtype=args.dtype)
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        labels = ["first process (compiles)"] + ["second process (disk cache)"] * args.repeat
        for label in labels:
            proc = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, env=env
            )
            if proc.returncode:
                raise SystemExit(proc.stderr)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{label}: first forward + backward {r['first_call']:.2f} s "
                f"(Numba import included; cnnpool import {r['imports']:.2f} s)"
            )
            print(
                f"    Numba import {r['numba_import']:.2f} s, Numba's registries "
                f"{r['registries']:.2f} s, kernels found, loaded and run {r['rest']:.2f} s"
            )
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
