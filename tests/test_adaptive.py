"""Adaptive and global max/mean pooling: PyTorch parity, the window rule, the geometry, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import pool_input

import cnnpool as cp
from cnnpool.pooling.strategies.adaptive import adaptive_geometry, adaptive_ranges

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch_grad(fn, x, g):
    # A copy: a one-element array can be "contiguous" with negative strides, which torch refuses.
    tx = torch.tensor(x.copy(), requires_grad=True)
    out = fn(tx)
    y = out[0] if isinstance(out, tuple) else out
    y.backward(torch.tensor(g))
    return out, tx.grad.numpy()


sizes = st.integers(1, 12)
out_sizes = st.one_of(st.none(), st.integers(1, 14))


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])
@settings(max_examples=40)
@given(data=st.data(), H=sizes, W=sizes, oh=out_sizes, ow=out_sizes)
def test_adaptive_max_matches_torch(fast, data, H, W, oh, ow):
    x = np.ascontiguousarray(data.draw(pool_input(H, W)))
    layer = cp.AdaptiveMaxPool2d((oh, ow))
    layer.use_fast_path = fast
    y = layer(x)
    g = np.random.default_rng(2).standard_normal(y.shape).astype(x.dtype)
    (ty, ti), tgx = _torch_grad(lambda t: F.adaptive_max_pool2d(t, (oh, ow), True), x, g)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(layer.indices, ti.numpy())
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(layer.backward(g), tgx, rtol=tol, atol=tol)


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])
@settings(max_examples=40)
@given(data=st.data(), H=sizes, W=sizes, oh=out_sizes, ow=out_sizes)
def test_adaptive_mean_matches_torch(fast, data, H, W, oh, ow):
    x = np.ascontiguousarray(data.draw(pool_input(H, W)))
    x[~np.isfinite(x)] = 0.0
    layer = cp.AdaptiveMeanPool2d((oh, ow))
    layer.use_fast_path = fast
    y = layer(x)
    g = np.random.default_rng(3).standard_normal(y.shape).astype(x.dtype)
    ty, tgx = _torch_grad(lambda t: F.adaptive_avg_pool2d(t, (oh, ow)), x, g)
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(layer.backward(g), tgx, rtol=tol, atol=tol)


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_pooling_matches_torch(fast, dtype):
    x = np.random.default_rng(4).standard_normal((3, 4, 7, 9)).astype(dtype)
    x[0, 0, 3, 3] = x[0, 0, 5, 1] = 9.0  # a tie: the first wins
    g = np.random.default_rng(5).standard_normal((3, 4, 1, 1)).astype(dtype)
    gmax, gmean = cp.GlobalMaxPool2d(), cp.GlobalMeanPool2d()
    for layer in (gmax, gmean):
        layer.use_fast_path = fast
    (ty, ti), tgx = _torch_grad(lambda t: F.adaptive_max_pool2d(t, 1, True), x, g)
    np.testing.assert_array_equal(gmax(x), ty.detach().numpy())
    np.testing.assert_array_equal(gmax(x), x.max(axis=(2, 3), keepdims=True))
    np.testing.assert_array_equal(gmax.indices, ti.numpy())
    assert gmax.indices[0, 0, 0, 0] == 3 * 9 + 3
    np.testing.assert_array_equal(gmax.backward(g), tgx)
    ty, tgx = _torch_grad(lambda t: F.adaptive_avg_pool2d(t, 1), x, g)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(gmean(x), ty.detach().numpy(), rtol=tol)
    np.testing.assert_allclose(gmean.backward(g), tgx, rtol=tol)
    assert gmean(x).shape == (3, 4, 1, 1)


def test_window_rule_by_hand():
    # 5 -> 2: [0, 3) and [2, 5), overlapping at 2; 3 -> 5: repeats elements
    start, end = adaptive_ranges(5, 2)
    assert start.tolist() == [0, 2] and end.tolist() == [3, 5]
    start, end = adaptive_ranges(3, 5)
    assert start.tolist() == [0, 0, 1, 1, 2] and end.tolist() == [1, 2, 2, 3, 3]
    start, end = adaptive_ranges(10, 3)
    assert start.tolist() == [0, 3, 6] and end.tolist() == [4, 7, 10]
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    np.testing.assert_array_equal(cp.AdaptiveMaxPool2d(2)(x)[0, 0], [[12, 14], [22, 24]])
    np.testing.assert_array_equal(cp.AdaptiveMeanPool2d(2)(x)[0, 0], [[6, 8], [16, 18]])


def test_geometry_is_a_tap_table_with_missing_taps():
    """Windows of varying size: K is the largest, missing taps are -1 and not counted."""
    geom = adaptive_geometry((5, 3), (3, 2))
    # rows 5 -> 3: [0, 2) [1, 4) [3, 5); cols 3 -> 2: [0, 2) [1, 3)
    assert geom.kernel_size == (3, 2) and geom.window_size == 6
    np.testing.assert_array_equal(geom.counts(True), [[4, 4], [6, 6], [4, 4]])
    np.testing.assert_array_equal(geom.counts(False), geom.counts(True))
    np.testing.assert_array_equal(geom.taps[0, 0], [0, 1, 3, 4, -1, -1])
    np.testing.assert_array_equal(geom.taps[1, 1], [4, 5, 7, 8, 10, 11])
    np.testing.assert_array_equal(geom.inside, geom.taps >= 0)
    assert cp.AdaptiveMeanPool2d((3, 2)).output_shape((2, 4, 5, 3)) == (2, 4, 3, 2)


@pytest.mark.parametrize("cls", [cp.AdaptiveMaxPool2d, cp.AdaptiveMeanPool2d])
@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])
def test_gradcheck(cls, fast):
    x = np.random.default_rng(6).standard_normal((2, 2, 7, 5))
    for size in [(3, 2), (4, 7), 1]:
        layer = cls(size)
        layer.use_fast_path = fast
        assert cp.gradcheck(layer, x) < 1e-7


def test_overlapping_windows_accumulate_at_a_shared_winner():
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0  # in all four windows of 5 -> 2
    layer = cp.AdaptiveMaxPool2d(2)
    layer(x)
    gx = layer.backward(np.ones((1, 1, 2, 2)))
    assert gx[0, 0, 2, 2] == 4.0 and gx.sum() == 4.0


def test_arguments_and_repr():
    for bad in (0, (2, 0), -1):
        with pytest.raises(ValueError, match="output_size"):
            cp.AdaptiveMaxPool2d(bad)
    for bad in ("2", (2, 2, 2), 2.0, True):
        with pytest.raises(TypeError, match="output_size"):
            cp.AdaptiveMeanPool2d(bad)
    assert repr(cp.AdaptiveMaxPool2d((3, None))) == "AdaptiveMaxPool2d(output_size=(3, None))"
    assert repr(cp.GlobalMeanPool2d()) == "GlobalMeanPool2d()"
    assert cp.AdaptiveAvgPool2d is cp.AdaptiveMeanPool2d
    layer = cp.AdaptiveMaxPool2d((3, None))
    assert type(layer)(**layer.get_config()).output_size == (3, None)
    assert cp.GlobalMaxPool2d(**cp.GlobalMaxPool2d().get_config())(np.ones((1, 1, 2, 2))).shape == (
        1,
        1,
        1,
        1,
    )
    with pytest.raises(ValueError, match="4-D"):
        cp.GlobalMaxPool2d()(np.ones((2, 3)))
    empty = cp.AdaptiveMaxPool2d(2)(np.zeros((0, 3, 4, 4)))
    assert empty.shape == (0, 3, 2, 2)
