"""Smoke test of an installed cnnpool, run by .ci/run from outside the source tree.

Imports the installed package (never a source checkout), prints its build
and the CPU variant each kernel module runs (an x86-64 wheel must be the
dispatched build and load the best level the CPU supports, or the one
CNNPOOL_CPU asks for), pools, backpropagates and checks the numbers by hand,
and checks what a typed, compiled install carries.
"""

import os
import platform
from pathlib import Path

import numpy as np

import cnnpool as cp

here = Path(cp.__file__).parent
assert "site-packages" in here.parts, f"imported from {here}, not from an installed copy"

from cnnpool import _cpu, _dispatch  # noqa: E402

cp.show_config()
report = cp.show_config("dicts")
if platform.machine().lower() in ("x86_64", "amd64"):
    assert report["build"]["mode"] == "dispatch", report["build"]
    supported = _dispatch.supported_levels(_cpu.x86_features())
    expected = os.environ.get(_dispatch.ENV) or supported[-1]
    kernels = report["modules"].get("cnnpool.pooling._ext._kernels")
    assert kernels is not None and kernels["level"] == expected, (expected, kernels)
    assert {m["level"] for m in report["modules"].values()} == {expected}, report["modules"]
    if expected != "baseline":
        assert Path(kernels["file"]).parent.name == f"_{expected}", kernels["file"]

x = np.arange(16.0, dtype=np.float32).reshape(1, 1, 4, 4)
pool = cp.MaxPool2d(2)
y = pool(x)
assert y.dtype == np.float32 and y.tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]], y
gx = pool.backward(np.ones_like(y))
assert gx.shape == x.shape and gx.sum() == 4 and gx[0, 0, 1, 1] == 1 and gx[0, 0, 0, 0] == 0
assert pool.indices.tolist() == [[[[5, 7], [13, 15]]]]

mean = cp.MeanPool2d(2)
assert mean(x).tolist() == [[[[2.5, 4.5], [10.5, 12.5]]]]
assert np.all(mean.backward(np.ones((1, 1, 2, 2), np.float32)) == 0.25)

rng = np.random.default_rng(0)
assert cp.gradcheck(cp.MaxPool2d(3, stride=2, padding=1), rng.standard_normal((2, 2, 7, 7))) < 1e-8
assert cp.gradcheck(cp.MeanPool2d(3, stride=2, padding=1), rng.standard_normal((2, 2, 7, 7))) < 1e-8

assert (here / "py.typed").is_file() and (here / "_parallel.pyi").is_file()
assert not list(here.rglob("*.pyx")) and not list(here.rglob("*.c"))
level = report["cpu"]["level"]
print(f"smoke test passed: cnnpool {cp.__version__} from {here} (CPU level {level})")
