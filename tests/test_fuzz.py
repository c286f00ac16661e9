"""Fuzzing every compiled kernel against the plain NumPy references.

Each property draws a random geometry, dtype, memory layout and input
values (ties, NaN, +-inf, signed zeros, constant planes) and checks a
compiled path against ``reference.py`` (or, for the generic window
gather/scatter, a NumPy gather through an independently computed tap
table).  Inputs are never modified and every result has the input's dtype.
The last section checks the stochastic, mixed and gated strategies and
MaxUnpool2d against their documented definitions, recomputed in NumPy.

Profiles (``HYPOTHESIS_PROFILE``): ``ci`` keeps the module quick; ``long``
runs at least 10,000 examples per property::

    HYPOTHESIS_PROFILE=long pytest tests/test_fuzz.py --hypothesis-show-statistics
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st
from reference import (
    _mean_divisor,
    _window_taps,
    max_pool2d,
    max_pool2d_backward,
    mean_pool2d,
    mean_pool2d_backward,
    pool_output_size,
)

import cnnpool as cp
from cnnpool.pooling.geometry import make_geometry

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0])


@pytest.fixture(autouse=True)
def _nan_on_purpose():
    """NaN and inf are fed on purpose here: NumPy's "invalid value" and overflow
    warnings (inf - inf in a reference sum, NaN in a matmul) are expected, and
    silenced for these tests only (the suite turns any other into an error)."""
    with np.errstate(invalid="ignore", over="ignore"):
        yield


LAYOUTS = ["C", "F", "reversed", "sliced", "transposed", "broadcast", "readonly"]


def tol(dtype):
    if dtype == np.float32:
        return {"rtol": 2e-5, "atol": 2e-5}
    return {"rtol": 1e-12, "atol": 1e-12}


# ------------------------------------------------------------------ strategies


@st.composite
def geometries(draw, max_kernel=9, max_extra=14):
    """(kernel, stride, padding, dilation, ceil_mode, H, W), every window non-empty.

    The input is at least as large as the padded span, so the output is
    never empty; windows with no input element at all (dilation plus
    padding) are filtered out (they are refused, see test_geometry_validity).
    Also draws the special cases the kernels treat apart: 2x2 and 3x3
    stride 2 (fused loops) and stride = kernel without padding (tiled).
    """
    special = draw(st.sampled_from(["any", "any", "any", "2x2s2", "3x3s2", "tiled"]))
    if special == "2x2s2":
        k, s, d = (2, 2), (2, 2), (1, 1)
        p = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    elif special == "3x3s2":
        k, s, d = (3, 3), (2, 2), (1, 1)
        p = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    elif special == "tiled":
        k = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
        s, p, d = k, (0, 0), (1, 1)
    else:
        k = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
        s = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
        p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
        d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    ceil = draw(st.booleans())
    size = []
    for kk, pp, dd in zip(k, p, d):
        span = dd * (kk - 1) + 1
        lo = max(1, span - 2 * pp)
        size.append(draw(st.integers(lo, lo + max_extra)))
    H, W = size
    _assume_windows_nonempty(k, s, p, d, ceil, H, W)
    return k, s, p, d, ceil, H, W


@st.composite
def wide_geometries(draw):
    """Rows of more than 256 windows: the blocked interior loops (blocks of 256)."""
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.sampled_from([1, 1, 2])))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (1, draw(st.integers(1, 2)))
    ceil = draw(st.booleans())
    H = draw(st.integers(max(1, k[0] - 2 * p[0]), k[0] + 1))
    W = draw(st.integers(256 * s[1] + 1, 256 * s[1] + 24))
    _assume_windows_nonempty(k, s, p, d, ceil, H, W)
    return k, s, p, d, ceil, H, W


def _assume_windows_nonempty(k, s, p, d, ceil, H, W):
    for size, kk, ss, pp, dd in zip((H, W), k, s, p, d):
        out = pool_output_size(size, kk, ss, pp, dd, ceil)
        assume(out >= 1)
        for o in range(out):
            assume(any(0 <= o * ss - pp + i * dd < size for i in range(kk)))


def _fill(rng, kind, shape, dtype, specials=SPECIALS):
    if kind == "ties":
        return rng.integers(-1, 2, size=shape).astype(dtype)
    if kind == "special":
        return rng.choice(specials, size=shape).astype(dtype)
    if kind == "constant":
        return np.full(shape, rng.choice(specials), dtype=dtype)
    x = rng.standard_normal(shape).astype(dtype)
    if kind == "relu":  # many exact zeros, as after a ReLU
        x = np.maximum(x, 0)
    elif kind == "nan":
        x[rng.random(shape) < 0.3] = np.nan
    elif kind == "neginf":
        x[rng.random(shape) < 0.6] = -np.inf
    elif kind == "posinf":
        x[rng.random(shape) < 0.2] = np.inf
    elif kind == "huge":
        x *= np.finfo(dtype).max / 4
    return x


@st.composite
def arrays(
    draw,
    shape,
    dtype,
    kinds=("normal", "ties", "special", "constant", "nan", "neginf", "posinf"),
    specials=SPECIALS,
):
    """A float array of ``shape`` with awkward values and an awkward memory layout.

    ``specials`` are the values the "special" and "constant" kinds pick from.
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(kinds))
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "broadcast" and len(shape) >= 1:
        # stride 0 along the first axis: every item the same, read-only view
        one = _fill(rng, kind, (1,) + tuple(shape[1:]), dtype, specials)
        return np.broadcast_to(one, shape)
    x = _fill(rng, kind, shape, dtype, specials)
    if layout == "F":
        x = np.asfortranarray(x)
    elif layout == "reversed":
        x = np.flip(np.flip(x).copy())  # same values, every stride negative
    elif layout == "sliced":
        big = np.zeros(tuple(2 * n + 1 for n in shape), dtype=dtype)
        view = big[tuple(slice(1, None, 2) for _ in shape)]
        view[...] = x
        x = view
    elif layout == "transposed":
        x = np.ascontiguousarray(np.swapaxes(x, -1, -2)).swapaxes(-1, -2)
    elif layout == "readonly":
        x = x.copy()
        x.flags.writeable = False
    return x


def _batch(data, max_n=3, max_c=3):
    n = data.draw(st.integers(0, max_n), label="N")
    c = data.draw(st.integers(1, max_c), label="C")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    return n, c, dtype


