"""FractionalMaxPool2d against PyTorch (the same ``_random_samples``) and the NumPy reference.

The tests that need PyTorch say so (``needs_torch``); the others run the
compiled kernel without it (the sanitizer build in CI has no PyTorch).
"""

import importlib.util

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from reference import fractional_max_pool2d, fractional_starts, max_pool2d_backward

import cnnpool as cp
from cnnpool import registry
from cnnpool.pooling.strategies import _fractional

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="compares with PyTorch (the test extra)"
)
_SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0]


def _torch_pool(x, kernel, samples, grad, output_size=None, output_ratio=None):
    """PyTorch's output, indices and input gradient for ``samples`` (N, C, 2)."""
    import torch
    import torch.nn.functional as F

    xt = torch.tensor(x, requires_grad=True)
    y, idx = F.fractional_max_pool2d(
        xt,
        kernel,
        output_size=output_size,
        output_ratio=output_ratio,
        return_indices=True,
        _random_samples=torch.from_numpy(np.array(samples)),
    )
    y.backward(torch.from_numpy(np.array(grad)))
    return y.detach().numpy(), idx.numpy(), xt.grad.numpy()


@st.composite
def cases(draw):
    """(kernel, output_size or output_ratio, x, samples, grad) with ties, NaN, infinities."""
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    h = draw(st.integers(k[0], 20))
    w = draw(st.integers(k[1], 20))
    if draw(st.booleans()):
        size = (draw(st.integers(1, h - k[0] + 1)), draw(st.integers(1, w - k[1] + 1)))
        ratio, out = None, size
    else:
        ratio = (draw(st.floats(0.05, 0.95)), draw(st.floats(0.05, 0.95)))
        size, out = None, (int(h * ratio[0]), int(w * ratio[1]))
        assume(min(out) >= 1 and out[0] + k[0] - 1 <= h and out[1] + k[1] - 1 <= w)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["normal", "ties", "specials", "neginf"]))
    if kind == "ties":
        x = rng.integers(0, 3, (n, c, h, w)).astype(dtype)
    elif kind == "specials":
        x = rng.choice(_SPECIALS, (n, c, h, w)).astype(dtype)
    else:
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        if kind == "neginf":
            x[rng.random(x.shape) < 0.6] = -np.inf
    # Samples as PyTorch draws them (in the input's dtype), with the ends of [0, 1).
    samples = rng.random((n, c, 2)).astype(dtype)
    ends = rng.random(samples.shape) < 0.2
    samples[ends] = rng.choice([0.0, np.nextafter(dtype(1), dtype(0))], int(ends.sum()))
    grad = rng.standard_normal((n, c) + out).astype(dtype)
    return k, size, ratio, out, x, samples, grad


@given(cases())
def test_matches_the_reference(case):
    k, size, ratio, out, x, samples, grad = case
    layer = cp.FractionalMaxPool2d(k, size, ratio, samples=samples)
    y = layer(x)
    gx = layer.backward(grad)
    ry, ridx = fractional_max_pool2d(x, k, out, samples)
    assert y.dtype == x.dtype and y.shape == ry.shape
    np.testing.assert_array_equal(y, ry)  # NaN where the reference has NaN
    np.testing.assert_array_equal(layer.indices, ridx)
    np.testing.assert_array_equal(gx, max_pool2d_backward(grad, ridx, x.shape))


@needs_torch
@given(cases())
def test_matches_torch(case):
    k, size, ratio, out, x, samples, grad = case
    layer = cp.FractionalMaxPool2d(k, size, ratio, samples=samples)
    y = layer(x)
    gx = layer.backward(grad)
    ty, tidx, tgx = _torch_pool(x, k, samples, grad, size, ratio)
    assert y.dtype == x.dtype and y.shape == ty.shape
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(layer.indices, tidx)
    assert gx.tobytes() == tgx.tobytes()  # bit for bit, shared winners accumulated in order


