"""No leaks: 10,000 forward/backward calls of each layer leave the memory flat.

Memory is the process's resident set (``/proc/self/statm``), so leaks in
compiled code count as well as Python objects.  After a warm-up (caches,
allocator arenas), 10,000 more calls may grow it by less than
``BOUND`` bytes.  The inputs are small, so that the loop is quick, but
not tiny: leaking one input- or output-sized array per call would grow
the process by more than ten times the bound.
"""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest
import zoo

import cnnpool as cp

CALLS = 10_000
WARMUP = 1_000
BOUND = 5 * 2**20  # bytes

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)"
)


def rss():
    """Resident set size of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def growth(step, calls=CALLS, warmup=WARMUP):
    for _ in range(warmup):
        step()
    gc.collect()
    before = rss()
    for _ in range(calls):
        step()
    gc.collect()
    return rss() - before


# The generic-path twins of max and mean run the same gather/scatter kernels as
# the NumPy strategies (gated, mixed) already here, at several times the cost.
LAYERS = [entry for entry in zoo.layers(np.float64) if not entry[0].endswith("-generic")]


@pytest.mark.parametrize(
    "make,kind", [(m, k) for _, m, k in LAYERS], ids=[name for name, _, _ in LAYERS]
)
def test_forward_backward_leave_memory_flat(make, kind):
    layer = make()
    x = zoo.make_input(kind, np.random.default_rng(0), np.float64, 4, 12)  # 4.6 KB
    g = np.ones_like(layer(x))

    def step():
        layer.forward(x)
        layer.backward(g)

    grown = growth(step)
    assert grown < BOUND, f"{grown / 2**20:.2f} MiB after {CALLS} forward/backward calls"


def test_losses_and_optimizers_leave_memory_flat():
    rng = np.random.default_rng(0)
    params = [cp.Parameter(rng.standard_normal((16, 16))) for _ in range(3)]
    sgd = cp.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4, nesterov=True)
    adam = cp.Adam(params, lr=1e-3, weight_decay=1e-4)
    ce, mse = cp.SoftmaxCrossEntropy(), cp.MSELoss()
    logits, labels = rng.standard_normal((32, 10)), rng.integers(0, 10, 32)
    pred, target = rng.standard_normal((32, 10)), rng.standard_normal((32, 10))

    def step():
        ce(logits, labels)
        ce.backward()
        mse(pred, target)
        mse.backward()
        for p in params:
            p.grad[...] = 1e-3
        sgd.step()
        adam.step()
        sgd.zero_grad()

    grown = growth(step)
    assert grown < BOUND, f"{grown / 2**20:.2f} MiB after {CALLS} steps"


def test_a_training_step_of_a_small_network_leaves_memory_flat():
    model = cp.Sequential(
        cp.Conv2d(1, 4, 3, padding=1, rng=0),
        cp.ReLU(),
        cp.MaxPool2d(2),
        cp.Conv2d(4, 4, 3, padding=1, rng=1),
        cp.Tanh(),
        cp.MeanPool2d(2),
        cp.Flatten(),
        cp.Linear(16, 3, rng=2),
    )
    opt = cp.Adam(model.parameters(), lr=1e-3)
    loss = cp.SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 4)

    def step():
        opt.zero_grad()
        loss(model.forward(x), y)
        model.backward(loss.backward())
        opt.step()

    grown = growth(step, calls=CALLS // 2)
    assert grown < BOUND, f"{grown / 2**20:.2f} MiB after {CALLS // 2} training steps"


def test_many_input_sizes_leave_memory_bounded():
    """Per-size caches (geometries, divisors, output sizes) stay bounded."""
    layers = [cp.MaxPool2d(2), cp.MeanPool2d(3, 2, 1), cp.Conv2d(1, 1, 3, dtype=np.float64)]
    sizes = [(h, w) for h in range(8, 72) for w in range(8, 72)]  # 4,096 sizes
    inputs = {}

    def x_of(size):
        if size not in inputs:
            inputs.clear()
            inputs[size] = np.ones((1, 1) + size)
        return inputs[size]

    def run(sizes):
        for size in sizes:
            x = x_of(size)
            for layer in layers:
                layer.backward(np.ones_like(layer(x)))

    run(sizes[:300])
    gc.collect()
    before = rss()
    run(sizes)
    gc.collect()
    grown = rss() - before
    assert grown < BOUND, f"{grown / 2**20:.2f} MiB after {len(sizes)} input sizes"
