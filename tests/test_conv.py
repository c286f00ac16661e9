"""Conv2d: the compiled im2col/col2im, finite differences, the NumPy reference, PyTorch."""

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnpool as cp
from cnnpool.conv import _direct, _im2col

# (N, C, H, W, O, kernel, stride, padding, dilation): every path of the kernels.
GEOMETRIES = [
    (2, 2, 5, 6, 3, 3, 1, 0, 1),  # plain, non-square input
    (1, 2, 7, 5, 2, 3, 2, 1, 1),  # stride 2 and padding
    (1, 1, 7, 7, 2, 3, 1, 2, 2),  # dilation with padding
    (2, 3, 4, 5, 2, 1, 1, 0, 1),  # 1x1: the pointwise shortcut (no im2col)
    (1, 2, 5, 5, 2, 1, 2, 1, 1),  # 1x1 with stride and padding: the general path
    (1, 2, 6, 7, 2, (2, 3), (2, 1), (0, 1), (1, 2)),  # a different value on each axis
    (1, 1, 3, 3, 1, 3, 1, 0, 1),  # a single output position
    (1, 1, 5, 4, 1, 2, 3, 1, 1),  # stride > kernel: some inputs are never read
    (1, 2, 4, 4, 1, 3, 1, 3, 1),  # padding larger than half the kernel
]
IDS = [f"N{g[0]}C{g[1]}H{g[2]}W{g[3]}O{g[4]}k{g[5]}s{g[6]}p{g[7]}d{g[8]}" for g in GEOMETRIES]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _layer_and_input(geom, dtype=np.float64, seed=0):
    n, c, h, w, o, k, s, p, d = geom
    rng = np.random.default_rng(seed)
    conv = cp.Conv2d(c, o, k, s, p, d, dtype=dtype, rng=seed)
    conv.bias.data[...] = rng.standard_normal(o)  # a zero bias would hide bias bugs
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    return conv, x


@st.composite
def conv_geometry(draw):
    """A random small geometry whose output is at least 1x1."""
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    span = [di * (ki - 1) + 1 - 2 * pi for ki, pi, di in zip(k, p, d, strict=True)]
    h = draw(st.integers(max(1, span[0]), max(1, span[0]) + 6))
    w = draw(st.integers(max(1, span[1]), max(1, span[1]) + 6))
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (n, c, h, w, o, k, s, p, d)


