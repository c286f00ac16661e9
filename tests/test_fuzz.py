"""Fuzzing every compiled kernel against the plain NumPy references.

Each property draws a random geometry, dtype, memory layout and input
values (ties, NaN, +-inf, signed zeros, constant planes) and checks a
compiled path against ``reference.py`` (or, for the generic window
gather/scatter, a NumPy gather through an independently computed tap
table).  Inputs are never modified and every result has the input's dtype.

Profiles (``HYPOTHESIS_PROFILE``): ``ci`` keeps the module quick; ``long``
runs at least 10,000 examples per property::

    HYPOTHESIS_PROFILE=long pytest tests/test_fuzz.py --hypothesis-show-statistics
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
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


def _fill(rng, kind, shape, dtype):
    if kind == "ties":
        return rng.integers(-1, 2, size=shape).astype(dtype)
    if kind == "special":
        return rng.choice(SPECIALS, size=shape).astype(dtype)
    if kind == "constant":
        return np.full(shape, rng.choice(SPECIALS), dtype=dtype)
    x = rng.standard_normal(shape).astype(dtype)
    if kind == "nan":
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
    draw, shape, dtype, kinds=("normal", "ties", "special", "constant", "nan", "neginf", "posinf")
):
    """A float array of ``shape`` with awkward values and an awkward memory layout."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(kinds))
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "broadcast" and len(shape) >= 1:
        # stride 0 along the first axis: every item the same, read-only view
        one = _fill(rng, kind, (1,) + tuple(shape[1:]), dtype)
        return np.broadcast_to(one, shape)
    x = _fill(rng, kind, shape, dtype)
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
    from cnnpool import _im2col

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