def test_samples_columns_are_width_then_height():
    """PyTorch's ``_random_samples[n, c]`` is (u_w, u_h): check which axis each moves."""
    x = np.random.default_rng(0).standard_normal((1, 1, 20, 20))
    for u_w, u_h in ((0.0, 0.9), (0.9, 0.0)):
        layer = cp.FractionalMaxPool2d(1, 6, samples=[[[u_w, u_h]]])
        layer(x)
        rows, cols = layer.indices[0, 0, :, 0] // 20, layer.indices[0, 0, 0, :] % 20
        assert rows.tolist() == fractional_starts(u_h, 20, 6, 1, np.float64)
        assert cols.tolist() == fractional_starts(u_w, 20, 6, 1, np.float64)
    # What torch 2.13 gives for _random_samples = [[[0.0, 0.9]]] (rows moved by 0.9):
    layer = cp.FractionalMaxPool2d(1, 6, samples=[[[0.0, 0.9]]])
    layer(x)
    assert (layer.indices[0, 0, :, 0] // 20).tolist() == [0, 4, 8, 11, 15, 19]
    assert (layer.indices[0, 0, 0, :] % 20).tolist() == [0, 3, 7, 11, 15, 19]


@needs_torch
def test_interval_arithmetic_is_in_the_input_dtype():
    """(i + u) * alpha rounds in float32 for float32 input, as in PyTorch's kernel.

    With alpha = 3 and u just below 1/3, float32 rounds (i + u) * 3 up to an
    integer that float64 stays below: 99 of the 102 windows move by one row.
    """
    u = np.nextafter(np.float32(1 / 3), np.float32(0))
    h, out = 3 * 101 + 1, 102
    starts32 = fractional_starts(u, h, out, 1, np.float32)
    starts64 = fractional_starts(u, h, out, 1, np.float64)
    assert sum(a != b for a, b in zip(starts32, starts64)) == 99
    for dtype, starts in ((np.float32, starts32), (np.float64, starts64)):
        x = np.random.default_rng(1).standard_normal((1, 1, h, 1)).astype(dtype)
        samples = np.array([[[0.0, u]]], dtype)
        layer = cp.FractionalMaxPool2d(1, (out, 1), samples=samples)  # a window per start
        y = layer(x)
        assert layer.indices[0, 0, :, 0].tolist() == starts
        np.testing.assert_array_equal(layer.indices, _torch_pool(x, 1, samples, y, (out, 1))[1])


def test_tie_nan_and_inf_rules():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 3, 2] = x[0, 0, 2, 3] = 1.0  # a tie: the first in row-major order wins
    layer = cp.FractionalMaxPool2d(2, 1, samples=np.zeros((1, 1, 2)))
    assert layer(x)[0, 0, 0, 0] == 1 and layer.indices[0, 0, 0, 0] == 2 * 4 + 3
    x[0, 0, 3, 2] = x[0, 0, 2, 3] = np.nan  # NaN wins, the last of several
    assert np.isnan(layer(x)[0, 0, 0, 0]) and layer.indices[0, 0, 0, 0] == 3 * 4 + 2
    x[:] = -np.inf  # no tap beats -inf: the window's first tap
    assert layer(x)[0, 0, 0, 0] == -np.inf and layer.indices[0, 0, 0, 0] == 2 * 4 + 2


def test_overlapping_windows_accumulate_at_a_shared_winner():
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 9.0
    layer = cp.FractionalMaxPool2d(3, 3, samples=np.full((1, 1, 2), 0.5))
    y = layer(x)
    assert (y == 9).all()  # windows start at 0, 1, 2: all hold (2, 2)
    g = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    gx = layer.backward(g)
    assert gx[0, 0, 2, 2] == g.sum() and np.count_nonzero(gx) == 1


# ------------------------------------------------------------------ randomness


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_draws_are_torch_compatible_samples_kept_per_forward(dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 17, 13)).astype(dtype)
    layer = cp.FractionalMaxPool2d(2, output_ratio=(0.6, 0.7), rng=5)
    y1 = layer(x)
    s1 = layer.last_samples
    assert s1.shape == (3, 4, 2) and s1.dtype == dtype and not s1.flags.writeable
    assert ((s1 >= 0) & (s1 < 1)).all()
    g = rng.standard_normal(y1.shape).astype(dtype)
    ty, tidx, tgx = _torch_pool(x, 2, s1, g, output_ratio=(0.6, 0.7))
    np.testing.assert_array_equal(y1, ty)
    np.testing.assert_array_equal(layer.indices, tidx)
    np.testing.assert_array_equal(layer.backward(g), tgx)
    # fresh draws on every forward, also in evaluation (as PyTorch)
    layer(x)
    assert not np.array_equal(layer.last_samples, s1)
    layer.eval()
    layer(x)
    s3 = layer.last_samples
    assert not np.array_equal(s3, s1)
    # the same seed draws the same samples: rng.random((N, C, 2), dtype=x.dtype)
    np.testing.assert_array_equal(s1, np.random.default_rng(5).random((3, 4, 2), dtype=dtype))
    again = cp.FractionalMaxPool2d(2, output_ratio=(0.6, 0.7), rng=5)
    np.testing.assert_array_equal(again(x), y1)


