"""The compiled 3-D and 1-D pooling kernels (``cnnpool.pooling._ext._pool3d``).

Bit for bit against ``torch.nn.functional.max_pool3d/avg_pool3d`` (and
the 1-D functions) and against the plain NumPy reference
(``reference.max_pool_nd`` and friends): values, indices, gradients, over
hypothesis-drawn geometries with padding, dilation, ceil_mode, ties, NaN
and infinities; the same bits at 1 and 2 threads and on both max paths
(separable and window by window); and a clear error for every bad
argument.  The windows come from :func:`cnnpool.pooling.geometry.axis_taps`.
"""

import numpy as np
import pytest
import reference as ref
from hypothesis import assume, given
from hypothesis import strategies as st

from cnnpool.pooling._ext import _pool3d as K
from cnnpool.pooling.geometry import axis_taps, output_size

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the sanitizer build's venv: the NumPy-reference tests still run
    torch = F = None

# The PyTorch parity tests (CI's main venv installs torch==2.13.0).
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


# ------------------------------------------------------------------ helpers


def ranges(size, k, s, p, d=1, ceil_mode=False, pad_after=None):
    """``(start, lo, hi)`` of one axis; ``pad_after`` for asymmetric padding."""
    if pad_after is None:
        out = output_size(size, k, s, p, d, ceil_mode)
    else:
        out = ref.pool_output_size_nd(size, k, s, (p, pad_after), d, ceil_mode)
    taps = axis_taps(size, out, k, s, p, d)
    return np.ascontiguousarray(taps.positions[:, 0]), taps.lo, taps.hi


def axes(spatial, k, s, p, d, ceil_mode):
    return [ranges(spatial[a], k[a], s[a], p[a], d[a], ceil_mode) for a in range(3)]


def assert_same_bits(a, b):
    """Equal bit for bit (NaNs: in the same places; their payloads are not compared)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b))
    uint = np.uint32 if a.dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(np.where(nan, 0, a).view(uint), np.where(nan, 0, b).view(uint))


def volume(shape, dtype, seed, specials):
    """Small integers (many ties), with NaN/inf/-inf sprinkled in when ``specials``."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=shape).astype(dtype)
    x += rng.integers(0, 2, size=shape).astype(dtype) * dtype(0.5)
    if specials:
        pick = rng.random(shape)
        x[pick < 0.05] = np.nan
        x[(pick >= 0.05) & (pick < 0.1)] = np.inf
        x[(pick >= 0.1) & (pick < 0.2)] = -np.inf
    return x