# ------------------------------------------------------------------ the kernels
@pytest.mark.parametrize("geom", GEOMETRIES, ids=IDS)
def test_col2im_is_the_adjoint_of_im2col(geom):
    # <im2col(x), c> == <x, col2im(c)> for every x and c holds only if col2im
    # adds each column entry back where im2col read it, overlaps accumulated.
    n, c, h, w, o, k, s, p, d = geom
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (k, s, p, d))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w))
    cols = np.full((n, c * kh * kw, oh * ow), np.nan)  # im2col must write every entry
    args = (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    _im2col.im2col(x, cols, *args, 1)
    assert not np.isnan(cols).any()
    np.testing.assert_array_equal(cols, _unrolled(x, *args))
    c_rand = rng.standard_normal(cols.shape)
    back = np.full_like(x, np.nan)  # col2im overwrites: no need to zero it first
    _im2col.col2im(c_rand, back, *args, 1)
    np.testing.assert_allclose(np.sum(cols * c_rand), np.sum(x * back), rtol=1e-12)


def _unrolled(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    """im2col by its definition, through slicing of the zero-padded input."""
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, c = x.shape[:2]
    cols = np.empty((n, c, kh, kw, oh, ow))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[
                :,
                :,
                i * dh : i * dh + sh * (oh - 1) + 1 : sh,
                j * dw : j * dw + sw * (ow - 1) + 1 : sw,
            ]
    return cols.reshape(n, c * kh * kw, oh * ow)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_give_the_same_bits_on_any_thread_count(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 9, 8)).astype(dtype)
    args = (3, 3, 1, 1, 1, 1, 1, 1, 9, 8)
    cols1, cols2 = (np.empty((5, 27, 72), dtype) for _ in range(2))
    _im2col.im2col(x, cols1, *args, 1)
    _im2col.im2col(x, cols2, *args, 3)
    np.testing.assert_array_equal(cols1, cols2)
    g = rng.standard_normal(cols1.shape).astype(dtype)
    gx1, gx2 = np.zeros_like(x), np.zeros_like(x)
    _im2col.col2im(g, gx1, *args, 1)
    _im2col.col2im(g, gx2, *args, 3)
    np.testing.assert_array_equal(gx1, gx2)


def test_im2col_leaves_extra_rows_alone():
    # Conv2d keeps a row of ones after the C*kh*kw unrolled rows for its bias.
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    cols = np.full((1, 10, 4), 7.0)
    _im2col.im2col(x, cols, 3, 3, 1, 1, 0, 0, 1, 1, 2, 2, 1)
    np.testing.assert_array_equal(cols[0, :9], _unrolled(x, 3, 3, 1, 1, 0, 0, 1, 1, 2, 2)[0])
    np.testing.assert_array_equal(cols[0, 9], [7.0] * 4)
    with pytest.raises(ValueError, match="cols must have shape"):
        _im2col.col2im(cols, x, 3, 3, 1, 1, 0, 0, 1, 1, 2, 2, 1)


def test_kernels_refuse_inconsistent_shapes():
    x = np.zeros((1, 2, 5, 5))
    with pytest.raises(ValueError, match="cols must have shape"):
        _im2col.im2col(x, np.zeros((1, 17, 9)), 3, 3, 1, 1, 0, 0, 1, 1, 3, 3, 1)
    with pytest.raises(ValueError, match="output size"):
        _im2col.im2col(x, np.zeros((1, 18, 16)), 3, 3, 1, 1, 0, 0, 1, 1, 4, 4, 1)
    with pytest.raises(ValueError, match="stride"):
        _im2col.col2im(np.zeros((1, 18, 9)), x, 3, 3, 0, 1, 0, 0, 1, 1, 3, 3, 1)


# ------------------------------------------------------- finite differences
@pytest.mark.parametrize("geom", GEOMETRIES, ids=IDS)
def test_gradcheck(geom):
    conv, x = _layer_and_input(geom)
    assert cp.gradcheck(conv, x) < 1e-7


@settings(max_examples=25)
@given(geom=conv_geometry(), seed=st.integers(0, 2**16))
def test_gradcheck_on_random_geometries(geom, seed):
    conv, x = _layer_and_input(geom, seed=seed)
    assert cp.gradcheck(conv, x, seed=seed) < 1e-6


def test_gradcheck_without_bias():
    conv = cp.Conv2d(2, 3, 3, stride=2, padding=1, bias=False, dtype=np.float64, rng=4)
    x = np.random.default_rng(4).standard_normal((2, 2, 5, 4))
    assert conv.parameters() == [conv.weight]
    assert cp.gradcheck(conv, x) < 1e-7


# ------------------------------------------------------ the NumPy reference
@given(geom=conv_geometry(), seed=st.integers(0, 2**16))
def test_matches_reference(geom, seed):
    conv, x = _layer_and_input(geom, seed=seed)
    n, c, h, w, o, k, s, p, d = geom
    stride, padding, dilation = _pair(s), _pair(p), _pair(d)
    y = conv(x)
    want = ref.conv2d(x, conv.weight.data, conv.bias.data, stride, padding, dilation)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(seed + 1).standard_normal(y.shape)
    gx = conv.backward(g)
    rgx, rgw, rgb = ref.conv2d_backward(x, conv.weight.data, g, stride, padding, dilation)
    np.testing.assert_allclose(gx, rgx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, rgw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, rgb, rtol=1e-12, atol=1e-12)


# ------------------------------------------------- direct kernels vs im2col+GEMM
needs_direct = pytest.mark.skipif(
    not _direct.SIMD, reason="this build has no AVX2/FMA: Conv2d uses im2col + GEMM only"
)


@st.composite
def unit_stride_geometry(draw):
    """Unit-stride geometries the direct kernels take, sized to hit every tail.

    Widths around the vector lengths (8 and 16 pixels in float32, 4 and 8 in
    float64), output channels that are not multiples of the 4-channel
    register block, tap counts that are not multiples of 3.
    """
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = tuple(draw(st.integers(0, di * (ki - 1))) for ki, di in zip(k, d, strict=True))
    span = [di * (ki - 1) + 1 - 2 * pi for ki, pi, di in zip(k, p, d, strict=True)]
    h = draw(st.integers(max(1, span[0]), max(1, span[0]) + 5))
    w = draw(st.integers(max(1, span[1]), max(1, span[1]) + 40))
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 9))
    return (n, c, h, w, o, k, 1, p, d)