@needs_torch
def test_backward_uses_the_samples_of_its_own_forward():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 15, 15))
    layer = cp.FractionalMaxPool2d(2, 6, rng=0)
    y = layer(x)
    g = rng.standard_normal(y.shape)
    samples = layer.last_samples
    layer.rng = 99  # a new stream changes later draws only
    expected = _torch_pool(x, 2, samples, g, 6)[2]
    np.testing.assert_array_equal(layer.backward(g), expected)
    np.testing.assert_array_equal(layer.backward(g), expected)  # state is not consumed
    assert not any(isinstance(v, np.ndarray) and v.shape == (2, 3, 2) for v in vars(layer).values())


def test_fixed_samples_are_a_private_copy_used_by_every_forward():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 9, 9)).astype(np.float32)
    given_samples = rng.random((5, 2, 2))  # float64, more rows than the batch
    layer = cp.FractionalMaxPool2d(3, 4, samples=given_samples)
    y = layer(x)
    given_samples[:] = 0.0  # the caller edits its array: the layer keeps its own
    np.testing.assert_array_equal(layer(x), y)
    used = layer.last_samples
    assert used.dtype == np.float32 and used.shape == (2, 2, 2)
    assert not layer.samples.flags.writeable
    np.testing.assert_array_equal(layer.samples[:2].astype(np.float32), used)
    layer.samples = None  # draw again
    layer(x)
    assert not np.array_equal(layer.last_samples, used)


def test_gradcheck():
    x = np.random.default_rng(6).standard_normal((2, 3, 9, 8))
    layer = cp.FractionalMaxPool2d((3, 2), output_ratio=(0.5, 0.7), samples=np.full((2, 3, 2), 0.3))
    assert cp.gradcheck(layer, x) < 1e-6


# -------------------------------------------------------------------- threads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_bit_identical_at_one_and_two_threads(dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 23, 31)).astype(dtype)
    x[rng.random(x.shape) < 0.05] = np.nan
    samples = rng.random((64, 2)).astype(dtype)
    out_shape = (64, 11, 17)
    g = rng.standard_normal(out_shape).astype(dtype)
    results = []
    for threads in (1, 2):
        out, idx = np.empty(out_shape, dtype), np.empty(out_shape, np.int64)
        gx = np.full(x.shape, 5, dtype)  # the kernel zeroes it
        _fractional.forward(x, samples, out, idx, 3, 2, threads)
        _fractional.backward(g, idx, gx, threads)
        results.append((out, idx, gx))
    for a, b in zip(*results, strict=True):
        assert a.tobytes() == b.tobytes()
    ref_y, ref_idx = fractional_max_pool2d(x[:4, None], (3, 2), (11, 17), samples[:4, None])
    np.testing.assert_array_equal(results[0][1][:4], ref_idx[:, 0])


def test_layer_bit_identical_across_thread_settings():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((16, 32, 24, 24)).astype(np.float32)
    before = cp.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            cp.set_num_threads(threads)
            layer = cp.FractionalMaxPool2d(2, output_ratio=0.7, rng=1)
            y = layer(x)
            results.append((y.copy(), layer.backward(np.ones_like(y)).copy()))
    finally:
        cp.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        assert a.tobytes() == b.tobytes()


# -------------------------------------------------------------- shapes and API


