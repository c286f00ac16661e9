"""How long a JIT strategy takes on first use, and in the next process.

Runs the softmax pooling of ``examples/custom_pooling.py`` (one forward and
one backward, float32, 2x2 windows) in two fresh processes that share an
empty Numba cache directory: the first imports Numba and compiles the
kernels, the second loads them from the disk cache.  Prints, for each, the
time from before the first forward to after the first backward (Numba's
import included) and the whole process's wall time.

Run:  python benchmarks/jit_compile_time.py [--dtype float32]
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
y = layer(x)
layer.backward(np.ones_like(y))
t2 = time.perf_counter()
print(json.dumps({{"first_call": t2 - t1, "imports": t1 - t0}}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args(argv)
    example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")
    code = textwrap.dedent(
        CHILD.format(example=os.path.join(example, "custom_pooling.py"), dtype=args.dtype)
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("first process (compiles)", "second process (disk cache)"):
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
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
