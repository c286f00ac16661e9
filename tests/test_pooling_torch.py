"""PyTorch parity for max and mean pooling: outputs, indices and autograd gradients."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import pool_geometry, pool_input

import cnnpool as cp

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch_grad(fn, x, g):
    tx = torch.tensor(x.copy(), requires_grad=True)  # a fresh array: torch refuses negative strides
    out = fn(tx)
    y = out[0] if isinstance(out, tuple) else out
    y.backward(torch.tensor(g))
    return out, tx.grad.numpy()


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])
@given(data=st.data())
def test_max_pool_matches_torch(fast, data):
    k, s, p, d, ceil, H, W = data.draw(pool_geometry())
    x = np.ascontiguousarray(data.draw(pool_input(H, W)))
    pool = cp.MaxPool2d(k, s, p, d, ceil)
    pool.use_fast_path = fast
    y = pool(x)
    g = np.random.default_rng(2).standard_normal(y.shape).astype(x.dtype)
    (ty, ti), tgx = _torch_grad(
        lambda t: F.max_pool2d(t, k, s, p, d, ceil, return_indices=True), x, g
    )
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(pool.indices, ti.numpy())
    np.testing.assert_allclose(pool.backward(g), tgx, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])
@given(data=st.data())
def test_mean_pool_matches_torch(fast, data):
    k, s, p, _, ceil, H, W = data.draw(pool_geometry(dilation=False))
    x = np.ascontiguousarray(data.draw(pool_input(H, W)))
    x[~np.isfinite(x)] = 0.0  # -inf - -inf sums are NaN either way; test finite sums here
    include = data.draw(st.booleans())
    override = data.draw(st.none() | st.integers(1, 9))
    pool = cp.MeanPool2d(k, s, p, ceil, include, override)
    pool.use_fast_path = fast
    y = pool(x)
    g = np.random.default_rng(3).standard_normal(y.shape).astype(x.dtype)
    ty, tgx = _torch_grad(lambda t: F.avg_pool2d(t, k, s, p, ceil, include, override), x, g)
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(pool.backward(g), tgx, rtol=tol, atol=tol)


def test_ceil_mode_with_padding_divisor_matches_torch():
    """The trap: ceil_mode + count_include_pad, where the last window overhangs."""
    x = np.random.default_rng(4).standard_normal((1, 2, 6, 7))
    for k, s, p in [(3, 2, 1), (2, 3, 1), (4, 3, 2), (3, 3, 0)]:
        for include in (True, False):
            pool = cp.MeanPool2d(k, s, p, ceil_mode=True, count_include_pad=include)
            y = pool(x)
            g = np.ones_like(y)
            ty, tgx = _torch_grad(lambda t: F.avg_pool2d(t, k, s, p, True, include), x, g)  # noqa: B023
            np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12)
            np.testing.assert_allclose(pool.backward(g), tgx, rtol=1e-12)


def test_nan_semantics_match_torch():
    """A NaN wins its window; among several NaNs the last one wins; ties: first."""
    x = np.array(
        [
            [
                [
                    [1.0, np.nan, 3.0, 3.0],
                    [np.nan, 2.0, 3.0, 1.0],
                    [5.0, 5.0, -np.inf, -np.inf],
                    [0.0, 5.0, -np.inf, -np.inf],
                ]
            ]
        ]
    )
    pool = cp.MaxPool2d(2)
    y = pool(x)
    ty, ti = F.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(pool.indices, ti.numpy())
    # and by hand: last NaN (row 1, col 0) = 4; first 3 = 2; first 5 = 8; first -inf = 10
    np.testing.assert_array_equal(pool.indices[0, 0], [[4, 2], [8, 10]])
