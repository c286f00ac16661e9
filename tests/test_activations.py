"""ReLU, Tanh and Sigmoid: values, finite differences, PyTorch, the layer contract."""

import warnings

import numpy as np
import pytest

import cnnpool as cp

LAYERS = [cp.ReLU, cp.Tanh, cp.Sigmoid]
FORMULAS = {
    cp.ReLU: lambda x: np.maximum(x, 0),
    cp.Tanh: np.tanh,
    cp.Sigmoid: lambda x: 1 / (1 + np.exp(-x)),
}


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (7, 3), (5,)])
def test_values_and_gradcheck(cls, shape):
    rng = np.random.default_rng(0)
    # Keep ReLU inputs away from its kink at 0, where finite differences lie.
    x = rng.standard_normal(shape)
    x = np.where(np.abs(x) < 0.05, 0.5, x) * 2
    layer = cls()
    y = layer(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_allclose(y, FORMULAS[cls](x), rtol=1e-15, atol=1e-15)
    assert cp.gradcheck(layer, x) < 1e-6


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch(cls, dtype):
    torch = _torch()
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 4, 5, 6)) * 3).astype(dtype)
    x[0, 0, 0, :3] = [0.0, 40.0, -40.0]  # the kink and the saturated tails
    g = rng.standard_normal(x.shape).astype(dtype)
    layer = cls()
    y = layer(x)
    gx = layer.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(torch.nn, cls.__name__)()(tx)
    ty.backward(torch.from_numpy(g))
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=tol, atol=tol)
    assert y.dtype == gx.dtype == dtype


def test_relu_at_zero_and_nan_follow_torch():
    relu = cp.ReLU()
    y = relu(np.array([0.0, np.nan, -1.0, 2.0]))
    np.testing.assert_array_equal(y, [0.0, np.nan, 0.0, 2.0])
    np.testing.assert_array_equal(relu.backward(np.ones(4)), [0.0, 0.0, 0.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [7, 3 * (1 << 15) + 5], ids=["small", "chunked"])
def test_relu_kernels_match_numpy_on_special_values_and_any_thread_count(dtype, size):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(size).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    special = [np.nan, -0.0, 0.0, np.inf, -np.inf, -1.0, 1.0]
    x[:7], x[-7:] = special, special
    # Non-finite gradients where x <= 0 must give 0 there (threshold_backward).
    g[:7] = g[-7:] = [np.inf, np.nan, -np.inf, 2.0, np.nan, np.inf, 3.0]
    want_y = np.maximum(x, dtype(0))
    want_gx = np.where(x > 0, g, dtype(0))
    for threads in (1, 2, 3):
        cp.set_num_threads(threads)
        try:
            relu = cp.ReLU()
            y = relu(x)
            gx = relu.backward(g)
        finally:
            cp.set_num_threads(0)
        np.testing.assert_array_equal(y, want_y)
        np.testing.assert_array_equal(gx, want_gx)
        assert not np.signbit(y[1])  # -0.0 -> +0.0, as max(x, 0) in torch
        assert y.dtype == gx.dtype == dtype


def test_relu_kernels_refuse_inconsistent_arrays():
    from cnnpool import _elementwise

    x = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="same number of elements"):
        _elementwise.relu_forward(x, np.zeros(7, np.float32), np.zeros(8, bool), 1)
    with pytest.raises(TypeError, match="positive must have dtype bool"):
        _elementwise.relu_forward(x, np.zeros(8, np.float32), np.zeros(8, np.uint8), 1)
    with pytest.raises(TypeError, match="out must have dtype float32"):
        _elementwise.relu_backward(x, np.zeros(8, bool), np.zeros(8, np.float64), 1)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        _elementwise.relu_backward(x, np.zeros(8, bool), np.zeros(16, np.float32)[::2], 1)
    with pytest.raises(TypeError, match="grad must be float32 or float64"):
        _elementwise.relu_backward(x.astype(int), np.zeros(8, bool), x, 1)


def test_sigmoid_saturates_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = cp.Sigmoid()(np.array([-1000.0, 0.0, 1000.0], np.float32))
    np.testing.assert_array_equal(y, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("cls", LAYERS)
def test_backward_keeps_saved_state(cls):
    layer = cls()
    x = np.random.default_rng(2).standard_normal((4, 5))
    y = layer(x)
    g = np.ones_like(y)
    first = layer.backward(g)
    y[...] = 123.0  # editing the returned output must not change the gradient
    x[...] = -7.0  # nor editing the input
    np.testing.assert_array_equal(layer.backward(g), first)


@pytest.mark.parametrize("cls", LAYERS)
def test_contract_and_errors(cls):
    layer = cls()
    assert layer.parameters() == [] and repr(layer) == f"{cls.__name__}()"
    assert layer.get_config() == {}
    assert layer.eval().training is False and layer.train().training is True
    with pytest.raises(cp.BackwardBeforeForwardError):
        layer.backward(np.zeros(3))
    with pytest.raises(TypeError, match="float32 or float64"):
        layer(np.arange(3))
    layer(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"shape of the forward output \(2, 3\)"):
        layer.backward(np.zeros((3, 2), np.float32))
    with pytest.raises(TypeError, match="dtype of the forward output"):
        layer.backward(np.zeros((2, 3), np.float64))
