"""LpPool2d: PyTorch parity (forward, autograd backward, NaN pattern), its conventions, gradcheck."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import pool_output_size

import cnnpool as cp

torch = pytest.importorskip("torch")
F = torch.nn.functional

NORMS = [1, 2, 3, 4, 1.5, 0.5, -1.0, math.inf, -math.inf]


def _torch(x, p, k, s, ceil, g):
    tx = torch.tensor(x, requires_grad=True)
    ty = F.lp_pool2d(tx, p, k, s, ceil)
    ty.backward(torch.tensor(g))
    return ty.detach().numpy(), tx.grad.numpy()


def _close(actual, expected, dtype):
    tol = dict(rtol=2e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(actual, expected, equal_nan=True, **tol)


@st.composite
def lp_case(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = draw(st.none() | st.tuples(st.integers(1, 4), st.integers(1, 4)))
    ceil = draw(st.booleans())
    stride = k if s is None else s
    H, W = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    for size, kk, ss in zip((H, W), k, stride, strict=True):
        if pool_output_size(size, kk, ss, 0, 1, ceil) < 1:
            H, W = max(H, k[0]), max(W, k[1])
    p = draw(st.sampled_from(NORMS))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((draw(st.integers(0, 2)), draw(st.integers(1, 3)), H, W))
    kind = draw(st.sampled_from(["signed", "positive", "zeros"]))
    fractional = not math.isinf(p) and p != int(p)
    if kind == "positive" or fractional:
        x = np.abs(x) + 0.1  # fractional p: any negative input is NaN, tested apart
    if kind == "zeros":
        x[rng.random(x.shape) < 0.6] = 0.0
        if p < 1 or fractional:
            x = np.abs(x) + (x == 0) * 0.5  # zero inputs with p < 1 are NaN, tested apart
    return x.astype(dtype), p, k, s, ceil


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])
@settings(max_examples=40)
@given(case=lp_case())
def test_matches_torch_forward_and_backward(fast, case):
    x, p, k, s, ceil = case
    layer = cp.LpPool2d(p, k, s, ceil)
    layer.use_fast_path = fast
    y = layer(x)
    g = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    ty, tgx = _torch(x, p, k, s, ceil, g)
    assert y.dtype == x.dtype and y.shape == ty.shape
    _close(y, ty, x.dtype)
    gx = layer.backward(g)
    assert gx.dtype == x.dtype
    np.testing.assert_array_equal(np.isnan(gx), np.isnan(tgx))
    _close(gx, tgx, x.dtype)


@pytest.mark.parametrize("p", [2, 3, 0.5])
@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])
def test_zero_sum_window_gives_zero_output_and_torch_gradient(p, fast):
    """PyTorch's convention: where sum(x**p) is 0 the gradient is 0 (NaN at 0 for p < 1)."""
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, :, 2:] = [[1.0, 2.0], [2.0, 4.0]]
    layer = cp.LpPool2d(p, 2)
    layer.use_fast_path = fast
    y = layer(x)
    g = np.array([[[[1.5, -2.0]]]])
    ty, tgx = _torch(x, p, 2, None, False, g)
    np.testing.assert_allclose(y, ty, rtol=1e-12)
    assert y[0, 0, 0, 0] == 0.0
    gx = layer.backward(g)
    np.testing.assert_allclose(gx, tgx, rtol=1e-12, equal_nan=True)
    if p >= 1:
        assert np.all(gx[0, 0, :, :2] == 0.0)  # not the infinite slope of s**(1/p) at 0
    else:
        assert np.all(np.isnan(gx[0, 0, :, :2]))  # 0 * x**(p-1) = 0 * inf, as in PyTorch


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])
def test_p1_cancelling_window_has_zero_gradient_like_torch(fast):
    """p = 1 is a signed sum, yet PyTorch zeroes the gradient where that sum is 0."""
    x = np.array([[[[1.0, -1.0], [2.5, -2.5]]]])
    layer = cp.LpPool2d(1, 2)
    layer.use_fast_path = fast
    assert layer(x)[0, 0, 0, 0] == 0.0
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 1, 1))), 0.0)
    _, tgx = _torch(x, 1, 2, None, False, np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(tgx, 0.0)


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])
def test_negative_inputs_follow_pow(fast):
    """Even p: signs vanish; odd p: a negative sum is NaN; fractional p: negatives are NaN."""
    x = np.array([[[[-3.0, -4.0, 1.0, -2.0, 1.0, -1.0]]]])
    for p, expected in [
        (2, [5.0, math.sqrt(5), math.sqrt(2)]),
        (3, [math.nan, math.nan, 0.0]),
        (1.5, [math.nan, math.nan, math.nan]),
        (1, [-7.0, -1.0, 0.0]),
    ]:
        layer = cp.LpPool2d(p, (1, 2))
        layer.use_fast_path = fast
        y = layer(x)
        np.testing.assert_allclose(y[0, 0, 0], expected, rtol=1e-12, equal_nan=True)
        ty, _ = _torch(x, p, (1, 2), None, False, np.ones_like(y))
        np.testing.assert_allclose(y, ty, rtol=1e-12, equal_nan=True)


def test_worked_numbers_and_ceil_mode_factor():
    x = np.array([[[[3.0, 4.0, 2.0], [0.0, 0.0, 0.0]]]])
    # full window: (9 + 16)^(1/2) = 5; ceil_mode's partial window holds 2 of K = 4
    # taps and PyTorch scales its sum by K / n = 2: (2 * 4)^(1/2)
    y = cp.LpPool2d(2, 2, ceil_mode=True)(x)
    np.testing.assert_allclose(y[0, 0, 0], [5.0, math.sqrt(8.0)], rtol=1e-12)
    ty, _ = _torch(x, 2, 2, None, True, np.ones_like(y))
    np.testing.assert_allclose(y, ty, rtol=1e-12)
    # p = inf is the max of |x|, p = -inf the min of |x|
    x = np.array([[[[-3.0, 1.0], [2.0, -0.5]]]])
    assert cp.LpPool2d(math.inf, 2)(x)[0, 0, 0, 0] == 3.0
    assert cp.LpPool2d(-math.inf, 2)(x)[0, 0, 0, 0] == 0.5