def _same(a, b):
    """Bit-identical up to NaN payloads: values, NaN places and the signs of zeros."""
    np.testing.assert_array_equal(a, b)
    number = ~np.isnan(b)
    np.testing.assert_array_equal(np.signbit(a[number]), np.signbit(b[number]))


# ----------------------------------------------------------------- max pooling


def _check_max(data, k, s, p, d, ceil, H, W, batch=(3, 3)):
    n, c, dtype = _batch(data, *batch)
    x = data.draw(
        arrays(
            (n, c, H, W),
            dtype,
            kinds=("normal", "ties", "special", "constant", "nan", "neginf", "posinf", "huge"),
        ),
        label="x",
    )
    before = np.array(x, copy=True)
    pool = cp.MaxPool2d(k, s, p, d, ceil)
    y = pool(x)
    y_ref, idx_ref = max_pool2d(np.ascontiguousarray(x), k, s, p, d, ceil)
    assert y.dtype == x.dtype and y.shape == y_ref.shape
    _same(y, y_ref)
    indices = pool.indices
    np.testing.assert_array_equal(indices, idx_ref)
    assert indices.dtype == np.int64 and not indices.flags.writeable
    if indices.size:
        assert 0 <= indices.min() and indices.max() < H * W
    g = data.draw(arrays(y.shape, dtype, kinds=("normal", "ties", "special")), label="grad")
    gx = pool.backward(g)
    assert gx.dtype == x.dtype and gx.shape == x.shape
    ref = max_pool2d_backward(np.ascontiguousarray(g), idx_ref, x.shape)
    _same(gx, ref)  # the same additions in the same order: bit for bit
    # backward twice: same answer, saved indices untouched
    _same(pool.backward(g), gx)
    np.testing.assert_array_equal(pool.indices, idx_ref)
    np.testing.assert_array_equal(x, before)


@given(data=st.data())
def test_fuzz_max_pool(data):
    _check_max(data, *data.draw(geometries(), label="geometry"))


# ---------------------------------------------------------------- mean pooling


def _check_mean(data, k, s, p, d, ceil, H, W, batch=(3, 3)):
    n, c, dtype = _batch(data, *batch)
    # No "huge": the float32 kernel sums in float32 as PyTorch does (so it can
    # overflow where the float64 reference does not).
    x = data.draw(arrays((n, c, H, W), dtype), label="x")
    before = np.array(x, copy=True)
    include = data.draw(st.booleans(), label="count_include_pad")
    override = data.draw(st.one_of(st.none(), st.integers(1, 50)), label="divisor_override")
    pool = cp.MeanPool2d(
        k, s, p, ceil, count_include_pad=include, divisor_override=override, dilation=d
    )
    y = pool(x)
    xc = np.ascontiguousarray(x)
    y_ref = mean_pool2d(xc, k, s, p, ceil, include, d)
    g = data.draw(arrays(y.shape, dtype, kinds=("normal", "ties", "special")), label="grad")
    gc = np.ascontiguousarray(g)
    if override is None:
        g_ref = mean_pool2d_backward(gc, x.shape, k, s, p, ceil, include, d)
    else:  # the reference divides by the count: rescale to the override
        count = np.array(
            [
                [_mean_divisor(i, j, H, W, k, s, p, d, include) for j in range(y.shape[3])]
                for i in range(y.shape[2])
            ]
        )
        scale = count / override
        y_ref = (mean_pool2d(xc.astype(np.float64), k, s, p, ceil, include, d) * scale).astype(
            dtype
        )
        g_ref = mean_pool2d_backward(
            gc.astype(np.float64) * scale, x.shape, k, s, p, ceil, include, d
        ).astype(dtype)
    assert y.dtype == x.dtype and y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, **tol(dtype))
    gx = pool.backward(g)
    assert gx.dtype == x.dtype and gx.shape == x.shape
    np.testing.assert_allclose(gx, g_ref, **tol(dtype))
    _same(pool.backward(g), gx)
    np.testing.assert_array_equal(x, before)


@given(data=st.data())
def test_fuzz_mean_pool(data):
    _check_mean(data, *data.draw(geometries(), label="geometry"))


@given(data=st.data())
def test_fuzz_wide_rows(data):
    """Hundreds of windows per row, through both compiled strategies."""
    geom = data.draw(wide_geometries(), label="geometry")
    if data.draw(st.booleans(), label="max"):
        _check_max(data, *geom, batch=(1, 2))
    else:
        _check_mean(data, *geom, batch=(1, 2))


# ------------------------------------------------- the generic gather/scatter


class _Padded(cp.Pool2d):
    """A do-nothing strategy whose padded taps hold an arbitrary value."""

    def __init__(self, pad_value, *args):
        super().__init__(*args)
        self.pad_value = pad_value


def _reference_taps(H, W, k, s, p, d, out_size):
    """Flat input index of every tap, -1 in the padding, from reference.py alone."""
    oh_n, ow_n = out_size
    taps = np.empty((oh_n, ow_n, k[0] * k[1]), dtype=np.intp)
    for oh in range(oh_n):
        for ow in range(ow_n):
            taps[oh, ow] = [
                t[0] * W + t[1] if t else -1 for t in _window_taps(oh, ow, H, W, k, s, p, d)
            ]
    return taps