@needs_torch
def test_unbatched_input_as_torch():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 11, 10))
    samples = rng.random((1, 3, 2))
    layer = cp.FractionalMaxPool2d(2, (5, 4), return_indices=True, samples=samples)
    y, idx = layer(x)
    assert y.shape == idx.shape == (3, 5, 4) and layer.indices.shape == (3, 5, 4)
    g = rng.standard_normal(y.shape)
    gx = layer.backward(g)
    assert gx.shape == x.shape
    import torch
    import torch.nn.functional as F

    xt = torch.tensor(x, requires_grad=True)
    ty, tidx = F.fractional_max_pool2d(
        xt, 2, output_size=(5, 4), return_indices=True, _random_samples=torch.tensor(samples)
    )
    ty.backward(torch.tensor(g))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    np.testing.assert_array_equal(gx, xt.grad.numpy())
    assert layer.output_shape((3, 11, 10)) == (3, 5, 4)
    assert layer.output_shape((7, 3, 11, 10)) == (7, 3, 5, 4)
    with pytest.raises(ValueError, match=r"grad_output must have the shape .*\(3, 5, 4\)"):
        layer.backward(np.zeros((1, 3, 5, 4)))


def test_return_indices_and_read_only_results():
    x = np.random.default_rng(10).standard_normal((2, 2, 8, 8)).astype(np.float32)
    layer = cp.FractionalMaxPool2d(2, output_ratio=0.5, return_indices=True, rng=0)
    y, idx = layer(x)
    assert y.shape == idx.shape == (2, 2, 4, 4) and idx.dtype == np.int64
    assert not idx.flags.writeable and not layer.last_samples.flags.writeable
    assert cp.FractionalMaxPool2d(2, 4).indices is None
    assert cp.FractionalMaxPool2d(2, 4).last_samples is None


def test_empty_batch():
    layer = cp.FractionalMaxPool2d(2, 3, rng=0)
    y = layer(np.zeros((0, 2, 6, 6), np.float32))
    assert y.shape == (0, 2, 3, 3)
    assert layer.backward(np.zeros_like(y)).shape == (0, 2, 6, 6)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    drawn = cp.FractionalMaxPool2d((2, 3), output_ratio=(0.5, 0.6), rng=4)
    drawn(x)  # the stream moves on; the saved state continues from here
    fixed = cp.FractionalMaxPool2d(
        3, (4, 5), return_indices=True, samples=rng.random((2, 3, 2)).astype(np.float32)
    )
    model = cp.Sequential(drawn, fixed)
    path = tmp_path / "frac.npz"
    model.save(path)
    loaded = cp.load(path)
    a, b = loaded.layers
    assert type(a) is cp.FractionalMaxPool2d and a.get_config() == drawn.get_config()
    assert b.get_config() == fixed.get_config() and b.return_indices
    np.testing.assert_array_equal(a(x), drawn(x))  # the same next draws
    np.testing.assert_array_equal(b.samples, fixed.samples)
    assert registry.layer_class("FractionalMaxPool2d") is cp.FractionalMaxPool2d
    assert "output_ratio=(0.5, 0.6)" in repr(a) and "return_indices=True" in repr(b)