@pytest.mark.parametrize("p", [1, 2, 3, 1.5, -2.0, math.inf, -math.inf])
@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])
def test_gradcheck(p, fast):
    x = np.abs(np.random.default_rng(0).standard_normal((2, 2, 6, 5))) + 0.2
    layer = cp.LpPool2d(p, 3, 2, ceil_mode=True)
    layer.use_fast_path = fast
    assert np.all(np.isfinite(layer(x)))
    assert cp.gradcheck(layer, x) < 1e-6


def test_compiled_and_generic_paths_agree_float32():
    x = np.random.default_rng(3).standard_normal((3, 4, 9, 10)).astype(np.float32)
    g = np.random.default_rng(4).standard_normal((3, 4, 4, 4)).astype(np.float32)
    out = []
    for fast in (True, False):
        layer = cp.LpPool2d(2, 3, 2, ceil_mode=False)
        layer.use_fast_path = fast
        out.append((layer(x), layer.backward(g)))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-5)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-4, atol=1e-6)


def test_backward_uses_its_own_copy_of_the_input():
    x = np.random.default_rng(5).random((1, 2, 4, 4))
    layer = cp.LpPool2d(2, 2)
    y = layer(x)
    g = np.ones_like(y)
    before = layer.backward(g)
    x[:] = 7.0
    y[:] = 0.0
    np.testing.assert_array_equal(layer.backward(g), before)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="non-zero"):
        cp.LpPool2d(0, 2)
    with pytest.raises(ValueError, match="NaN"):
        cp.LpPool2d(math.nan, 2)
    with pytest.raises(TypeError, match="norm_type"):
        cp.LpPool2d(True, 2)
    with pytest.raises(TypeError, match="norm_type"):
        cp.LpPool2d("2", 2)
    with pytest.raises(TypeError):
        cp.LpPool2d(2, 2, padding=1)  # no padding, as in PyTorch
    layer = cp.LpPool2d(2.0, (2, 3), stride=1, ceil_mode=True)
    assert repr(layer) == (
        "LpPool2d(norm_type=2, kernel_size=(2, 3), stride=(1, 1), ceil_mode=True)"
    )
    assert type(layer)(**layer.get_config()).get_config() == layer.get_config()


LP_GEOMETRIES = [
    (2, 2, False),
    (3, 2, False),
    (3, 1, False),
    (3, 2, True),
    (2, 3, True),
    ((2, 3), (1, 2), True),
    ((3, 2), (3, 2), True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", LP_GEOMETRIES)
@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, -2.0])
def test_direct_path_gives_the_window_drivers_bits(dtype, geometry, p):
    """LpPool2d reads its planes in place; CompiledPool2d(LpWindow) runs the same
    arithmetic through the window driver's tap table: the same bits, forward and
    backward (overlapping windows add in the same order), at 1 and 2 threads."""
    from cnnpool.pooling.strategies._lp import LpWindow, lp_backward, lp_forward

    k, s, ceil = geometry
    rng = np.random.default_rng(7)
    x = (np.abs(rng.standard_normal((3, 4, 11, 13))) + 0.01).astype(dtype)
    layer = cp.LpPool2d(p, k, s, ceil_mode=ceil)
    driver = cp.CompiledPool2d(LpWindow(p), k, s, ceil_mode=ceil)
    y = layer(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = layer.backward(g)
    np.testing.assert_array_equal(y, driver(x))
    np.testing.assert_array_equal(gx, driver.backward(g))
    kh, kw = layer.kernel_size
    sh, sw = layer.stride
    planes = x.reshape(12, 11, 13)
    for threads in (1, 2):
        out = np.empty((12,) + y.shape[2:], dtype)
        copy = np.empty_like(planes)
        lp_forward(LpWindow(p), planes, out, copy, kh, kw, sh, sw, threads)
        np.testing.assert_array_equal(out.reshape(y.shape), y)
        np.testing.assert_array_equal(copy, planes)
        grad = np.full_like(planes, np.nan)  # written whole, whatever it held
        lp_backward(LpWindow(p), copy, g.reshape(out.shape), grad, kh, kw, sh, sw, threads)
        np.testing.assert_array_equal(grad.reshape(x.shape), gx)


def test_direct_path_refuses_shapes_that_do_not_fit():
    from cnnpool.pooling.strategies._lp import LpWindow, lp_backward, lp_forward

    x = np.ones((2, 4, 4))
    with pytest.raises(ValueError, match="does not fit"):
        lp_forward(LpWindow(2.0), x, np.empty((2, 3, 3)), np.empty_like(x), 2, 2, 2, 2, 1)
    with pytest.raises(ValueError, match="shape of x"):
        lp_forward(LpWindow(2.0), x, np.empty((2, 2, 2)), np.empty((2, 4, 5)), 2, 2, 2, 2, 1)
    with pytest.raises(TypeError, match="float32 or float64"):
        lp_backward(LpWindow(2.0), x.astype(int), np.ones((2, 2, 2)), x, 2, 2, 2, 2, 1)
    with pytest.raises(ValueError, match="shapes disagree"):
        lp_backward(LpWindow(2.0), x, np.ones((3, 2, 2)), np.empty_like(x), 2, 2, 2, 2, 1)