@given(data=st.data())
def test_fuzz_gather_scatter(data):
    """Pool2d.gather_windows / scatter_windows (``_windows.pyx``) against NumPy."""
    k, s, p, d, ceil, H, W = data.draw(geometries(max_kernel=6), label="geometry")
    n, c, dtype = _batch(data)
    pad = data.draw(st.sampled_from([0.0, -np.inf, np.inf, np.nan, -0.0, 7.5]), label="pad")
    layer = data.draw(st.sampled_from(["max", "mean", "custom"]), label="layer")
    if layer == "max":
        pool = cp.MaxPool2d(k, s, p, d, ceil)
        pad = -np.inf
    elif layer == "mean":
        pool = cp.MeanPool2d(k, s, p, ceil, dilation=d)
        pad = 0.0
    else:
        pool = _Padded(pad, k, s, p, d, ceil)
    x = data.draw(arrays((n, c, H, W), dtype), label="x")
    xc = np.ascontiguousarray(x)
    geom = pool.geometry_for(H, W)
    oh_n, ow_n = geom.out_size
    assert (oh_n, ow_n) == (
        pool_output_size(H, k[0], s[0], p[0], d[0], ceil),
        pool_output_size(W, k[1], s[1], p[1], d[1], ceil),
    )
    taps = _reference_taps(H, W, k, s, p, d, geom.out_size)
    np.testing.assert_array_equal(geom.taps, taps)

    windows = pool.gather_windows(xc, geom)
    assert windows.shape == (n, c, oh_n, ow_n, k[0] * k[1]) and windows.dtype == dtype
    flat = xc.reshape(n, c, H * W)
    expected = np.where(taps >= 0, flat[..., np.maximum(taps, 0)], dtype(pad))
    _same(windows, expected)

    gw = data.draw(
        arrays(windows.shape, dtype, kinds=("normal", "ties", "special")), label="grad_windows"
    )
    before = np.array(gw, copy=True)
    grad = pool.scatter_windows(gw, x.shape, geom)
    assert grad.shape == x.shape and grad.dtype == dtype
    ref = np.zeros((n * c, H * W), dtype=dtype)
    hit = taps.reshape(-1) >= 0
    plane = np.repeat(np.arange(n * c), hit.sum())
    where = np.tile(taps.reshape(-1)[hit], n * c)
    np.add.at(
        ref, (plane, where), np.ascontiguousarray(gw).reshape(n * c, hit.size)[:, hit].ravel()
    )
    _same(grad, ref.reshape(x.shape))  # same additions in the same order
    np.testing.assert_array_equal(gw, before)


# ------------------------------------------------------------ geometry checks


