"""Threads: the GIL is released, layers run concurrently, OpenMP never changes a bit.

* Every compiled kernel releases the GIL: while one runs in a worker
  thread, pure-Python code in the main thread keeps running.
* Several Python threads, each with its own layers, get exactly the
  answers of a single-threaded run.
* Forward and backward outputs (and parameter gradients) are bit-identical
  for ``OMP_NUM_THREADS`` 1, 2 and 3 on inputs large enough to go parallel
  (above ``cnnpool._parallel.PARALLEL_THRESHOLD``).

Each check runs in a fresh interpreter: the thread count is fixed when
OpenMP starts, and a crash fails one test instead of the whole run.
What is and is not thread-safe on one layer instance: README, "Thread
safety", and the ``Pool2d`` docstring.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from cnnpool import _parallel

HERE = os.path.dirname(os.path.abspath(__file__))


def run(body, omp_threads):
    code = f"import sys\nsys.path.insert(0, {HERE!r})\n" + textwrap.dedent(body)
    env = dict(os.environ, OMP_NUM_THREADS=str(omp_threads))
    # cwd: from the repository root, "python -c" would import the unbuilt source folder
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, cwd=HERE
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    for marker in ("ERROR: AddressSanitizer", "runtime error:"):
        assert marker not in proc.stderr, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Forward and backward of every layer in the zoo on a batch big enough for
# OpenMP: (8, 4, 48, 48) is 73,728 elements, above PARALLEL_THRESHOLD.
DIGESTS = """
    import hashlib, json
    import numpy as np
    import zoo
    from cnnpool import _parallel

    out = {"max_threads": _parallel.max_threads(),
           "threads_used": _parallel.threads_for(32, 8 * 4 * 48 * 48)}
    for dtype in (np.float32, np.float64):
        for name, make, kind in zoo.layers(dtype):
            rng = np.random.default_rng(7)
            x = zoo.make_input(kind, rng, dtype, 8, 48)
            layer = make()
            y = layer(x)
            g = rng.standard_normal(y.shape).astype(dtype)
            gx = layer.backward(g)
            digest = hashlib.sha256()
            for a in (y, gx, *[p.grad for p in layer.parameters()]):
                digest.update(np.ascontiguousarray(a).tobytes())
            out[f"{name}/{np.dtype(dtype).name}"] = digest.hexdigest()
    print(json.dumps(out))
"""


@pytest.mark.skipif(not _parallel.openmp_enabled(), reason="built without OpenMP")
def test_results_are_bit_identical_for_1_2_and_3_openmp_threads():
    runs = {n: run(DIGESTS, n) for n in (1, 2, 3)}
    assert runs[1]["threads_used"] == 1
    assert runs[2]["threads_used"] == 2 and runs[3]["threads_used"] == 3  # really parallel
    names = [k for k in runs[1] if "/" in k]
    assert len(names) >= 24
    for n in (2, 3):
        differ = [k for k in names if runs[n][k] != runs[1][k]]
        assert not differ, f"OMP_NUM_THREADS={n} changes the bits of {differ}"


CONCURRENT = """
    import json, threading
    import numpy as np
    import zoo

    def answer(make, x, g):
        layer = make()
        y = layer(x)
        gx = layer.backward(g)
        return [y, gx] + [p.grad.copy() for p in layer.parameters()]

    jobs = []
    for dtype in (np.float32, np.float64):
        for name, make, kind in zoo.layers(dtype):
            rng = np.random.default_rng(len(jobs))
            x = zoo.make_input(kind, rng, dtype, 4, 40)
            g = rng.standard_normal(make()(x).shape).astype(dtype)
            jobs.append((f"{name}/{np.dtype(dtype).name}", make, x, g, answer(make, x, g)))

    failures, errors = [], []

    def worker(mine):
        try:
            for _ in range(4):
                for name, make, x, g, expected in mine:
                    got = answer(make, x, g)
                    if any(a.tobytes() != b.tobytes() for a, b in zip(got, expected)):
                        failures.append(name)
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    # Four threads, each with a different slice of the layers, all at once.
    threads = [threading.Thread(target=worker, args=(jobs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"jobs": len(jobs), "failures": sorted(set(failures)),
                      "errors": errors}))
