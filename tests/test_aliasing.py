"""What a layer keeps for its backward pass is its own.

Each layer of the zoo (every built-in layer) runs forward on an input that
the caller then overwrites in place; the backward pass must give the very
gradients of an untouched run (PyTorch raises on such an edit; cnnpool
keeps a private copy where it needs the input, so the edit is harmless).
"""

from __future__ import annotations

import numpy as np
import pytest
import zoo

import cnnpool as cp
from cnnpool import registry

LAYERS = zoo.layers(np.float64)


def test_the_zoo_holds_every_registered_layer_class():
    built = {type(make()) for _, make, _ in LAYERS}
    # The library's own registered classes (a test may have registered more).
    own = {c for c in registry._registered.values() if c.__module__.startswith("cnnpool.")}
    assert own <= built


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", [entry[0] for entry in LAYERS])
def test_editing_the_input_after_forward_changes_no_gradient(name, dtype):
    make, kind = {n: (m, k) for n, m, k in zoo.layers(dtype)}[name]
    x = zoo.make_input(kind, np.random.default_rng(0), dtype, 3, 10)
    reference, layer = make(), make()
    y = reference(x.copy())
    g = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    expected = reference.backward(g)
    given = x.copy()
    layer(given)
    given[...] = 5.0  # the caller reuses its buffer before calling backward
    np.testing.assert_array_equal(layer.backward(g), expected)
    for p, q in zip(layer.parameters(), reference.parameters(), strict=True):
        np.testing.assert_array_equal(p.grad, q.grad)


def test_issue_example_linear_weight_gradient():
    layer = cp.Linear(3, 2, rng=0)
    x = np.ones((1, 3), np.float32)
    layer(x)
    x[:] = 5
    layer.backward(np.ones((1, 2), np.float32))
    np.testing.assert_array_equal(layer.weight.grad, np.ones((2, 3), np.float32))


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: cp.Conv2d(8, 4, 1, rng=0), (8, 8, 64, 64)),  # 1 MiB: the reused-buffer copy
        (lambda: cp.Linear(4096, 3, rng=0), (64, 4096)),
    ],
    ids=["conv1x1", "linear"],
)
def test_large_private_copies_are_reused_safely(make, shape):
    rng = np.random.default_rng(0)
    layer, reference = make(), make()
    for _ in range(3):  # the second and third calls reuse the first copy's memory
        x = rng.standard_normal(shape).astype(np.float32)
        assert x.nbytes >= 1 << 20
        y = layer(x)
        g = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_array_equal(y, reference(x.copy()))
        x[...] = -3.0
        np.testing.assert_array_equal(layer.backward(g), reference.backward(g))
        np.testing.assert_array_equal(layer.weight.grad, reference.weight.grad)
