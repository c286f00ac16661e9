"""Flatten and Linear: finite differences, PyTorch, shapes and bad input."""

import numpy as np
import pytest

import cnnpool as cp


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


# ------------------------------------------------------------------ Flatten
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 7), (4, 2, 3), (0, 3, 2)])
def test_flatten_shapes_and_gradcheck(shape):
    x = np.random.default_rng(0).standard_normal(shape)
    flat = cp.Flatten()
    y = flat(x)
    assert y.shape == (shape[0], int(np.prod(shape[1:])))
    np.testing.assert_array_equal(y, x.reshape(y.shape))
    assert flat.output_shape(shape) == y.shape
    g = np.arange(y.size, dtype=x.dtype).reshape(y.shape)
    np.testing.assert_array_equal(flat.backward(g), g.reshape(shape))
    if x.size:
        assert cp.gradcheck(flat, x) < 1e-8


def test_flatten_errors():
    flat = cp.Flatten()
    with pytest.raises(cp.BackwardBeforeForwardError):
        flat.backward(np.zeros((1, 1)))
    with pytest.raises(ValueError, match="at least 2-D"):
        flat(np.zeros(4))
    flat(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"shape of the forward output \(2, 12\)"):
        flat.backward(np.zeros((2, 3, 4)))


# ------------------------------------------------------------------- Linear
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("n", "f", "m"), [(3, 5, 4), (1, 1, 1), (6, 2, 7)])
def test_linear_gradcheck(n, f, m, bias):
    rng = np.random.default_rng(n * 100 + f * 10 + m)
    lin = cp.Linear(f, m, bias=bias, dtype=np.float64, rng=0)
    if bias:
        lin.bias.data[...] = rng.standard_normal(m)
    x = rng.standard_normal((n, f))
    y = lin(x)
    want = x @ lin.weight.data.T + (lin.bias.data if bias else 0)
    np.testing.assert_allclose(y, want, rtol=1e-14)
    assert cp.gradcheck(lin, x) < 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(dtype, bias):
    torch = _torch()
    rng = np.random.default_rng(3)
    lin = cp.Linear(12, 5, bias=bias, dtype=dtype, rng=3)
    t = torch.nn.Linear(12, 5, bias=bias).to(getattr(torch, str(np.dtype(dtype))))
    with torch.no_grad():
        if bias:
            lin.bias.data[...] = rng.standard_normal(5)
            t.bias.copy_(torch.from_numpy(lin.bias.data))
        t.weight.copy_(torch.from_numpy(lin.weight.data))  # same (out, in) layout
    x = rng.standard_normal((8, 12)).astype(dtype)
    g = rng.standard_normal((8, 5)).astype(dtype)
    y = lin(x)
    gx = lin.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = t(tx)
    ty.backward(torch.from_numpy(g))
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(lin.weight.grad, t.weight.grad.numpy(), rtol=tol, atol=tol)
    if bias:
        np.testing.assert_allclose(lin.bias.grad, t.bias.grad.numpy(), rtol=tol, atol=tol)
    assert y.dtype == gx.dtype == lin.weight.grad.dtype == dtype


def test_linear_accumulates_and_keeps_saved_state():
    lin = cp.Linear(4, 3, dtype=np.float64, rng=1)
    x = np.random.default_rng(1).standard_normal((5, 4))
    g = np.ones((5, 3))
    lin(x)
    gx = lin.backward(g)
    gw = lin.weight.grad.copy()
    np.testing.assert_array_equal(lin.backward(g), gx)
    np.testing.assert_allclose(lin.weight.grad, 2 * gw)
    np.testing.assert_allclose(lin.bias.grad, [10.0, 10.0, 10.0])


def test_linear_init_repr_and_config():
    a, b = cp.Linear(300, 200, rng=5), cp.Linear(300, 200, rng=5)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert a.weight.shape == (200, 300) and a.bias.shape == (200,)
    assert abs(a.weight.data.std() / np.sqrt(2 / 300) - 1) < 0.02
    assert repr(a) == "Linear(in_features=300, out_features=200, dtype=float32)"
    assert a.get_config() == {
        "in_features": 300,
        "out_features": 200,
        "bias": True,
        "dtype": "float32",
    }
    assert a.output_shape((7, 300)) == (7, 200)


def test_linear_bad_input():
    lin = cp.Linear(4, 2)
    with pytest.raises(ValueError, match=r"x has 5 features \(shape \(3, 5\)\).*in_features=4"):
        lin(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"x has 2 features \(shape \(3, 2, 2\)\).*last axis"):
        lin(np.zeros((3, 2, 2), np.float32))
    with pytest.raises(TypeError, match=r"x has dtype float64.*weights are float32"):
        lin(np.zeros((3, 4)))
    with pytest.raises(cp.BackwardBeforeForwardError):
        lin.backward(np.zeros((3, 2), np.float32))
    lin(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"shape of the forward output \(3, 2\)"):
        lin.backward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        cp.Linear(0, 3)
    with pytest.raises(TypeError, match="out_features must be an int"):
        cp.Linear(3, None)


@pytest.mark.parametrize("shape", [(4,), (3, 4), (2, 3, 4), (2, 1, 3, 4), (0, 4)])
def test_linear_takes_any_leading_axes_as_torch(shape):
    torch = _torch()
    lin = cp.Linear(4, 3, rng=1)
    ref = torch.nn.Linear(4, 3)
    ref.weight.data = torch.tensor(lin.weight.data)
    ref.bias.data = torch.tensor(lin.bias.data)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape[:-1] + (3,)).astype(np.float32)
    y = lin(x)
    gx = lin.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    yt.backward(torch.tensor(g))
    assert y.shape == tuple(yt.shape) == lin.output_shape(shape)
    assert gx.shape == shape
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(lin.weight.grad, ref.weight.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lin.bias.grad, ref.bias.grad.numpy(), rtol=1e-5, atol=1e-5)