def _twin_on_gemm(conv):
    """A copy of ``conv`` (same weights) forced onto the im2col + GEMM path."""
    twin = cp.Conv2d(**conv.get_config())
    twin.weight.data[...] = conv.weight.data
    twin.bias.data[...] = conv.bias.data
    twin._direct = False
    return twin


@needs_direct
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(geom=unit_stride_geometry(), seed=st.integers(0, 2**16))
@settings(deadline=None)  # examples: the hypothesis profile (ci 60, long 10,000)
def test_direct_path_matches_gemm_path(dtype, geom, seed):
    if geom[5] == (1, 1) and geom[7] == (0, 0):
        return  # the pointwise shortcut: neither path, checked elsewhere
    conv, x = _layer_and_input(geom, dtype=dtype, seed=seed)
    twin = _twin_on_gemm(conv)
    assert conv._direct and not twin._direct
    y, want = conv(x), twin(x)
    g = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
    gx, want_gx = conv.backward(g), twin.backward(g)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, want, **tol)
    np.testing.assert_allclose(gx, want_gx, **tol)
    np.testing.assert_allclose(conv.weight.grad, twin.weight.grad, **tol)
    np.testing.assert_allclose(conv.bias.grad, twin.bias.grad, **tol)
    np.testing.assert_array_equal(conv.backward(g), gx)  # saved state untouched