def test_not_a_fixed_stride_strategy():
    """No short name: make_pool and cnnpool-compare build by (kernel_size, stride)."""
    assert cp.FractionalMaxPool2d not in {registry.pool_class(n) for n in registry.pool_names()}
    assert cp.FractionalMaxPool2d(2, 3).stride is None


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({}, ValueError, "exactly one of output_size and output_ratio, got neither"),
        ({"output_size": 3, "output_ratio": 0.5}, ValueError, "got both"),
        ({"output_ratio": 1.0}, ValueError, r"output_ratio must be between 0 and 1.*1\.0"),
        ({"output_ratio": (0.5, 0.0)}, ValueError, "between 0 and 1"),
        ({"output_ratio": float("nan")}, ValueError, "between 0 and 1"),
        ({"output_ratio": "half"}, TypeError, "output_ratio must be a real"),
        ({"output_ratio": (0.5, 0.5, 0.5)}, TypeError, r"pair of them \(H, W\)"),
        ({"output_size": 0}, ValueError, "output_size must be >= 1"),
        ({"output_size": (3, 2.5)}, TypeError, "output_size must be a integral"),
        ({"output_size": True}, TypeError, "output_size"),
        ({"output_size": 3, "return_indices": "yes"}, TypeError, "return_indices must be a bool"),
        ({"output_size": 3, "samples": np.zeros((2, 2))}, ValueError, r"\(N, C, 2\).*\(2, 2\)"),
        ({"output_size": 3, "samples": [[[0.5, 1.0]]]}, ValueError, r"in \[0, 1\).*1\.0"),
        ({"output_size": 3, "samples": [[[np.nan, 0.1]]]}, ValueError, r"in \[0, 1\)"),
        ({"output_size": 3, "samples": [[[-0.1, 0.1]]]}, ValueError, r"\(0, 0, 0\)"),
        ({"output_size": 3, "samples": [[["a", "b"]]]}, TypeError, "float array"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        cp.FractionalMaxPool2d(2, **kwargs)


def test_bad_inputs_name_the_shapes():
    x = np.zeros((2, 3, 6, 5), np.float32)
    with pytest.raises(
        ValueError,
        match=r"output height of 5 with kernel height 3 needs an input "
        r"height of at least 7.*\(H, W\) = \(6, 5\)",
    ):
        cp.FractionalMaxPool2d(3, (5, 2))(x)
    with pytest.raises(ValueError, match=r"output width of 5 .* at least 6.*\(6, 5\)"):
        cp.FractionalMaxPool2d(2, (2, 5))(x)
    with pytest.raises(ValueError, match=r"gives an output width of 0 .*\(6, 5\)"):
        cp.FractionalMaxPool2d(1, output_ratio=(0.5, 0.1))(x)
    with pytest.raises(ValueError, match=r"samples of shape \(1, 3, 2\) do not fit .*N = 2"):
        cp.FractionalMaxPool2d(2, 2, samples=np.zeros((1, 3, 2)))(x)
    with pytest.raises(ValueError, match=r"C = 3"):
        cp.FractionalMaxPool2d(2, 2, samples=np.zeros((2, 4, 2)))(x)
    almost_one = np.full((2, 3, 2), 1 - 2**-30)  # 1.0 once in float32
    with pytest.raises(ValueError, match="samples converted to float32 must all be in"):
        cp.FractionalMaxPool2d(2, 2, samples=almost_one)(x)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or unbatched \(C, H, W\).*\(6, 5\)"):
        cp.FractionalMaxPool2d(2, 2)(np.zeros((6, 5)))
    with pytest.raises(TypeError, match="float32 or float64"):
        cp.FractionalMaxPool2d(2, 2)(np.zeros((1, 1, 6, 5), np.int32))
    with pytest.raises(ValueError, match="no NumPy tier"):
        cp.FractionalMaxPool2d(2, 2).use_fast_path = False
    with pytest.raises(NotImplementedError, match="differ per"):
        cp.FractionalMaxPool2d(2, 2).gather_windows(x)
    with pytest.raises(cp.BackwardBeforeForwardError):
        cp.FractionalMaxPool2d(2, 2).backward(np.zeros((2, 3, 2, 2), np.float32))


def test_kernels_check_what_they_trust():
    x = np.zeros((2, 7, 7))
    out, idx = np.empty((2, 3, 3)), np.empty((2, 3, 3), np.int64)
    for bad_sample in (1.0, -0.5, np.nan, np.inf):
        samples = np.zeros((2, 2))
        samples[1, 0] = bad_sample
        with pytest.raises(ValueError, match=r"samples hold 1 values outside \[0, 1\)"):
            _fractional.forward(x, samples, out, idx, 2, 2, 1)
    with pytest.raises(ValueError, match=r"samples must have shape \(P, 2\)"):
        _fractional.forward(x, np.zeros((2, 3)), out, idx, 2, 2, 1)
    with pytest.raises(TypeError, match="samples must have dtype float64"):
        _fractional.forward(x, np.zeros((2, 2), np.float32), out, idx, 2, 2, 1)
    with pytest.raises(ValueError, match=r"needs an input of at least \(8, 3\)"):
        _fractional.forward(x, np.zeros((2, 2)), out, idx, 6, 1, 1)
    bad = np.full((2, 3, 3), 49, np.int64)
    with pytest.raises(ValueError, match=r"indices hold 18 positions outside the \(H, W\)"):
        _fractional.backward(np.zeros((2, 3, 3)), bad, np.empty((2, 7, 7)), 1)


@pytest.mark.parametrize("dims", [1, 3])
def test_no_fractional_pooling_in_other_ranks(dims):
    assert cp.FractionalMaxPool2d.for_dims(2) is cp.FractionalMaxPool2d
    with pytest.raises(ValueError, match="2 spatial axes only"):
        cp.FractionalMaxPool2d.for_dims(dims)