"""


@pytest.mark.parametrize("omp_threads", [1, 2])
def test_threads_running_different_layers_get_the_single_threaded_answers(omp_threads):
    result = run(CONCURRENT, omp_threads)
    assert result["errors"] == [] and result["failures"] == []
    assert result["jobs"] >= 48


GIL = """
    import json, math, sys, threading, time
    import numpy as np
    import cnnpool as cp

    sys.setswitchinterval(1e-4)

    def stall(call):
        # The longest stretch of the call during which the main thread ran
        # no Python at all, as a fraction of the call: ~1 if the GIL is held.
        state = {}

        def worker():
            state["start"] = time.perf_counter()
            call()
            state["end"] = time.perf_counter()

        thread = threading.Thread(target=worker)
        gaps = []
        last = time.perf_counter()
        thread.start()
        while thread.is_alive():
            now = time.perf_counter()
            if now - last > 1e-3:
                gaps.append((last, now))
            last = now
        thread.join()
        start, end = state["start"], state["end"]
        longest = max([min(b, end) - max(a, start) for a, b in gaps] + [0.0])
        return longest / (end - start), end - start

    def forward_and_backward(layer, x):
        y = layer(x)
        return (lambda: layer(x)), (lambda: layer.backward(y))

    def kernels(batch, names=None):
        # Only what ``names`` asks for is built: a scaled batch is large.
        def wanted(*asked):
            return names is None or any(name in names for name in asked)

        x = np.random.default_rng(0).standard_normal((batch, 16, 160, 160))
        x32 = x.astype(np.float32)
        layers = (
            ("max", cp.MaxPool2d(3, 1, 1), x),
            ("mean", cp.MeanPool2d(3, 1, 1), x),
            # Lp is slower: a quarter of the input is plenty
            ("lp", cp.pooling.LpPool2d(2, 3, 1), x32[:, :4]),
            ("adaptive max", cp.pooling.AdaptiveMaxPool2d((70, 70)), x),
        )
        for label, layer, inp in layers:
            if wanted(f"{label} forward", f"{label} backward"):
                forward, backward = forward_and_backward(layer, inp)
                yield f"{label} forward", forward
                yield f"{label} backward", backward
        if wanted("gather", "scatter"):
            maxp = cp.MaxPool2d(3, 1, 1)
            geom = maxp.geometry_for(160, 160)
            windows = maxp.gather_windows(x32, geom)
            yield "gather", lambda: maxp.gather_windows(x32, geom)
            yield "scatter", lambda: maxp.scatter_windows(windows, x32.shape, geom)
            del windows
        if wanted("im2col", "col2im"):
            from cnnpool.conv import _im2col
            cols = np.empty((batch, 16 * 9, 160 * 160), np.float32)
            args = (3, 3, 1, 1, 1, 1, 1, 1, 160, 160, 1)
            yield "im2col", lambda: _im2col.im2col(x32, cols, *args)
            grad = np.zeros_like(x32)
            yield "col2im", lambda: _im2col.col2im(cols, grad, *args)
            del cols
        if names is None:
            yield from CONTROLS

    CONTROLS = []
    if "--controls" in sys.argv:
        import ctypes
        held = ctypes.PyDLL(None).usleep  # a C call that keeps the GIL
        CONTROLS = [("control: usleep holding the GIL", lambda: held(200000))]

    def measure(batch, names=None):
        found = {}
        for name, call in kernels(batch, names):
            if names is None or name in names:
                call()  # warm up (allocations, caches)
                runs = [stall(call) for _ in range(3)]
                # The smallest stall share, and the shortest call (a lower bound)
                found[name] = (min(s for s, _ in runs), min(d for _, d in runs))
        return found

    # A call must last well beyond the 1 ms gap resolution, or scheduler noise
    # on the main thread could pass for a held GIL: a kernel faster than
    # 20 ms on 8 images is measured again on a batch scaled to take ~20 ms.
    def scale_for(duration):
        return min(8, math.ceil(0.02 / duration))

    out = measure(8)
    short = {name: d for name, (s, d) in out.items() if d < 0.02}
    for scale in sorted({scale_for(d) for d in short.values()}):
        names = {n for n, d in short.items() if scale_for(d) == scale}
        out.update(measure(8 * scale, names))
    print(json.dumps(out))
"""


def test_compiled_kernels_release_the_gil():
    """While a kernel runs, another Python thread keeps running.

    If a kernel held the GIL, the main thread could not run a single
    bytecode until it returned: its longest stall would be ~100% of the
    call (0.99 measured for a C call that keeps the GIL, ``--controls``).
    """
    stalls = run(GIL, 1)
    assert len(stalls) >= 8
    held = {name: s for name, (s, duration) in stalls.items() if s > 0.5}
    assert not held, f"GIL held (longest stall as a share of the call, seconds): {stalls}"
    # Long enough to tell (gaps are seen at 1 ms resolution): fast kernels
    # ran on a batch scaled up to ~20 ms (up to 64 images).
    assert min(duration for _, duration in stalls.values()) > 0.005