@needs_direct
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf, on purpose
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("width", [11, 27, 37])
def test_direct_path_keeps_non_finite_inputs_where_they_belong(dtype, padding, width):
    # The vector loops read past the end of each row (into the next row) and
    # mask those lanes out; an inf or NaN just past a row end must not leak
    # into outputs or weight gradients that do not involve it.  Widths: the
    # row tail in the first, second and third vector of 16 floats (8 doubles).
    rng = np.random.default_rng(7)
    conv = cp.Conv2d(2, 5, 3, padding=padding, dtype=dtype, rng=3)
    conv.bias.data[...] = rng.standard_normal(5)
    x = rng.standard_normal((2, 2, 6, width)).astype(dtype)
    x[0, 0, 2, 0], x[0, 1, 4, 0] = np.inf, np.nan
    x[1, 0, 3, -1], x[1, 1, 0, 0] = -np.inf, np.inf
    y = conv(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = conv.backward(g)
    pair = (padding, padding)
    want = ref.conv2d(x, conv.weight.data, conv.bias.data, padding=pair)
    rgx, rgw, rgb = ref.conv2d_backward(x, conv.weight.data, g, padding=pair)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    assert np.isfinite(y).any() and not np.isfinite(y).all()
    np.testing.assert_allclose(y, want, equal_nan=True, **tol)
    np.testing.assert_allclose(gx, rgx, equal_nan=True, **tol)
    np.testing.assert_allclose(conv.weight.grad, rgw, equal_nan=True, **tol)
    np.testing.assert_allclose(conv.bias.grad, rgb, **tol)


@needs_direct
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("out_channels", [6, 21])  # 21: threads split the weight gradient
def test_direct_path_gives_the_same_bits_on_any_thread_count(dtype, out_channels):
    conv, x = _layer_and_input((5, 3, 9, 21, out_channels, 3, 1, 1, 1), dtype=dtype, seed=2)
    g = np.random.default_rng(3).standard_normal((5, out_channels, 9, 21)).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        cp.set_num_threads(threads)
        try:
            conv.weight.zero_grad()
            conv.bias.zero_grad()
            # Big enough work for threads_for to go parallel.
            y = conv(np.tile(x, (40, 1, 1, 1)))
            gx = conv.backward(np.tile(g, (40, 1, 1, 1)))
            results.append((y, gx, conv.weight.grad.copy(), conv.bias.grad.copy()))
        finally:
            cp.set_num_threads(0)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_direct_kernels_refuse_inconsistent_arrays():
    f32 = np.float32
    x, w = np.zeros((1, 2, 4, 4), f32), np.zeros((3, 2, 3, 3), f32)
    xp = np.zeros(2 * 6 * 6 + _direct.MARGIN, f32)
    out = np.zeros((1, 3, 4, 4), f32)
    fwd = _direct.forward
    with pytest.raises(ValueError, match="xp must hold"):
        fwd(x, xp[: 2 * 6 * 6], w, None, out, 1, 1, 1, 1, 1)  # no room for the margin
    with pytest.raises(ValueError, match="out must have shape"):
        fwd(x, xp, w, None, np.zeros((1, 3, 3, 3), f32), 1, 1, 1, 1, 1)
    with pytest.raises(TypeError, match="weight must have dtype float32"):
        fwd(x, xp, w.astype(np.float64), None, out, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        fwd(np.asfortranarray(x), xp, w, None, out, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="out must be writeable"):
        out.flags.writeable = False
        fwd(x, xp, w, None, out, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        fwd(x, xp, w, np.zeros(2, f32), np.zeros((1, 3, 4, 4), f32), 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="weight must have shape"):
        fwd(x, xp, np.zeros((3, 1, 3, 3), f32), None, np.zeros((1, 3, 4, 4), f32), 1, 1, 1, 1, 1)

    out = np.zeros((1, 3, 4, 4), f32)
    with pytest.raises(ValueError, match="x must be in native byte order"):
        fwd(x.astype(x.dtype.newbyteorder()), xp, w, None, out, 1, 1, 1, 1, 1)
    raw = np.zeros(x.nbytes + 1, np.uint8)[1:]  # a float32 view one byte off
    with pytest.raises(ValueError, match="x must be aligned"):
        fwd(raw.view(f32).reshape(x.shape), xp, w, None, out, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="both <= 2\\*\\*31"):
        fwd(x, xp, w, None, out, 2**62, 2**62, 1, 1, 1)  # no overflow into a "fit"

    g, gx = np.zeros((1, 3, 4, 4), f32), np.zeros((1, 2, 4, 4), f32)
    gw, gb = np.zeros((3, 2, 3, 3), f32), np.zeros(3, f32)
    scratch = np.zeros((1, 3 * 6 * 6 + _direct.MARGIN), f32)
    bwd = _direct.backward
    bwd(xp, g, w, gx, gw, gb, scratch, 1, 1, 1, 1, 1)  # consistent: fine
    with pytest.raises(ValueError, match="padding <= dilation"):
        bwd(xp, g, w, gx, gw, gb, scratch, 3, 3, 1, 1, 1)
    with pytest.raises(ValueError, match="scratch needs one row per thread"):
        bwd(xp, g, w, gx, gw, gb, scratch, 1, 1, 1, 1, 2)
    with pytest.raises(ValueError, match="scratch must hold"):
        bwd(xp, g, w, gx, gw, gb, scratch[:, :10], 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="does not match grad_x"):
        bwd(xp, np.zeros((1, 3, 3, 3), f32), w, gx, gw, gb, scratch, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="weight_grad must have shape"):
        bwd(xp, g, w, gx, gw[:2], gb, scratch, 1, 1, 1, 1, 1)
    with pytest.raises(TypeError, match="grad_out must be float32 or float64"):
        bwd(xp, g.astype(np.int32), w, gx, gw, gb, scratch, 1, 1, 1, 1, 1)


# ----------------------------------------------------------------- PyTorch
def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)  # tiny tensors: worker threads only add overhead
    return torch


def _torch_conv(conv, x, g):
    torch = _torch()
    t = torch.nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        bias=conv.bias is not None,
    )
    t = t.to(getattr(torch, str(x.dtype)))
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(conv.weight.data))
        if conv.bias is not None:
            t.bias.copy_(torch.from_numpy(conv.bias.data))
    tx = torch.tensor(x, requires_grad=True)
    ty = t(tx)
    ty.backward(torch.from_numpy(g))
    tb = None if conv.bias is None else t.bias.grad.numpy()
    return ty.detach().numpy(), tx.grad.numpy(), t.weight.grad.numpy(), tb


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(geom=conv_geometry(), seed=st.integers(0, 2**16), bias=st.booleans())
def test_matches_torch(dtype, geom, seed, bias):
    _torch()
    n, c, h, w, o, k, s, p, d = geom
    conv = cp.Conv2d(c, o, k, s, p, d, bias=bias, dtype=dtype, rng=seed)
    rng = np.random.default_rng(seed)
    if bias:
        conv.bias.data[...] = rng.standard_normal(o)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    y = conv(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = conv.backward(g)
    ty, tgx, tgw, tgb = _torch_conv(conv, x, g)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    assert y.dtype == gx.dtype == conv.weight.grad.dtype == dtype
    np.testing.assert_allclose(y, ty, **tol)
    np.testing.assert_allclose(gx, tgx, **tol)
    np.testing.assert_allclose(conv.weight.grad, tgw, **tol)
    if bias:
        np.testing.assert_allclose(conv.bias.grad, tgb, **tol)


def test_matches_torch_on_a_realistic_layer():
    pytest.importorskip("torch")
    conv = cp.Conv2d(16, 32, 3, padding=1, rng=0)
    rng = np.random.default_rng(0)
    conv.bias.data[...] = rng.standard_normal(32)
    x = rng.standard_normal((4, 16, 16, 16)).astype(np.float32)
    y = conv(x)
    g = rng.standard_normal(y.shape).astype(np.float32)
    gx = conv.backward(g)
    ty, tgx, tgw, tgb = _torch_conv(conv, x, g)
    np.testing.assert_allclose(y, ty, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx, tgx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv.weight.grad, tgw, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(conv.bias.grad, tgb, rtol=1e-4, atol=1e-3)


# Shapes of real networks, scaled down: many channels on small maps (the
# batch-wide GEMM: output planes under 256 pixels), and more than 432 taps on
# rows of at least 16 pixels (direct on an AVX-512 build, im2col elsewhere).
# (N, C, H, W, O, kernel, stride, padding, expected path on AVX-512)
MANY_CHANNELS = [
    (3, 40, 4, 4, 6, 3, 1, 1, "direct"),  # 360 taps: direct on any SIMD build
    (3, 64, 4, 5, 6, 3, 1, 1, "merged"),  # 576 taps on 4x5 maps
    (2, 64, 2, 2, 5, 3, 1, 1, "merged"),  # 2x2 maps, as ResNet-18's last stage
    (3, 20, 9, 7, 7, 3, 2, 1, "merged"),  # stride 2 on an odd size
    (2, 16, 6, 6, 5, 1, 2, 0, "merged"),  # a strided 1x1 shortcut
    (2, 50, 6, 20, 5, 3, 1, 1, "direct"),  # 450 taps on 20-pixel rows
    (1, 64, 4, 4, 3, 3, 1, 1, "per-image"),  # one image: no batch to merge
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geom", MANY_CHANNELS, ids=[str(g[:8]) for g in MANY_CHANNELS])
def test_many_channel_paths_match_torch(dtype, geom):
    _torch()
    n, c, h, w, o, k, s, p, path = geom
    conv = cp.Conv2d(c, o, k, s, p, dtype=dtype, rng=1)
    rng = np.random.default_rng(2)
    conv.bias.data[...] = rng.standard_normal(o)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    y = conv(x)
    taken = conv._saved[0] if isinstance(conv._saved[0], str) else "per-image"
    if path == "direct" and not (conv._direct and (c * k * k <= 432 or _direct.AVX512)):
        path = "merged" if n > 1 and y.shape[2] * y.shape[3] < 256 else "per-image"
    assert taken == path
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = conv.backward(g)
    ty, tgx, tgw, tgb = _torch_conv(conv, x, g)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(y, ty, **tol)
    np.testing.assert_allclose(gx, tgx, **tol)
    np.testing.assert_allclose(conv.weight.grad, tgw, **tol)
    np.testing.assert_allclose(conv.bias.grad, tgb, **tol)
    np.testing.assert_array_equal(conv.backward(g), gx)  # saved state untouched


def test_im2col_refuses_rows_that_are_not_contiguous():
    x = np.zeros((1, 1, 4, 4))
    cols = np.zeros((1, 9, 32))[:, :, ::2]  # rows of stride 2 elements
    with pytest.raises(ValueError, match="contiguous rows"):
        _im2col.im2col(x, cols, 3, 3, 1, 1, 1, 1, 1, 1, 4, 4, 1)
    with pytest.raises(ValueError, match="contiguous rows"):
        _im2col.col2im(cols, x, 3, 3, 1, 1, 1, 1, 1, 1, 4, 4, 1)


# ------------------------------------------------------------- the contract
def test_backward_accumulates_parameter_grads_and_keeps_saved_state():
    conv, x = _layer_and_input(GEOMETRIES[1])
    y = conv(x)
    g = np.random.default_rng(5).standard_normal(y.shape)
    gx1 = conv.backward(g)
    gw1, gb1 = conv.weight.grad.copy(), conv.bias.grad.copy()
    gx2 = conv.backward(g)
    np.testing.assert_array_equal(gx1, gx2)
    np.testing.assert_allclose(conv.weight.grad, 2 * gw1)
    np.testing.assert_allclose(conv.bias.grad, 2 * gb1)
    conv.zero_grad()
    assert not conv.weight.grad.any() and not conv.bias.grad.any()


@pytest.mark.parametrize(
    "geom", [GEOMETRIES[0], GEOMETRIES[1], GEOMETRIES[3]], ids=IDS[:2] + IDS[3:4]
)
def test_backward_uses_the_weights_of_the_forward_pass(geom):
    # Direct path, im2col path (stride 2) and the 1x1 shortcut: an optimizer
    # step between forward and backward must not change the input gradient.
    conv, x = _layer_and_input(geom)
    y = conv(x)
    g = np.random.default_rng(6).standard_normal(y.shape)
    want = ref.conv2d_backward(
        x, conv.weight.data.copy(), g, _pair(geom[6]), _pair(geom[7]), _pair(geom[8])
    )[0]
    conv.weight.data += 1.0  # in place, as the optimizers do
    np.testing.assert_allclose(conv.backward(g), want, rtol=1e-12, atol=1e-12)


def test_one_layer_on_changing_input_shapes_matches_fresh_layers():
    # The direct path keeps a plan (padded input, scratch) for the last
    # input shape; a new shape must get a new one, and the old answers back.
    conv, _ = _layer_and_input((2, 3, 8, 8, 4, 3, 1, 1, 1), seed=4)
    for shape in [(2, 3, 8, 8), (1, 3, 11, 6), (2, 3, 8, 8), (3, 3, 5, 9)]:
        rng = np.random.default_rng(shape[2])
        x = rng.standard_normal(shape)
        fresh = cp.Conv2d(3, 4, 3, padding=1, rng=0, dtype=np.float64)
        fresh.weight.data[...] = conv.weight.data
        fresh.bias.data[...] = conv.bias.data
        y = conv(x)
        np.testing.assert_array_equal(y, fresh(x))
        g = rng.standard_normal(y.shape)
        conv.weight.zero_grad()
        conv.bias.zero_grad()
        np.testing.assert_array_equal(conv.backward(g), fresh.backward(g))
        np.testing.assert_array_equal(conv.weight.grad, fresh.weight.grad)
        np.testing.assert_array_equal(conv.bias.grad, fresh.bias.grad)


def test_second_forward_of_same_shape_replaces_the_first():
    # The column buffer is reused between forwards of one shape: backward
    # must see the columns of the latest input, not a mix.
    conv, x1 = _layer_and_input(GEOMETRIES[0])
    x2 = np.random.default_rng(9).standard_normal(x1.shape)
    conv(x1)
    y = conv(x2)
    g = np.ones_like(y)
    conv.backward(g)
    _, want_gw, _ = ref.conv2d_backward(x2, conv.weight.data, g)
    np.testing.assert_allclose(conv.weight.grad, want_gw, rtol=1e-12)


def test_input_is_not_modified_and_any_layout_is_accepted():
    conv, x = _layer_and_input(GEOMETRIES[0])
    want = conv(x)
    fortran = np.asfortranarray(x)
    wide = np.zeros(x.shape[:3] + (2 * x.shape[3],))
    wide[..., ::2] = x
    strided = wide[..., ::2]
    readonly = x.copy()
    readonly.flags.writeable = False
    for variant in (fortran, strided, readonly):
        before = variant.copy()
        np.testing.assert_array_equal(conv(variant), want)
        np.testing.assert_array_equal(variant, before)


def test_empty_batch():
    conv = cp.Conv2d(2, 3, 3, padding=1, rng=0)
    y = conv(np.zeros((0, 2, 5, 5), np.float32))
    assert y.shape == (0, 3, 5, 5)
    assert conv.backward(y).shape == (0, 2, 5, 5)


def test_output_shape_and_repr():
    conv = cp.Conv2d(3, 8, (3, 5), stride=2, padding=(1, 2), dilation=1, bias=False)
    assert conv.output_shape((4, 3, 17, 20)) == (4, 8, 9, 10)
    assert conv(np.zeros((4, 3, 17, 20), np.float32)).shape == (4, 8, 9, 10)
    text = repr(conv)
    assert text.startswith("Conv2d(3, 8, kernel_size=(3, 5), stride=(2, 2)")
    assert "bias=False" in text


# --------------------------------------------------------- initialisation
def test_init_is_he_normal_and_reproducible():
    a = cp.Conv2d(16, 64, 3, rng=7)
    b = cp.Conv2d(16, 64, 3, rng=np.random.default_rng(7))
    c = cp.Conv2d(16, 64, 3, dtype=np.float64, rng=7)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.weight.data, c.weight.data.astype(np.float32))
    assert a.weight.data.dtype == np.float32 and a.bias.data.dtype == np.float32
    assert not a.bias.data.any()
    std = np.sqrt(2 / (16 * 9))
    assert abs(c.weight.data.std() / std - 1) < 0.05
    assert abs(c.weight.data.mean()) < 0.05 * std * 4
    assert not np.array_equal(cp.Conv2d(16, 64, 3, rng=8).weight.data, a.weight.data)


# -------------------------------------------------------------- bad input
def test_wrong_channel_count():
    conv = cp.Conv2d(3, 4, 3)
    with pytest.raises(
        ValueError, match=r"x has 2 channels \(shape \(1, 2, 8, 8\)\).*in_channels=3"
    ):
        conv(np.zeros((1, 2, 8, 8), np.float32))


def test_kernel_larger_than_padded_input():
    conv = cp.Conv2d(1, 1, 5, padding=1, dilation=1)
    with pytest.raises(ValueError, match=r"larger than the padded input.*\(1, 1, 2, 6\)"):
        conv(np.zeros((1, 1, 2, 6), np.float32))
    # With padding it fits, as in PyTorch.
    assert conv(np.zeros((1, 1, 3, 6), np.float32)).shape == (1, 1, 1, 4)
    with pytest.raises(ValueError, match="larger than the padded input"):
        cp.Conv2d(1, 1, 3, dilation=3)(np.zeros((1, 1, 6, 6), np.float32))


def test_mixed_dtypes():
    conv = cp.Conv2d(1, 1, 3)
    with pytest.raises(TypeError, match=r"x has dtype float64.*weights are float32"):
        conv(np.zeros((1, 1, 5, 5)))


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (np.zeros((5, 5), np.float32), ValueError, r"must be 4-D .* or, unbatched, 3-D"),
        (np.zeros((1, 1, 1, 5, 5), np.float32), ValueError, "got a 5-D array"),
        (np.zeros((1, 1, 5, 5), np.int64), TypeError, "float32 or float64"),
        ([[[[1, 2, 3]]]], TypeError, "float32"),
        ("image", TypeError, "NumPy array"),
    ],
)
def test_bad_input_arrays(x, error, match):
    with pytest.raises(error, match=match):
        cp.Conv2d(1, 1, 1)(x)


