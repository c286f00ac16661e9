"""MaxUnpool2d: PyTorch parity with MaxPool2d's indices, output_size rules, index validation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import pool_geometry

import cnnpool as cp

torch = pytest.importorskip("torch")
F = torch.nn.functional


@settings(max_examples=30)
@given(data=st.data())
def test_matches_torch_after_max_pool(data):
    k, s, p, _, ceil, H, W = data.draw(pool_geometry(dilation=False))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = (
        np.random.default_rng(data.draw(st.integers(0, 999)))
        .standard_normal((data.draw(st.integers(0, 2)), 2, H, W))
        .astype(dtype)
    )
    pool = cp.MaxPool2d(k, s, p, ceil_mode=ceil)
    y = pool(x)
    unpool = cp.MaxUnpool2d(k, s, p)
    ti = torch.tensor(np.asarray(pool.indices))
    ty = torch.tensor(y, requires_grad=True)
    size = data.draw(st.sampled_from([None, x.shape, x.shape[2:]]))
    try:
        tout = F.max_unpool2d(ty, ti, k, s, p, output_size=size)
    except (ValueError, RuntimeError):
        with pytest.raises(ValueError):  # ceil_mode sizes the default rule cannot reach
            unpool(y, pool.indices, output_size=size)
        return
    out = unpool(y, pool.indices, output_size=size)
    np.testing.assert_array_equal(out, tout.detach().numpy())
    assert out.dtype == dtype and out.shape == tout.shape
    if out.size == 0:
        return  # PyTorch's backward fails on an empty output; ours gives zeros
    g = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    tout.backward(torch.tensor(g))
    np.testing.assert_array_equal(unpool.backward(g), ty.grad.numpy())


def test_default_output_size_and_worked_example():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    pool, unpool = cp.MaxPool2d(2), cp.MaxUnpool2d(2)
    out = unpool(pool(x), pool.indices)
    expected = np.zeros((4, 4))
    expected[1::2, 1::2] = [[5, 7], [13, 15]]
    np.testing.assert_array_equal(out[0, 0], expected)
    g = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(unpool.backward(g)[0, 0], [[5, 7], [13, 15]])
    # (OH - 1) * stride - 2 * padding + kernel
    assert cp.MaxUnpool2d(3, 2, 1).output_size_for((4, 5)) == (7, 9)


def test_output_size_accepts_and_rejects_exactly_what_torch_does():
    y = np.zeros((1, 1, 3, 4))
    idx = np.zeros((1, 1, 3, 4), dtype=np.int64)
    for k, s, p in [(2, 2, 0), (3, 2, 1), (3, 3, 1)]:
        unpool = cp.MaxUnpool2d(k, s, p)
        for h in range(0, 12):
            for size in [(h, 7), (1, 1, h, 7)]:
                try:
                    F.max_unpool2d(torch.tensor(y), torch.tensor(idx), k, s, p, output_size=size)
                    torch_ok = True
                except (ValueError, RuntimeError):
                    torch_ok = False
                try:
                    unpool(y, idx, output_size=size)
                    ours = True
                except ValueError:
                    ours = False
                assert ours == torch_ok, (k, s, p, size)


def test_output_size_errors_name_the_problem():
    unpool = cp.MaxUnpool2d(2)
    y, idx = np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="strictly between 2 and 6"):
        unpool(y, idx, output_size=(6, 4))
    with pytest.raises(ValueError, match="2 \\(H, W\\) or 4"):
        unpool(y, idx, output_size=(1, 4, 4))
    with pytest.raises(TypeError, match="output_size"):
        unpool(y, idx, output_size=(4.0, 4))


def test_out_of_range_indices_are_refused_before_any_write():
    unpool = cp.MaxUnpool2d(2)
    y = np.ones((1, 2, 2, 2))
    for bad in (16, -1, 10**12):
        idx = np.zeros((1, 2, 2, 2), dtype=np.int64)
        idx[0, 1, 1, 1] = bad
        with pytest.raises(ValueError, match=f"indices hold {bad}"):
            unpool(y, idx)
        with pytest.raises(RuntimeError):  # torch refuses these too
            F.max_unpool2d(torch.tensor(y), torch.tensor(idx), 2)
    # a valid index for a larger output size
    idx = np.full((1, 2, 2, 2), 19, dtype=np.int64)
    assert unpool(y, idx, output_size=(5, 5)).reshape(2, -1)[:, 19].tolist() == [1.0, 1.0]


def test_bad_arguments():
    unpool = cp.MaxUnpool2d(2)
    y = np.ones((1, 1, 2, 2))
    with pytest.raises(TypeError, match="integer"):
        unpool(y, np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="shape of y"):
        unpool(y, np.zeros((1, 1, 2, 1), dtype=np.int64))
    with pytest.raises(TypeError, match="float32 or float64"):
        unpool(np.ones((1, 1, 2, 2), dtype=np.int64), np.zeros((1, 1, 2, 2), dtype=np.int64))
    with pytest.raises(cp.BackwardBeforeForwardError):
        cp.MaxUnpool2d(2).backward(np.ones((1, 1, 4, 4)))
    unpool(y, np.zeros((1, 1, 2, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="shape"):
        unpool.backward(np.ones((1, 1, 3, 3)))
    assert repr(unpool) == "MaxUnpool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"
    assert type(unpool)(**unpool.get_config()).get_config() == unpool.get_config()


def test_gradcheck_with_respect_to_y():
    # Non-overlapping windows: with overlap, indices repeat and only equal values
    # (as MaxPool2d produces) make the forward differentiable in each of them.
    x = np.random.default_rng(2).standard_normal((2, 2, 7, 6))
    pool = cp.MaxPool2d(3, 3, 1)
    y = pool(x)
    indices = pool.indices

    class Unpool(cp.Layer):
        def __init__(self):
            self.inner = cp.MaxUnpool2d(3, 3, 1)

        def forward(self, y):
            return self.inner(y, indices, output_size=x.shape)

        def backward(self, g):
            return self.inner.backward(g)

    assert cp.gradcheck(Unpool(), y) < 1e-8
