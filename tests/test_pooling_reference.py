"""Max and mean pooling against the plain NumPy reference, on random geometries.

Every test runs the compiled fast path and the generic pool/route path.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import max_pool2d, max_pool2d_backward, mean_pool2d, mean_pool2d_backward
from strategies import pool_geometry, pool_input

import cnnpool as cp

PATHS = pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])


def tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@PATHS
@given(data=st.data())
def test_max_matches_reference(fast, data):
    k, s, p, d, ceil, H, W = data.draw(pool_geometry())
    x = data.draw(pool_input(H, W))
    pool = cp.MaxPool2d(k, s, p, d, ceil)
    pool.use_fast_path = fast
    y = pool(x)
    y_ref, idx_ref = max_pool2d(np.ascontiguousarray(x), k, s, p, d, ceil)
    assert y.dtype == x.dtype and y.shape == y_ref.shape
    np.testing.assert_array_equal(y, y_ref)  # max is exact, NaN in the same places
    np.testing.assert_array_equal(pool.indices, idx_ref)
    assert pool.indices.min(initial=0) >= 0 and pool.indices.max(initial=0) < H * W
    g = np.random.default_rng(0).standard_normal(y.shape).astype(x.dtype)
    gx = pool.backward(g)
    assert gx.dtype == x.dtype and gx.shape == x.shape
    np.testing.assert_allclose(gx, max_pool2d_backward(g, idx_ref, x.shape), **tol(x.dtype))


@PATHS
@given(data=st.data())
def test_mean_matches_reference(fast, data):
    k, s, p, d, ceil, H, W = data.draw(pool_geometry())
    x = data.draw(pool_input(H, W))
    include = data.draw(st.booleans())
    pool = cp.MeanPool2d(k, s, p, ceil, count_include_pad=include, dilation=d)
    pool.use_fast_path = fast
    y = pool(x)
    y_ref = mean_pool2d(np.ascontiguousarray(x), k, s, p, ceil, include, d)
    assert y.dtype == x.dtype and y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, **tol(x.dtype))
    g = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    gx = pool.backward(g)
    ref = mean_pool2d_backward(g, x.shape, k, s, p, ceil, include, d)
    assert gx.dtype == x.dtype
    np.testing.assert_allclose(gx, ref, **tol(x.dtype))


@given(data=st.data())
def test_generic_and_compiled_paths_agree(data):
    """The strategies' pool/route (NumPy) and their compiled kernels give one answer."""
    k, s, p, d, ceil, H, W = data.draw(pool_geometry())
    x = data.draw(pool_input(H, W))
    for make in (
        lambda: cp.MaxPool2d(k, s, p, d, ceil),
        lambda: cp.MeanPool2d(k, s, p, ceil, dilation=d),
    ):
        fast, slow = make(), make()
        slow.use_fast_path = False
        y1, y2 = fast(x), slow(x)
        np.testing.assert_allclose(y1, y2, **tol(x.dtype))
        g = np.ones_like(y1)
        np.testing.assert_allclose(fast.backward(g), slow.backward(g), **tol(x.dtype))


@pytest.mark.parametrize("k", [7, 9, 11])
@pytest.mark.parametrize("fast", [True, False])
def test_large_windows(k, fast):
    """Big kernels take no separate, less-tested code path."""
    rng = np.random.default_rng(k)
    x = rng.standard_normal((2, 2, 23, 19))
    for stride in (1, 3, k):
        pool = cp.MaxPool2d(k, stride, k // 2, ceil_mode=True)
        pool.use_fast_path = fast
        y_ref, idx_ref = max_pool2d(x, (k, k), (stride, stride), (k // 2, k // 2), (1, 1), True)
        np.testing.assert_array_equal(pool(x), y_ref)
        np.testing.assert_array_equal(pool.indices, idx_ref)
        mean = cp.MeanPool2d(k, stride, k // 2, True, count_include_pad=False)
        mean.use_fast_path = fast
        ref = mean_pool2d(x, (k, k), (stride, stride), (k // 2, k // 2), True, False)
        np.testing.assert_allclose(mean(x), ref, rtol=1e-12)