def test_bad_grad_output_and_order():
    conv = cp.Conv2d(1, 2, 3, rng=0)
    with pytest.raises(cp.BackwardBeforeForwardError):
        conv.backward(np.zeros((1, 2, 2, 2), np.float32))
    conv(np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"shape of the forward output \(1, 2, 2, 2\)"):
        conv.backward(np.zeros((1, 2, 3, 3), np.float32))
    with pytest.raises(TypeError, match="dtype of the forward output"):
        conv.backward(np.zeros((1, 2, 2, 2), np.float64))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(in_channels=0), ValueError, "in_channels must be >= 1"),
        (dict(out_channels=2.0), TypeError, "out_channels must be an int"),
        (dict(kernel_size=(3, 3, 3)), TypeError, "kernel_size must be an int or a pair"),
        (dict(stride=0), ValueError, "stride must be >= 1"),
        (dict(padding=-1), ValueError, "padding must be >= 0"),
        (dict(dilation=0), ValueError, "dilation must be >= 1"),
        (dict(bias=1), TypeError, "bias must be a bool"),
        (dict(dtype=np.float16), TypeError, "dtype must be float32 or float64"),
        (dict(rng="seed"), TypeError, "rng must be None, an int seed or"),
        (dict(rng=-1), ValueError, "non-negative seed"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    args = dict(in_channels=1, out_channels=1, kernel_size=3) | kwargs
    with pytest.raises(error, match=match):
        cp.Conv2d(**args)