@st.composite
def geometry3d(draw, dilation=True):
    """kernel, stride, padding, dilation, ceil_mode and a (D, H, W) whose windows
    each hold an input element (PyTorch's limits: padding <= kernel // 2).
    ``dilation=False``: avg_pool3d's geometries (no dilation, input >= kernel)."""
    k = tuple(draw(st.integers(1, 3)) for _ in range(3))
    s = tuple(draw(st.integers(1, 3)) for _ in range(3))
    p = tuple(draw(st.integers(0, kk // 2)) for kk in k)
    d = tuple(draw(st.integers(1, 2)) for _ in range(3)) if dilation else (1, 1, 1)
    ceil_mode = draw(st.booleans())
    # avg_pool3d refuses an input smaller than the kernel, padding or not.
    least = [max(1, d[a] * (k[a] - 1) + 1 - 2 * p[a]) if dilation else k[a] for a in range(3)]
    spatial = tuple(draw(st.integers(least[a], 9)) for a in range(3))
    for a in range(3):
        out = output_size(spatial[a], k[a], s[a], p[a], d[a], ceil_mode)
        # A ceil_mode window can fall wholly in the padding (or between
        # dilated taps); make_geometry refuses those before any kernel runs.
        assume(out >= 1 and axis_taps(spatial[a], out, k[a], s[a], p[a], d[a]).count_inside.min())
    return k, s, p, d, ceil_mode, spatial


def torch_max3d(x, k, s, p, d, ceil_mode, g):
    tx = torch.tensor(x, requires_grad=True)
    y, i = F.max_pool3d(tx, k, s, p, d, ceil_mode=ceil_mode, return_indices=True)
    y.backward(torch.tensor(g))
    return y.detach().numpy(), i.numpy(), tx.grad.numpy()


def torch_avg3d(x, k, s, p, ceil_mode, include, override, g):
    tx = torch.tensor(x, requires_grad=True)
    y = F.avg_pool3d(tx, k, s, p, ceil_mode, include, override)
    y.backward(torch.tensor(g))
    return y.detach().numpy(), tx.grad.numpy()


def divisor3d(spatial, k, s, p, ceil_mode, include, override):
    return ref.mean_divisor_nd(spatial, k, s, p, ceil_mode, include, override)


# ------------------------------------------------------------ torch parity


@needs_torch
@given(
    geom=geometry3d(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
    specials=st.booleans(),
)
def test_max3d_matches_torch(geom, dtype, seed, specials):
    k, s, p, d, ceil_mode, spatial = geom
    x = volume((2, 3) + spatial, dtype, seed, specials)
    P = 6
    y, am = K.max_forward_3d(x.reshape((P,) + spatial), *axes(spatial, k, s, p, d, ceil_mode), d)
    g = np.random.default_rng(seed + 1).standard_normal((2, 3) + y.shape[1:]).astype(dtype)
    ty, ti, tgx = torch_max3d(x, k, s, p, d, ceil_mode, g)
    assert_same_bits(y.reshape(ty.shape), ty)
    np.testing.assert_array_equal(am.reshape(ti.shape), ti)
    gx = K.max_backward_3d(g.reshape(y.shape), am, spatial)
    assert_same_bits(gx.reshape(x.shape), tgx)


@needs_torch
@given(
    geom=geometry3d(dilation=False),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
    specials=st.booleans(),
    include=st.booleans(),
    override=st.none() | st.integers(1, 30),
)
def test_mean3d_matches_torch(geom, dtype, seed, specials, include, override):
    k, s, p, d, ceil_mode, spatial = geom
    x = volume((2, 3) + spatial, dtype, seed, specials)
    if not specials:  # also sums that round: random fractions
        x += np.random.default_rng(seed).random(x.shape).astype(dtype) / 3
    div = divisor3d(spatial, k, s, p, ceil_mode, include, override)
    R = axes(spatial, k, s, p, d, ceil_mode)
    y = K.mean_forward_3d(x.reshape((6,) + spatial), *R, d, div)
    g = np.random.default_rng(seed + 1).standard_normal((2, 3) + y.shape[1:]).astype(dtype)
    ty, tgx = torch_avg3d(x, k, s, p, ceil_mode, include, override, g)
    assert_same_bits(y.reshape(ty.shape), ty)
    gx = K.mean_backward_3d(g.reshape(y.shape), spatial, *R, d, div)
    assert_same_bits(gx.reshape(x.shape), tgx)


@needs_torch
@given(
    k=st.integers(1, 5),
    s=st.integers(1, 5),
    d=st.integers(1, 3),
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
    specials=st.booleans(),
)
def test_max1d_matches_torch(k, s, d, data, dtype, seed, specials):
    p = data.draw(st.integers(0, k // 2))
    ceil_mode = data.draw(st.booleans())
    L = data.draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 40))
    out = output_size(L, k, s, p, d, ceil_mode)
    assume(out >= 1 and axis_taps(L, out, k, s, p, d).count_inside.min())
    x = volume((2, 3, L), dtype, seed, specials)
    y, am = K.max_forward_1d(x.reshape(6, L), ranges(L, k, s, p, d, ceil_mode), d)
    g = np.random.default_rng(seed + 1).standard_normal((2, 3, out)).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty, ti = F.max_pool1d(tx, k, s, p, d, ceil_mode=ceil_mode, return_indices=True)
    ty.backward(torch.tensor(g))
    assert_same_bits(y.reshape(ty.shape), ty.detach().numpy())
    np.testing.assert_array_equal(am.reshape(ti.shape), ti.numpy())
    gx = K.max_backward_1d(g.reshape(6, out), am, L)
    assert_same_bits(gx.reshape(x.shape), tx.grad.numpy())


@needs_torch
@given(
    k=st.integers(1, 5),
    s=st.integers(1, 5),
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
    include=st.booleans(),
)
def test_mean1d_matches_torch(k, s, data, dtype, seed, include):
    p = data.draw(st.integers(0, k // 2))
    ceil_mode = data.draw(st.booleans())
    L = data.draw(st.integers(max(1, k - 2 * p), 40))
    out = output_size(L, k, s, p, 1, ceil_mode)
    assume(out >= 1 and axis_taps(L, out, k, s, p, 1).count_inside.min())
    x = np.random.default_rng(seed).standard_normal((2, 3, L)).astype(dtype)
    div = ref.mean_divisor_nd((L,), (k,), (s,), p, ceil_mode, include)
    y = K.mean_forward_1d(x.reshape(6, L), ranges(L, k, s, p, 1, ceil_mode), 1, div)
    g = np.random.default_rng(seed + 1).standard_normal((2, 3, out)).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.avg_pool1d(tx, k, s, p, ceil_mode, include)
    ty.backward(torch.tensor(g))
    assert_same_bits(y.reshape(ty.shape), ty.detach().numpy())
    gx = K.mean_backward_1d(g.reshape(6, out), L, ranges(L, k, s, p, 1, ceil_mode), 1, div)
    assert_same_bits(gx.reshape(x.shape), tx.grad.numpy())


@needs_torch
@pytest.mark.parametrize(
    "k, s, p",
    [
        ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
        ((3, 3, 3), (2, 2, 2), (1, 1, 1)),
        ((3, 3, 3), (1, 1, 1), (1, 1, 1)),
        ((1, 3, 2), (1, 2, 2), (0, 1, 1)),
    ],
)
def test_usual_layers_on_larger_volumes_match_torch(k, s, p):
    """Volumes wide enough for the vector blocks (OW > 256 after rows run together)."""
    spatial = (5, 12, 70)
    x = np.random.default_rng(7).standard_normal((2, 2) + spatial).astype(np.float32)
    x[0, 0, 1, 2, :7] = x[0, 0, 1, 2, 0]  # ties across a run
    R = axes(spatial, k, s, p, (1, 1, 1), False)
    y, am = K.max_forward_3d(x.reshape((4,) + spatial), *R, (1, 1, 1))
    g = np.random.default_rng(8).standard_normal((2, 2) + y.shape[1:]).astype(np.float32)
    ty, ti, tgx = torch_max3d(x, k, s, p, (1, 1, 1), False, g)
    assert_same_bits(y.reshape(ty.shape), ty)
    np.testing.assert_array_equal(am.reshape(ti.shape), ti)
    assert_same_bits(K.max_backward_3d(g.reshape(y.shape), am, spatial).reshape(x.shape), tgx)
    div = divisor3d(spatial, k, s, p, False, True, None)
    ym = K.mean_forward_3d(x.reshape((4,) + spatial), *R, (1, 1, 1), div)
    ty, tgx = torch_avg3d(x, k, s, p, False, True, None, g)
    assert_same_bits(ym.reshape(ty.shape), ty)
    gm = K.mean_backward_3d(g.reshape(y.shape), spatial, *R, (1, 1, 1), div)
    assert_same_bits(gm.reshape(x.shape), tgx)


@needs_torch
def test_all_minus_inf_window_reports_its_first_input_tap():
    """The trap: a window of -inf's (and padding) must not report -1 or a padded tap."""
    x = np.full((1, 1, 3, 4, 5), -np.inf, np.float32)
    k, s, p, d = (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1)
    y, am = K.max_forward_3d(x.reshape(1, 3, 4, 5), *axes((3, 4, 5), k, s, p, d, True), d)
    ty, ti, _ = torch_max3d(x, k, s, p, d, True, np.ones((1, 1) + y.shape[1:], np.float32))
    assert np.all(y == -np.inf) and am.min() >= 0
    np.testing.assert_array_equal(am.reshape(ti.shape), ti)


# ------------------------------------------------------- NumPy reference


@given(
    k=st.tuples(*[st.integers(1, 3)] * 3),
    s=st.tuples(*[st.integers(1, 3)] * 3),
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_asymmetric_padding_matches_the_numpy_reference(k, s, data, dtype, seed):
    """Asymmetric padding (before != after, which PyTorch lacks) only changes the ranges."""
    pads = [(data.draw(st.integers(0, kk // 2)), data.draw(st.integers(0, kk // 2))) for kk in k]
    spatial = tuple(data.draw(st.integers(k[a], 7)) for a in range(3))
    R = [ranges(spatial[a], k[a], s[a], pads[a][0], 1, False, pads[a][1]) for a in range(3)]
    x = volume((1, 2) + spatial, dtype, seed, True)
    y, am = K.max_forward_3d(x.reshape((2,) + spatial), *R, (1, 1, 1))
    ry, ri = ref.max_pool_nd(x, k, s, pads)
    assert_same_bits(y.reshape(ry.shape), ry)
    np.testing.assert_array_equal(am.reshape(ri.shape), ri)
    g = np.random.default_rng(seed).standard_normal(ry.shape).astype(dtype)
    gx = K.max_backward_3d(g.reshape(y.shape), am, spatial)
    assert_same_bits(gx.reshape(x.shape), ref.max_pool_nd_backward(g, ri, x.shape))
    div = ref.mean_divisor_nd(spatial, k, s, pads, False, data.draw(st.booleans()))
    x = np.random.default_rng(seed).standard_normal(x.shape).astype(dtype)
    ym = K.mean_forward_3d(x.reshape((2,) + spatial), *R, (1, 1, 1), div)
    assert_same_bits(ym.reshape(ry.shape), ref.mean_pool_nd(x, k, s, pads, divisor=div))
    gm = K.mean_backward_3d(g.reshape(y.shape), spatial, *R, (1, 1, 1), div)
    want = ref.mean_pool_nd_backward(g, x.shape, k, s, pads, divisor=div)
    assert_same_bits(gm.reshape(x.shape), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dilated_mean_matches_the_numpy_reference(dtype):
    """Mean with dilation (no PyTorch counterpart; the kernels take it for any strategy)."""
    spatial, k, s, p, d = (6, 7, 11), (2, 3, 3), (1, 2, 2), (1, 1, 1), (2, 1, 3)
    x = np.random.default_rng(3).standard_normal((1, 2) + spatial).astype(dtype)
    R = axes(spatial, k, s, p, d, True)
    outs = tuple(len(r[0]) for r in R)
    div = np.arange(1.0, 1.0 + np.prod(outs)).reshape(outs)
    y = K.mean_forward_3d(x.reshape((2,) + spatial), *R, d, div)
    want = ref.mean_pool_nd(x, k, s, p, True, div, d)
    assert_same_bits(y.reshape(want.shape), want)
    g = np.random.default_rng(4).standard_normal(want.shape).astype(dtype)
    gx = K.mean_backward_3d(g.reshape(y.shape), spatial, *R, d, div)
    assert_same_bits(
        gx.reshape(x.shape), ref.mean_pool_nd_backward(g, x.shape, k, s, p, True, div, d)
    )


# ------------------------------------------------- paths, threads, buffers


@pytest.fixture
def window_loop():
    """Every max plane through the window-by-window loop (the large-float32-plane path)."""
    previous = K.set_separable_max(0)
    yield
    K.set_separable_max(previous)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "geom",
    [((2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1)), ((3, 2, 3), (1, 2, 2), (1, 1, 1), (1, 2, 1))],
)
def test_window_loop_gives_the_separable_bits(window_loop, dtype, geom):
    k, s, p, d = geom
    spatial = (5, 9, 10)
    x = volume((4,) + spatial, dtype, 5, True)
    R = axes(spatial, k, s, p, d, True)
    y, am = K.max_forward_3d(x, *R, d)
    previous = K.set_separable_max(1 << 24)
    try:
        y2, am2 = K.max_forward_3d(x, *R, d)
    finally:
        K.set_separable_max(previous)
    assert_same_bits(y, y2)
    np.testing.assert_array_equal(am, am2)
    ry, ri = ref.max_pool_nd(x[None], k, s, p, d, True)
    np.testing.assert_array_equal(am, ri[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_bits_at_one_and_two_threads(dtype):
    spatial, k, s, p = (6, 10, 34), (3, 3, 3), (2, 1, 2), (1, 1, 1)
    x = np.random.default_rng(9).standard_normal((7,) + spatial).astype(dtype)
    R = axes(spatial, k, s, p, (1, 1, 1), True)
    div = divisor3d(spatial, k, s, p, True, False, None)
    one = K.max_forward_3d(x, *R, (1, 1, 1), 1)
    two = K.max_forward_3d(x, *R, (1, 1, 1), 2)
    assert_same_bits(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    g = np.random.default_rng(10).standard_normal(one[0].shape).astype(dtype)
    assert_same_bits(
        K.max_backward_3d(g, one[1], spatial, 1), K.max_backward_3d(g, one[1], spatial, 2)
    )
    assert_same_bits(
        K.mean_forward_3d(x, *R, (1, 1, 1), div, 1), K.mean_forward_3d(x, *R, (1, 1, 1), div, 2)
    )
    assert_same_bits(
        K.mean_backward_3d(g, spatial, *R, (1, 1, 1), div, 1),
        K.mean_backward_3d(g, spatial, *R, (1, 1, 1), div, 2),
    )


def test_out_buffers_are_written_whole_and_returned():
    spatial, k, s, p = (4, 6, 8), (2, 3, 2), (2, 1, 2), (0, 1, 0)
    x = np.random.default_rng(11).standard_normal((3,) + spatial)
    R = axes(spatial, k, s, p, (1, 1, 1), False)
    y, am = K.max_forward_3d(x, *R, (1, 1, 1))
    out = np.full_like(y, np.nan)
    idx = np.full(am.shape, -7, np.int64)
    y2, am2 = K.max_forward_3d(x, *R, (1, 1, 1), out=out, argmax=idx)
    assert y2 is out and am2 is idx
    np.testing.assert_array_equal(out, y)
    np.testing.assert_array_equal(idx, am)
    values, none = K.max_forward_3d(x, *R, (1, 1, 1), indices=False)
    assert none is None
    np.testing.assert_array_equal(values, y)
    g = np.random.default_rng(12).standard_normal(y.shape)
    grad = np.full_like(x, np.nan)  # garbage: the backward must write every element
    assert K.max_backward_3d(g, am, spatial, out=grad) is grad
    np.testing.assert_array_equal(grad, K.max_backward_3d(g, am, spatial))
    div = np.full(y.shape[1:], 12.0)
    grad[...] = np.nan
    assert K.mean_backward_3d(g, spatial, *R, (1, 1, 1), div, out=grad) is grad
    np.testing.assert_array_equal(grad, K.mean_backward_3d(g, spatial, *R, (1, 1, 1), div))


def test_inputs_are_not_written():
    spatial = (3, 4, 5)
    x = np.random.default_rng(13).standard_normal((2,) + spatial).astype(np.float32)
    keep = x.copy()
    R = axes(spatial, (2, 2, 2), (1, 1, 1), (1, 1, 1), (1, 1, 1), False)
    y, am = K.max_forward_3d(x, *R, (1, 1, 1))
    K.mean_forward_3d(x, *R, (1, 1, 1), np.full(y.shape[1:], 8.0))
    np.testing.assert_array_equal(x, keep)


def test_no_planes_gives_empty_outputs():
    R = axes((2, 3, 4), (2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1), False)
    y, am = K.max_forward_3d(np.zeros((0, 2, 3, 4), np.float32), *R, (1, 1, 1))
    assert y.shape == am.shape == (0, 1, 1, 2)
    assert K.max_backward_3d(y, am, (2, 3, 4)).shape == (0, 2, 3, 4)


# --------------------------------------------------------------- bad input

X = np.zeros((2, 3, 4, 5), np.float32)
R3 = [ranges(n, 2, 2, 0) for n in (3, 4, 5)]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: K.max_forward_3d(X.astype(np.float16), *R3, (1, 1, 1)), TypeError, "x must be"),
        (lambda: K.max_forward_3d(X[0], *R3, (1, 1, 1)), ValueError, "x must be 4-D"),
        (lambda: K.max_forward_3d(X[:, :, :, ::2], *R3, (1, 1, 1)), ValueError, "C-contiguous"),
        (lambda: K.max_forward_3d(X, R3[0], R3[1], R3[2][:2], (1, 1, 1)), TypeError, "w must be"),
        (lambda: K.max_forward_3d(X, *R3, (1, 1)), TypeError, "dilation"),
        (lambda: K.max_forward_3d(X, *R3, (1, 0, 1)), ValueError, "h dilation"),
        (
            lambda: K.max_forward_3d(
                X, R3[0], R3[1], tuple(a.astype(np.int32) for a in R3[2]), (1, 1, 1)
            ),
            TypeError,
            "w start",
        ),
        (
            lambda: K.max_forward_3d(
                X, R3[0], R3[1], (R3[2][0], R3[2][1][:1], R3[2][2]), (1, 1, 1)
            ),
            ValueError,
            "same length",
        ),
        # A window reaching past the input (as a geometry for a larger input would).
        (
            lambda: K.max_forward_3d(X, ranges(4, 2, 2, 0), *R3[1:], (1, 1, 1)),
            ValueError,
            "d window 1",
        ),
        (
            lambda: K.max_forward_3d(X, *R3[:2], (R3[2][0] - 1, R3[2][1], R3[2][2]), (1, 1, 1)),
            ValueError,
            "w window 0",
        ),
        (
            lambda: K.max_forward_3d(X, *R3[:2], (R3[2][0], R3[2][2], R3[2][2]), (1, 1, 1)),
            ValueError,
            "lo < hi",
        ),
        (
            lambda: K.max_forward_3d(X, *R3, (1, 1, 1), out=np.zeros((2, 1, 2, 3), np.float64)),
            TypeError,
            "out must have dtype",
        ),
        (
            lambda: K.max_forward_3d(X, *R3, (1, 1, 1), out=np.zeros((2, 1, 2, 3), np.float32)),
            ValueError,
            r"out must have shape \(2, 1, 2, 2\)",
        ),
        (
            lambda: K.max_forward_3d(np.zeros((2, 0, 4, 5), np.float32), *R3, (1, 1, 1)),
            ValueError,
            "non-empty",
        ),
        (
            lambda: K.max_backward_3d(np.zeros((2, 1, 2, 2)), np.full((2, 1, 2, 2), 60), (3, 4, 5)),
            ValueError,
            r"argmax holds indices outside \[0, D\*H\*W\) = \[0, 60\)",
        ),
        (
            lambda: K.max_backward_3d(np.zeros((2, 1, 2, 2)), np.full((2, 1, 2, 2), -1), (3, 4, 5)),
            ValueError,
            "argmax holds indices outside",
        ),
        (
            lambda: K.max_backward_3d(
                np.zeros((2, 1, 2, 2)), np.zeros((2, 1, 2, 3), np.int64), (3, 4, 5)
            ),
            ValueError,
            "same shape",
        ),
        (
            lambda: K.max_backward_3d(
                np.zeros((2, 1, 2, 2)), np.zeros((2, 1, 2, 2), np.intc), (3, 4, 5)
            ),
            TypeError,
            "argmax must have dtype",
        ),
        (
            lambda: K.max_backward_3d(
                np.zeros((2, 1, 2, 2)), np.zeros((2, 1, 2, 2), np.int64), (3, 4)
            ),
            ValueError,
            "in_size",
        ),
        (
            lambda: K.mean_forward_3d(X, *R3, (1, 1, 1), np.ones((1, 2, 3))),
            ValueError,
            r"divisor must have shape \(OD, OH, OW\) = \(1, 2, 2\)",
        ),
        (
            lambda: K.mean_forward_3d(X, *R3, (1, 1, 1), np.ones((1, 2, 2), np.float32)),
            TypeError,
            "divisor must have dtype",
        ),
        (
            lambda: K.mean_backward_3d(
                np.zeros((2, 1, 2, 3), np.float32), (3, 4, 5), *R3, (1, 1, 1), np.ones((1, 2, 2))
            ),
            ValueError,
            "grad_out has shape",
        ),
        (
            lambda: K.max_forward_1d(np.zeros(5), ranges(5, 2, 2, 0), 1),
            ValueError,
            r"x must be a 2-D \(P, L\)",
        ),
        (
            lambda: K.max_forward_1d(
                np.zeros((3, 5)), ranges(5, 2, 2, 0), 1, out=np.zeros((3, 4))[:, ::2]
            ),
            ValueError,
            "out must be C-contiguous",
        ),
        (
            lambda: K.mean_forward_1d(
                np.zeros((3, 5)), ranges(5, 2, 2, 0), 1, np.ones(2), out=np.zeros((3, 3))
            ),
            ValueError,
            r"out must have shape \(3, 2\)",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_in_size_may_be_any_sequence_of_ints():
    spatial = (3, 4, 5)
    x = np.random.default_rng(14).standard_normal((2,) + spatial)
    R = axes(spatial, (2, 2, 2), (1, 2, 2), (0, 1, 1), (1, 1, 1), False)
    y, am = K.max_forward_3d(x, *R, (1, 1, 1))
    g = np.random.default_rng(15).standard_normal(y.shape)
    want = K.max_backward_3d(g, am, spatial)
    np.testing.assert_array_equal(K.max_backward_3d(g, am, [3, 4, 5]), want)
    np.testing.assert_array_equal(K.max_backward_3d(g, am, np.array(spatial)), want)
    div = np.full(y.shape[1:], 8.0)
    np.testing.assert_array_equal(
        K.mean_backward_3d(g, np.array(spatial), *R, (1, 1, 1), div),
        K.mean_backward_3d(g, spatial, *R, (1, 1, 1), div),
    )