@given(
    k=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    s=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    d=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    ceil=st.booleans(),
    H=st.integers(1, 20),
    W=st.integers(1, 20),
    data=st.data(),
)
def test_fuzz_geometry_validity(k, s, d, ceil, H, W, data):
    """A geometry is accepted exactly when every window holds an input element.

    Covers ceil_mode windows that would start in the right padding and the
    dilated windows that hold nothing (where a peer library reads and writes
    outside the input); refused geometries raise ValueError naming the sizes.
    """
    p = (data.draw(st.integers(0, k[0] // 2)), data.draw(st.integers(0, k[1] // 2)))
    outs = [
        pool_output_size(sz, kk, ss, pp, dd, ceil) for sz, kk, ss, pp, dd in zip((H, W), k, s, p, d)
    ]
    valid = min(outs) >= 1 and all(
        any(0 <= o * ss - pp + i * dd < sz for i in range(kk))
        for sz, kk, ss, pp, dd, out in zip((H, W), k, s, p, d, outs)
        for o in range(out)
    )
    x = np.zeros((1, 1, H, W))
    for layer in (cp.MaxPool2d(k, s, p, d, ceil), cp.MeanPool2d(k, s, p, ceil, dilation=d)):
        if valid:
            assert layer.output_shape(x.shape) == (1, 1, *outs)
            assert layer(x).shape == (1, 1, *outs)
            assert layer.backward(np.ones((1, 1, *outs))).shape == x.shape
        else:
            with pytest.raises(ValueError, match=rf"\(H, W\) = \({H}, {W}\)"):
                layer(x)
            with pytest.raises(ValueError):
                make_geometry((H, W), k, s, p, d, ceil)


# ------------------------------------------------------- im2col, col2im, conv


@st.composite
def conv_geometries(draw):
    """(kernel, stride, padding, dilation, H, W) with an output of at least 1x1.

    Padding may exceed half the kernel (allowed for convolution), so whole
    rows and columns of taps can fall in the padding.
    """
    k = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    s = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    p = (draw(st.integers(0, 5)), draw(st.integers(0, 5)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    size = []
    for kk, pp, dd in zip(k, p, d):
        lo = max(1, dd * (kk - 1) + 1 - 2 * pp)
        size.append(draw(st.integers(lo, lo + 12)))
    return k, s, p, d, size[0], size[1]


def _conv_out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _im2col_reference(x, k, s, p, d):
    """cols[n, (c*kh + i)*kw + j, oh*OW + ow] from the definition, zero padding."""
    n, c, H, W = x.shape
    oh_n, ow_n = _conv_out(H, k[0], s[0], p[0], d[0]), _conv_out(W, k[1], s[1], p[1], d[1])
    cols = np.zeros((n, c, k[0], k[1], oh_n, ow_n), dtype=x.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            for oh in range(oh_n):
                ih = oh * s[0] - p[0] + i * d[0]
                if not 0 <= ih < H:
                    continue
                for ow in range(ow_n):
                    iw = ow * s[1] - p[1] + j * d[1]
                    if 0 <= iw < W:
                        cols[:, :, i, j, oh, ow] = x[:, :, ih, iw]
    return cols.reshape(n, c * k[0] * k[1], oh_n * ow_n)


def _col2im_reference(cols, x_shape, k, s, p, d):
    """Add every column entry onto the input element it was read from."""
    n, c, H, W = x_shape
    oh_n, ow_n = _conv_out(H, k[0], s[0], p[0], d[0]), _conv_out(W, k[1], s[1], p[1], d[1])
    cols = cols.reshape(n, c, k[0], k[1], oh_n, ow_n)
    x = np.zeros(x_shape, dtype=cols.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            for oh in range(oh_n):
                ih = oh * s[0] - p[0] + i * d[0]
                for ow in range(ow_n):
                    iw = ow * s[1] - p[1] + j * d[1]
                    if 0 <= ih < H and 0 <= iw < W:
                        x[:, :, ih, iw] += cols[:, :, i, j, oh, ow]
    return x


@given(data=st.data())
def test_fuzz_im2col_col2im(data):
    """The compiled ``_im2col`` kernels against the definition, any thread count."""
    from cnnpool.conv import _im2col

    k, s, p, d, H, W = data.draw(conv_geometries(), label="geometry")
    n, c, dtype = _batch(data)
    x = np.ascontiguousarray(data.draw(arrays((n, c, H, W), dtype), label="x"))
    oh_n, ow_n = _conv_out(H, k[0], s[0], p[0], d[0]), _conv_out(W, k[1], s[1], p[1], d[1])
    threads = data.draw(st.integers(1, 3), label="threads")
    args = (*k, *s, *p, *d, oh_n, ow_n, threads)
    cols = np.full((n, c * k[0] * k[1], oh_n * ow_n), 12345.0, dtype=dtype)  # stale content
    _im2col.im2col(x, cols, *args)
    _same(cols, _im2col_reference(x, k, s, p, d))
    g = np.ascontiguousarray(
        data.draw(arrays(cols.shape, dtype, kinds=("normal", "ties", "special")), label="cols")
    )
    grad = np.zeros(x.shape, dtype=dtype)
    _im2col.col2im(g, grad, *args)
    np.testing.assert_allclose(grad, _col2im_reference(g, x.shape, k, s, p, d), **tol(dtype))


@given(data=st.data())
def test_fuzz_conv2d(data):
    """Conv2d forward and backward (input, weight and bias gradients) against reference.py."""
    from reference import conv2d, conv2d_backward

    k, s, p, d, H, W = data.draw(conv_geometries(), label="geometry")
    n, c, dtype = _batch(data)
    o = data.draw(st.integers(1, 3), label="O")
    bias = data.draw(st.booleans(), label="bias")
    conv = cp.Conv2d(
        c,
        o,
        k,
        s,
        p,
        d,
        bias=bias,
        dtype=dtype,
        rng=data.draw(st.integers(0, 2**32 - 1), label="seed"),
    )
    if bias:
        conv.bias.data[...] = np.arange(o) - 1.0
    x = data.draw(
        arrays((n, c, H, W), dtype, kinds=("normal", "ties", "special", "nan", "posinf")), label="x"
    )
    before = np.array(x, copy=True)
    w = conv.weight.data.astype(np.float64)
    b = conv.bias.data.astype(np.float64) if bias else None
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    y = conv(x)
    assert y.dtype == dtype and y.shape == (
        n,
        o,
        _conv_out(H, k[0], s[0], p[0], d[0]),
        _conv_out(W, k[1], s[1], p[1], d[1]),
    )
    # Rounding: float32 sums of up to C*kh*kw products, bounded by sum |x| |w|.
    eps = 1e-5 if dtype == np.float32 else 1e-12
    scale = conv2d(np.nan_to_num(np.abs(x64), posinf=0), np.abs(w), None, s, p, d) + 1
    y_ref = conv2d(x64, w, b, s, p, d)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
    finite = np.isfinite(y_ref)
    np.testing.assert_array_equal(y[~finite], y_ref[~finite])
    assert np.all(np.abs(y - y_ref)[finite] <= eps * 10 * scale[finite])
    g = data.draw(arrays(y.shape, dtype, kinds=("normal", "ties")), label="grad")
    gx = conv.backward(g)
    gx_ref, gw_ref, gb_ref = conv2d_backward(x64, w, g.astype(np.float64), s, p, d)
    assert gx.dtype == dtype and gx.shape == x.shape
    gscale = np.abs(g).sum() * (np.abs(w).max() + 1) + 1
    np.testing.assert_allclose(gx, gx_ref, rtol=0, atol=eps * 10 * gscale)
    if np.isfinite(x64).all():
        xscale = np.abs(g).sum() * (np.abs(x64).max(initial=0) + 1) + 1
        np.testing.assert_allclose(conv.weight.grad, gw_ref, rtol=0, atol=eps * 10 * xscale)
    if bias:
        np.testing.assert_allclose(
            conv.bias.grad, gb_ref, rtol=0, atol=eps * 10 * (np.abs(g).sum() + 1)
        )
    np.testing.assert_array_equal(x, before)


# ------------------------------------------- the other compiled strategies


def _adaptive_bounds(size, out):
    """PyTorch's adaptive windows: [floor(i*size/out), ceil((i+1)*size/out))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _adaptive_reference(x, out_size, kind):
    """Adaptive max (with PyTorch's tie/NaN rule and flat indices) or mean, by loops."""
    n, c, H, W = x.shape
    rows, cols = _adaptive_bounds(H, out_size[0]), _adaptive_bounds(W, out_size[1])
    y = np.zeros((n, c) + out_size, dtype=np.float64)
    idx = np.zeros((n, c) + out_size, dtype=np.int64)
    for a in range(n):
        for b in range(c):
            for i, (r0, r1) in enumerate(rows):
                for j, (c0, c1) in enumerate(cols):
                    if kind == "mean":
                        y[a, b, i, j] = x[a, b, r0:r1, c0:c1].astype(np.float64).mean()
                        continue
                    best, at = -np.inf, r0 * W + c0
                    for r in range(r0, r1):
                        for q in range(c0, c1):
                            v = x[a, b, r, q]
                            if v > best or np.isnan(v):
                                best, at = v, r * W + q
                    y[a, b, i, j], idx[a, b, i, j] = best, at
    return y.astype(x.dtype), idx


@given(data=st.data())
def test_fuzz_adaptive_pool(data):
    """Adaptive max/mean (``_adaptive.pyx``) against window-by-window loops."""
    H, W = data.draw(st.integers(1, 17), label="H"), data.draw(st.integers(1, 17), label="W")
    out = (data.draw(st.integers(1, 19), label="OH"), data.draw(st.integers(1, 19), label="OW"))
    n, c, dtype = _batch(data)
    kind = data.draw(st.sampled_from(["max", "mean"]), label="kind")
    x = data.draw(arrays((n, c, H, W), dtype), label="x")
    layer = (cp.pooling.AdaptiveMaxPool2d if kind == "max" else cp.pooling.AdaptiveMeanPool2d)(out)
    y = layer(x)
    y_ref, idx_ref = _adaptive_reference(np.ascontiguousarray(x), out, kind)
    assert y.dtype == dtype and y.shape == (n, c) + out
    g = np.ascontiguousarray(
        data.draw(arrays(y.shape, dtype, kinds=("normal", "ties")), label="grad")
    )
    gx = layer.backward(g)
    if kind == "max":
        _same(y, y_ref)
        np.testing.assert_array_equal(layer.indices, idx_ref)
        _same(gx, max_pool2d_backward(g, idx_ref, x.shape))
        return
    np.testing.assert_allclose(y, y_ref, **tol(dtype))
    ref = np.zeros(x.shape)
    rows, cols = _adaptive_bounds(H, out[0]), _adaptive_bounds(W, out[1])
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            ref[:, :, r0:r1, c0:c1] += g[:, :, i : i + 1, j : j + 1] / ((r1 - r0) * (c1 - c0))
    np.testing.assert_allclose(gx, ref, **tol(dtype))


@given(data=st.data())
def test_fuzz_compiled_strategies_match_their_numpy_strategy(data):
    """Lp (the compiled ``_strategy`` driver) and mixed pooling: compiled == NumPy path."""
    k, s, p, d, ceil, H, W = data.draw(geometries(max_kernel=5, max_extra=10), label="geometry")
    n, c, dtype = _batch(data)
    which = data.draw(st.sampled_from(["lp", "mixed", "mixed-per-channel"]), label="layer")
    if which == "lp":
        norm = data.draw(st.sampled_from([1.0, 2.0, 3.0, 1.5, np.inf]), label="norm_type")
        if p != (0, 0) or d != (1, 1):
            p, d = (0, 0), (1, 1)  # Lp has no padding or dilation (as PyTorch)
            assume(
                all(
                    pool_output_size(sz, kk, ss, 0, 1, ceil) >= 1
                    for sz, kk, ss in zip((H, W), k, s)
                )
            )

        def make():
            return cp.pooling.LpPool2d(norm, k, s, ceil)

        # positive inputs: Lp of signed values is NaN by design for odd/fractional p
        x = (
            np.abs(data.draw(arrays((n, c, H, W), dtype, kinds=("normal", "ties")), label="x"))
            + 0.25
        )
    else:
        channels = c if which == "mixed-per-channel" else None

        def make():
            layer = cp.pooling.MixedPool2d(
                k, s, p, d, ceil, alpha=0.3, channels=channels, dtype=dtype
            )
            return layer

        x = data.draw(arrays((n, c, H, W), dtype, kinds=("normal", "ties")), label="x")
    fast, slow = make(), make()
    slow.use_fast_path = False
    y1, y2 = fast(x), slow(x)
    assert y1.dtype == y2.dtype == dtype
    loose = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-9, "atol": 1e-12}
    np.testing.assert_allclose(y1, y2, **loose)
    g = data.draw(arrays(y1.shape, dtype, kinds=("normal", "ties")), label="grad")
    np.testing.assert_allclose(fast.backward(g), slow.backward(g), **loose)
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        np.testing.assert_allclose(a.grad, b.grad, **loose)


# ------------------------------------- stochastic, unpooling, mixed and gated


def _gather_reference(x, taps):
    """Windows (N, C, OH, OW, K) in float64 from a ``_reference_taps`` table, 0 when padded."""
    n, c, H, W = x.shape
    flat = np.asarray(x, dtype=np.float64).reshape(n, c, H * W)
    return np.where(taps >= 0, flat[..., np.maximum(taps, 0)], 0.0)


def _scatter_reference(gw, taps, x_shape):
    """Add window gradients (N, C, OH, OW, K) onto their input elements, in float64."""
    n, c, H, W = x_shape
    out = np.zeros((n * c, H * W))
    hit = taps.reshape(-1) >= 0
    plane = np.repeat(np.arange(n * c), hit.sum())
    where = np.tile(taps.reshape(-1)[hit], n * c)
    with np.errstate(invalid="ignore"):
        np.add.at(out, (plane, where), gw.reshape(n * c, hit.size)[:, hit].ravel())
    return out.reshape(x_shape)


def _assert_close(actual, expected, scale, factor=8, eps=None):
    """``actual`` (any float dtype) against a float64 ``expected`` summed in another order.

    Equal where ``expected`` is not finite; elsewhere within ``factor * eps *
    scale``, ``scale`` bounding the magnitude of everything that was summed
    and ``eps`` that of the working precision (by default ``actual``'s).
    """
    assert actual.shape == expected.shape
    bad = ~np.isfinite(expected)
    np.testing.assert_array_equal(actual[bad], expected[bad])
    err = np.abs(actual.astype(np.float64) - expected)[~bad]
    eps = np.finfo(actual.dtype).eps if eps is None else eps
    limit = (factor * eps * scale)[~bad]
    worst = np.argmax(err - limit) if err.size else 0
    assert np.all(err <= limit), (
        f"off by {err[worst]:.3g} > {limit[worst]:.3g}: got "
        f"{actual[~bad][worst]!r}, expected {expected[~bad][worst]!r}"
    )


# Stochastic pooling documents NaN (the window's output is NaN, with zero
# gradient) and negative values, -inf included (zero activation), but not +inf,
# where sum(r**2) / sum(r) is inf / inf: +inf is left out.
_NO_POSINF = SPECIALS[SPECIALS != np.inf]


@given(data=st.data())
def test_fuzz_stochastic_pool(data):
    """StochasticPool2d against its documented definition, in both modes.

    Evaluation: ``sum(r**2) / sum(r)`` with ``r = max(x, 0)`` over the input
    taps and the documented gradient.  Training: the draws the docstring
    specifies (one ``u`` per window from ``default_rng(seed)``, the first tap
    whose running float64 sum of ``r`` exceeds ``u * S``), the output is the
    drawn element and the gradient goes to it alone.
    """
    k, s, p, d, ceil, H, W = data.draw(geometries(max_kernel=5, max_extra=8), label="geometry")
    n, c, dtype = _batch(data)
    x = data.draw(
        arrays(
            (n, c, H, W),
            dtype,
            kinds=("normal", "relu", "ties", "special", "constant", "nan", "neginf"),
            specials=_NO_POSINF,
        ),
        label="x",
    )
    before = np.array(x, copy=True)
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    training = data.draw(st.booleans(), label="training")
    layer = cp.pooling.StochasticPool2d(k, s, p, d, ceil, rng=seed).train(training)
    state = layer.rng.bit_generator.state
    y = layer(x)
    oh_n = pool_output_size(H, k[0], s[0], p[0], d[0], ceil)
    ow_n = pool_output_size(W, k[1], s[1], p[1], d[1], ceil)
    assert y.dtype == dtype and y.shape == (n, c, oh_n, ow_n)

    taps = _reference_taps(H, W, k, s, p, d, (oh_n, ow_n))
    inside = taps >= 0
    win = _gather_reference(x, taps)
    r = np.where(win > 0, win, np.where(np.isnan(win), win, 0.0))  # max(x, 0), NaN kept
    nan = np.isnan(r).any(axis=-1)
    with np.errstate(invalid="ignore"):
        total = r.sum(axis=-1)
        squares = (r * r).sum(axis=-1)
    live = (total > 0) & ~nan  # windows with a positive element and no NaN
    safe = np.where(live, total, 1.0)
    g = data.draw(arrays(y.shape, dtype, kinds=("normal", "ties", "special")), label="grad")
    g64 = np.asarray(g, dtype=np.float64)

    if not training:
        assert layer.indices is None
        assert layer.rng.bit_generator.state == state  # evaluation draws nothing
        y_ref = np.where(nan, np.nan, np.where(live, squares / safe, 0.0))
        _assert_close(y, y_ref, np.abs(y_ref))
        # d/dx_i = (2 r_i S - sum(r**2)) / S**2 where x_i > 0, else 0
        route = (r > 0) & live[..., None]
        S, Q = safe[..., None], squares[..., None]
        local = np.where(route, (2 * r * S - Q) / S**2, 0.0)
        with np.errstate(invalid="ignore"):  # a zero route passes nothing, even inf or NaN
            gw = np.where(local != 0, local * g64[..., None], 0.0)
            bound = np.where(route, (2 * r * S + Q) / S**2 * np.abs(g64)[..., None], 0.0)
        gx = layer.backward(g)
        assert gx.dtype == dtype and gx.shape == x.shape
        _assert_close(
            gx, _scatter_reference(gw, taps, x.shape), _scatter_reference(bound, taps, x.shape)
        )
        np.testing.assert_array_equal(x, before)
        return

    # The documented draw, recomputed: running sums in float64, tap by tap.
    u = np.random.default_rng(seed).random(y.shape)
    running = np.zeros(y.shape)
    for t in range(r.shape[-1]):
        running = running + r[..., t]
    target = u * running
    running = np.zeros(y.shape)
    drawn = np.full(y.shape, -1)
    for t in range(r.shape[-1]):
        running = running + r[..., t]
        drawn = np.where((drawn < 0) & (running > target), t, drawn)
    drawn = np.where(nan, np.argmax(np.isnan(r), axis=-1), drawn)  # the first NaN
    drawn = np.where(~nan & ~live, np.argmax(inside, axis=-1), drawn)  # the first input tap
    k_taps = np.broadcast_to(taps, y.shape + taps.shape[-1:])
    expected = np.take_along_axis(k_taps, np.maximum(drawn, 0)[..., None], -1)[..., 0]

    indices = layer.indices
    assert indices.dtype == np.int64 and indices.shape == y.shape
    xflat = np.asarray(x, dtype=np.float64).reshape(n, c, H * W)
    picked = np.take_along_axis(xflat, indices.reshape(n, c, oh_n * ow_n), -1).reshape(y.shape)
    # every drawn index is one of its window's input taps ...
    assert (indices[..., None] == taps).any(axis=-1).all()
    # ... a positive one in a live window (also where u * S rounded up to S
    # and no running sum exceeded it, the one case the docstring leaves open)
    assert (picked[live] > 0).all()
    assert np.isnan(picked[nan]).all()
    exact = drawn >= 0
    np.testing.assert_array_equal(indices[exact], expected[exact])
    y_ref = np.where(nan, np.nan, np.where(live, picked, 0.0))
    np.testing.assert_array_equal(y, y_ref)  # the drawn element itself

    # backward: one-hot at the drawn element of each live window, accumulated
    gx = layer.backward(g)
    assert gx.dtype == dtype and gx.shape == x.shape
    ref = np.zeros((n * c, H * W))
    bound = np.zeros((n * c, H * W))
    plane = np.broadcast_to(np.arange(n * c).reshape(n, c, 1, 1), y.shape)
    with np.errstate(invalid="ignore"):
        np.add.at(ref, (plane[live], indices[live]), g64[live])
        np.add.at(bound, (plane[live], indices[live]), np.abs(g64[live]))
    _assert_close(gx, ref.reshape(x.shape), bound.reshape(x.shape))

    # the same seed draws the same elements again
    layer.rng = seed
    _same(layer(x), y)
    np.testing.assert_array_equal(layer.indices, indices)
    np.testing.assert_array_equal(x, before)


@st.composite
def unpool_cases(draw, pooled=None):
    """A MaxUnpool2d call: (y, indices, geometry, output_size argument, x or None).

    Either the output and indices of a MaxPool2d on an awkward input (repeated
    indices then carry equal values), or arbitrary values at random indices
    of the requested output plane, often repeated, now and then outside it.
    ``output_size`` is the default, the input's size, or a size near the
    default, now and then just outside the accepted range.
    """
    k, s, p, d, ceil, H, W = draw(geometries(max_kernel=6, max_extra=10), label="geometry")
    n, c, dtype = draw(
        st.tuples(st.integers(0, 3), st.integers(1, 3), st.sampled_from([np.float32, np.float64])),
        label="batch",
    )
    oh_n = pool_output_size(H, k[0], s[0], p[0], d[0], ceil)
    ow_n = pool_output_size(W, k[1], s[1], p[1], d[1], ceil)
    default = ((oh_n - 1) * s[0] - 2 * p[0] + k[0], (ow_n - 1) * s[1] - 2 * p[1] + k[1])
    which = draw(st.sampled_from(["default", "x.shape", "(H, W)", "near"]), label="output_size")
    if which == "default":
        size, plane = None, default[0] * default[1]
    elif which == "x.shape":
        size, plane = (n, c, H, W), H * W
    elif which == "(H, W)":
        size, plane = [H, W], H * W
    else:
        size = [draw(st.integers(dd - ss + 1, dd + ss - 1)) for dd, ss in zip(default, s)]
        edge = draw(st.sampled_from([None, None, 0, 1]), label="edge")
        if edge is not None:  # just outside the accepted range
            size[edge] = default[edge] + draw(st.sampled_from([-1, 1])) * s[edge]
        size = tuple(size)
        plane = max(size[0], 0) * max(size[1], 0)
    x = None
    if pooled if pooled is not None else draw(st.booleans(), label="pooled"):
        x = draw(
            arrays((n, c, H, W), dtype, kinds=("normal", "ties", "special", "nan", "huge")),
            label="x",
        )
        pool = cp.MaxPool2d(k, s, p, d, ceil)
        y = pool(x)
        indices = pool.indices
    else:
        # indices within the requested output plane, often repeated, now and then not
        y = draw(arrays((n, c, oh_n, ow_n), dtype), label="y")
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
        high = max(1, draw(st.sampled_from([plane, min(plane, 3)]), label="high"))
        indices = rng.integers(0, high, size=y.shape)
        if indices.size and draw(st.booleans(), label="poke"):
            bad = draw(st.sampled_from([-1, plane, plane, 10**12]), label="bad index")
            indices.flat[rng.integers(indices.size)] = bad
        indices = indices.astype(draw(st.sampled_from([np.int64, np.int32]), label="index dtype"))
    return y, indices, (k, s, p), default, size, x


def _unpool_outcome(y, indices, stride, default, size):
    """The documented output plane ``(h, w)``, or why the call must be refused."""
    if size is None:
        h, w = default
    else:
        h, w = size[-2:]
        if not all(dd - ss < want < dd + ss for want, dd, ss in zip((h, w), default, stride)):
            return "refused: output_size not strictly within stride of the default"
    if min(h, w) < 0:
        return "refused: negative output size"
    if indices.size and h * w and (indices.min() < 0 or indices.max() >= h * w):
        return "refused: an index outside the output plane"
    return h, w


@given(case=unpool_cases(), data=st.data())
def test_fuzz_max_unpool(case, data):
    """MaxUnpool2d against a NumPy scatter: ``out[n, c].flat[indices] = y``, zeros elsewhere.

    Repeated indices keep the later (row-major) value; backward reads the
    output gradient at the indices.  Refused calls raise ValueError.
    """
    y, indices, (k, s, p), default, size, x = case
    y_before, i_before = np.array(y, copy=True), np.array(indices, copy=True)
    unpool = cp.MaxUnpool2d(k, s, p)
    shape = _unpool_outcome(y, indices, s, default, size)
    event(shape if isinstance(shape, str) else "unpooled")
    if isinstance(shape, str):
        with pytest.raises(ValueError):
            unpool(y, indices, output_size=size)
        return
    out = unpool(y, indices, output_size=size)
    n, c, oh_n, ow_n = y.shape
    h, w = shape
    assert out.dtype == y.dtype and out.shape == (n, c, h, w)
    m = oh_n * ow_n
    flat = np.asarray(indices, dtype=np.int64).reshape(n * c, m)
    plane = np.repeat(np.arange(n * c), m)
    # the row-major position of the last write to each output element, -1 if none
    last = np.full((n * c, h * w), -1)
    if h * w:
        np.maximum.at(last, (plane, flat.ravel()), np.tile(np.arange(m), n * c))
    ref = np.zeros((n * c, h * w), dtype=y.dtype)
    hit = last >= 0
    ref[hit] = np.asarray(y).reshape(n * c, m)[np.nonzero(hit)[0], last[hit]]
    _same(out, ref.reshape(out.shape))
    if x is not None and (h, w) == x.shape[2:]:
        # unpool(pool(x)) holds x itself at every window's winner
        _same(out, np.where(hit.reshape(out.shape), x, 0).astype(y.dtype))

    g = data.draw(arrays(out.shape, y.dtype, kinds=("normal", "ties", "special")), label="grad")
    gy = unpool.backward(g)
    assert gy.dtype == y.dtype and gy.shape == y.shape
    if h * w:
        g_ref = np.asarray(g).reshape(n * c, h * w)[plane, flat.ravel()].reshape(y.shape)
    else:
        g_ref = np.zeros(y.shape, dtype=y.dtype)  # y reached no output element
    _same(gy, g_ref)
    _same(unpool.backward(g), gy)
    np.testing.assert_array_equal(y, y_before)
    np.testing.assert_array_equal(indices, i_before)


@given(case=unpool_cases(pooled=True), data=st.data())
def test_fuzz_max_unpool_matches_torch(case, data):
    """The same calls through ``torch.nn.functional.max_unpool2d``, where PyTorch is installed.

    Only the MaxPool2d-made cases: with repeated indices carrying different
    values PyTorch's multithreaded CPU kernel keeps an arbitrary one.
    """
    torch = pytest.importorskip("torch")
    y, indices, (k, s, p), default, size, x = case
    unpool = cp.MaxUnpool2d(k, s, p)
    ty = torch.tensor(np.array(y), requires_grad=True)
    try:
        tout = torch.nn.functional.max_unpool2d(
            ty, torch.tensor(np.array(indices, dtype=np.int64)), k, s, p, output_size=size
        )
    except (ValueError, RuntimeError):
        with pytest.raises(ValueError):
            unpool(y, indices, output_size=size)
        return
    out = unpool(y, indices, output_size=size)
    _same(out, tout.detach().numpy())
    if out.size == 0:
        return  # PyTorch's backward fails on an empty output; ours gives zeros
    g = data.draw(arrays(out.shape, y.dtype, kinds=("normal", "ties", "special")), label="grad")
    tout.backward(torch.tensor(np.array(g)))  # a fresh copy: torch refuses negative strides
    _same(unpool.backward(g), ty.grad.numpy())


# Mixed and gated pooling document no NaN or inf semantics (a blend of an
# infinite max and mean is inf - inf, a gate w . x of inf * 0 is NaN): finite
# inputs only, with ties (where the winner's tie rule matters) and signed zeros.
_FINITE = SPECIALS[np.isfinite(SPECIALS)]


@given(data=st.data())
def test_fuzz_gated_and_mixed_pool(data):
    """GatedPool2d and MixedPool2d against ``a * max + (1 - a) * mean``, window by window.

    ``a`` is ``sigmoid(w . window)`` (gated, padded taps adding nothing) or
    the learned ``alpha`` (mixed, one or one per channel, any real value);
    the max is MaxPool2d's (first maximum wins), the mean MeanPool2d's
    (``count_include_pad``).  Backward and the parameter gradients follow
    the documented derivatives.
    """
    k, s, p, d, ceil, H, W = data.draw(geometries(max_kernel=5, max_extra=8), label="geometry")
    n, c, dtype = _batch(data)
    x = data.draw(
        arrays(
            (n, c, H, W), dtype, kinds=("normal", "ties", "special", "constant"), specials=_FINITE
        ),
        label="x",
    )
    before = np.array(x, copy=True)
    which = data.draw(st.sampled_from(["gated", "mixed", "mixed-per-channel"]), label="layer")
    include = data.draw(st.booleans(), label="count_include_pad")
    param_dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="parameter dtype")
    K = k[0] * k[1]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    channels = c if which == "mixed-per-channel" else None
    if which == "gated":
        layer = cp.pooling.GatedPool2d(k, s, p, d, ceil, include, dtype=param_dtype)
        scale = data.draw(st.sampled_from([0.0, 0.3, 1.0, 5.0]), label="weight scale")
        layer.weight.data[:] = rng.standard_normal(K) * scale
        param = layer.weight
    else:
        layer = cp.pooling.MixedPool2d(k, s, p, d, ceil, 0.5, channels, include, dtype=param_dtype)
        layer.alpha.data[:] = rng.uniform(-0.5, 1.5, size=layer.alpha.shape)  # never clipped
        layer.use_fast_path = data.draw(st.booleans(), label="compiled")
        param = layer.alpha
    y = layer(x)
    oh_n = pool_output_size(H, k[0], s[0], p[0], d[0], ceil)
    ow_n = pool_output_size(W, k[1], s[1], p[1], d[1], ceil)
    assert y.dtype == dtype and y.shape == (n, c, oh_n, ow_n)

    taps = _reference_taps(H, W, k, s, p, d, (oh_n, ow_n))
    inside = taps >= 0
    win = _gather_reference(x, taps)
    winner = np.argmax(np.where(inside, win, -np.inf), axis=-1)  # the first maximum
    mx = np.take_along_axis(win, winner[..., None], -1)[..., 0]
    divisor = np.array(
        [[_mean_divisor(i, j, H, W, k, s, p, d, include) for j in range(ow_n)] for i in range(oh_n)]
    )
    mean = win.sum(axis=-1) / divisor
    size = np.abs(mx) + np.abs(win).sum(axis=-1) / divisor  # bounds |max|, |mean|, |max - mean|
    if which == "gated":
        w = np.asarray(param.data, dtype=np.float64)  # the gate's weight per tap
        z = win @ w
        with np.errstate(over="ignore"):
            a = 1 / (1 + np.exp(-z))
        spread = a * (1 - a)  # da/dz
        zsize = np.abs(win) @ np.abs(w)  # bounds the rounding of z
    else:
        alpha = np.asarray(param.data, dtype=np.float64)
        a = np.broadcast_to(alpha.reshape(-1, 1, 1) if channels else alpha[0], y.shape)
        w = np.zeros(K)
        spread = zsize = np.zeros(y.shape)
    y_ref = a * mx + (1 - a) * mean
    blend = np.abs(a) + np.abs(1 - a)
    _assert_close(y, y_ref, (blend + spread * zsize) * size, factor=4 * K)

    g = data.draw(arrays(y.shape, dtype, kinds=("normal", "ties")), label="grad")
    g64 = np.asarray(g, dtype=np.float64)[..., None]
    onehot = np.arange(K) == winner[..., None]
    # dy/dx_t = a [t wins] + (1 - a) / divisor + (max - mean) a (1 - a) w_t
    local = a[..., None] * onehot + ((1 - a) / divisor)[..., None]
    local = local + ((mx - mean) * spread)[..., None] * w
    # rounding: of a itself, of a through z, and of (max - mean) in the slope
    local_bound = (blend + spread * zsize)[..., None] * (1 + size[..., None] * np.abs(w))
    local_bound = local_bound + (spread * size)[..., None] * np.abs(w)
    gx = layer.backward(g)
    assert gx.dtype == dtype and gx.shape == x.shape
    _assert_close(
        gx,
        _scatter_reference(local * g64, taps, x.shape),
        _scatter_reference(local_bound * np.abs(g64), taps, x.shape),
        factor=4 * K,
    )

    # parameter gradient: sum over windows of grad_output * dy/dparameter
    assert param.grad.dtype == param_dtype and param.grad.shape == param.data.shape
    if which == "gated":  # dy/dw_t = (max - mean) a (1 - a) x_t
        per_window = (g64 * ((mx - mean) * spread)[..., None]) * win
        bound = np.abs(g64) * ((blend + spread * (1 + zsize)) * size)[..., None] * np.abs(win)
        p_ref, p_bound = per_window.sum(axis=(0, 1, 2, 3)), bound.sum(axis=(0, 1, 2, 3))
    else:  # dy/dalpha = max - mean
        per_window, bound = g64[..., 0] * (mx - mean), np.abs(g64[..., 0]) * size
        axes = (0, 2, 3) if which == "mixed-per-channel" else None
        p_ref = np.reshape(per_window.sum(axis=axes), param.data.shape)
        p_bound = np.reshape(bound.sum(axis=axes), param.data.shape)
    eps = max(np.finfo(dtype).eps, np.finfo(param_dtype).eps)  # computed in x's dtype
    _assert_close(param.grad, p_ref, p_bound, factor=4 * K, eps=eps)
    np.testing.assert_array_equal(x, before)


@given(data=st.data())
def test_fuzz_gated_gradcheck(data):
    """``cp.gradcheck`` on GatedPool2d, input and weight, small float64 examples.

    The inputs keep the finite differences meaningful, which is no
    property of the layer: distinct values 0.005 apart at least (a shuffled
    grid in [-2, 2], jittered), as a near tie for a window's maximum puts
    the kink inside the central difference; a gate ``|w . window| <= 2``
    and some window whose max and mean differ by 0.1, as the weight
    gradient ``(max - mean) a (1 - a) x`` must stand clear of the rounding
    noise the normwise relative error divides by (it is exactly 0 when
    every window's max equals its mean, 1x1 windows say).
    """
    k, s, p, d, ceil, H, W = data.draw(geometries(max_kernel=3, max_extra=2), label="geometry")
    c = data.draw(st.integers(1, 2), label="C")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    size = c * H * W
    grid = (rng.permutation(size).reshape(1, c, H, W) - size / 2) * (4 / max(size, 4))
    x = grid + rng.uniform(0, 0.005, grid.shape)
    include = data.draw(st.booleans(), label="count_include_pad")
    oh_n = pool_output_size(H, k[0], s[0], p[0], d[0], ceil)
    ow_n = pool_output_size(W, k[1], s[1], p[1], d[1], ceil)
    taps = _reference_taps(H, W, k, s, p, d, (oh_n, ow_n))
    win = _gather_reference(x, taps)
    mx = np.where(taps >= 0, win, -np.inf).max(axis=-1)
    divisor = np.array(
        [[_mean_divisor(i, j, H, W, k, s, p, d, include) for j in range(ow_n)] for i in range(oh_n)]
    )
    assume(np.abs(mx - win.sum(axis=-1) / divisor).max() > 0.1)
    layer = cp.pooling.GatedPool2d(k, s, p, d, ceil, include, dtype=np.float64)
    scale = data.draw(st.sampled_from([0.25, 0.5, 1.0]), label="weight scale")
    layer.weight.data[:] = rng.uniform(-1, 1, k[0] * k[1]) * scale / (k[0] * k[1])
    assert cp.gradcheck(layer, x) < 1e-6
