"""Conv2d's groups (depthwise included), padding forms and unbatched input.

Against PyTorch (``torch.nn.functional.conv2d``, which reads "same" and
"valid" itself) and against the plain NumPy reference of
``tests/reference.py`` (which needs no PyTorch, so the kernel tests also run
in CI's sanitizer build).  Every path is exercised and each test says which
one it expects to run:
``depthwise`` (its own kernels, any build), ``direct`` (the
register-blocked kernels: unit stride on an AVX2/FMA build) and the
im2col + GEMM paths (``grouped`` for groups > 1).  A layer is forced off a
path by clearing its ``_depthwise`` / ``_direct`` flag, the same switch its
constructor sets.
"""

import io
import json
import warnings
import zipfile

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnpool as cp
from cnnpool.conv import _direct


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)  # tiny tensors: worker threads only add overhead
    return torch


# ------------------------------------------------------------------ helpers
def _path(conv):
    """The path the last forward took."""
    saved = conv._saved
    if saved[0] == "direct":
        return "depthwise" if saved[3] else "direct"
    return saved[0] if isinstance(saved[0], str) else "gemm"


def _force(conv, mode):
    """Take ``conv`` off the faster paths: "auto", "blocked" (no depthwise
    kernels) or "gemm" (im2col + GEMM only); returns the path expected."""
    if mode in ("blocked", "gemm"):
        conv._depthwise = False
    if mode == "gemm":
        conv._direct = False
    if conv._depthwise:
        return "depthwise"
    if conv._direct and conv._taps <= 432:  # under 432 taps the direct kernels always win
        return "direct"
    if conv._direct:
        return None  # depends on the instruction set: either is right
    return "grouped" if conv.groups > 1 else None


def _explicit_pads(padding, kernel, dilation):
    """(top, bottom, left, right) for any padding form, computed here from
    the definitions (independently of the layer)."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding in ("same", "same_lower"):
        pads = []
        for k, d in zip(kernel, dilation, strict=True):
            total = d * (k - 1)
            after = total - total // 2 if padding == "same" else total // 2
            pads += [total - after, after]
        return tuple(pads)
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


def _torch_reference(conv, x, g, padding):
    """PyTorch's output and gradients for ``conv`` (same weights), in float64.

    "same" and "valid" go to PyTorch as strings (its own reading of them);
    the other forms as an explicit ``F.pad``, whose order is (left, right,
    top, bottom).
    """
    torch = _torch()
    F = torch.nn.functional
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    tw = torch.tensor(conv.weight.data.astype(np.float64), requires_grad=True)
    tb = None if conv.bias is None else torch.tensor(conv.bias.data, dtype=torch.float64)
    if tb is not None:
        tb.requires_grad_(True)
    if padding in ("same", "valid"):
        with warnings.catch_warnings():  # even kernels: "may require a zero-padded copy"
            warnings.simplefilter("ignore", UserWarning)
            ty = F.conv2d(tx, tw, tb, conv.stride, padding, conv.dilation, conv.groups)
    else:
        t, b, left, right = _explicit_pads(padding, conv.kernel_size, conv.dilation)
        xp = F.pad(tx, (left, right, t, b))
        ty = F.conv2d(xp, tw, tb, conv.stride, 0, conv.dilation, conv.groups)
    ty.backward(torch.tensor(g.astype(np.float64)))
    gb = None if tb is None else tb.grad.numpy()
    return ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), gb


def _tol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


def _numpy_reference(conv, x, g, padding):
    """The same from tests/reference.py's definitions, in float64."""
    pads = _explicit_pads(padding, conv.kernel_size, conv.dilation)
    w = conv.weight.data.astype(np.float64)
    b = None if conv.bias is None else conv.bias.data.astype(np.float64)
    args = (conv.stride, pads, conv.dilation, conv.groups)
    y = ref.grouped_conv2d(x, w, b, *args)
    gx, gw, gb = ref.grouped_conv2d_backward(x, w, g.astype(np.float64), *args)
    return y, gx, gw, gb


def _check(conv, x, padding, seed=0, reference=_torch_reference):
    rng = np.random.default_rng(seed)
    y = conv(x)
    g = rng.standard_normal(y.shape).astype(x.dtype)
    gx = conv.backward(g)
    ty, tgx, tgw, tgb = reference(conv, x, g, padding)
    tol = _tol(x.dtype)
    assert y.shape == ty.shape and y.dtype == x.dtype
    np.testing.assert_allclose(y, ty, **tol)
    np.testing.assert_allclose(gx, tgx, **tol)
    np.testing.assert_allclose(conv.weight.grad, tgw, **tol)
    if conv.bias is not None:
        np.testing.assert_allclose(conv.bias.grad, tgb, **tol)
    return y, g, gx


@st.composite
def grouped_geometry(draw):
    """(N, C, H, W, O, kernel, stride, padding, dilation, groups), output at least 1x1."""
    depthwise = draw(st.booleans())
    groups = draw(st.integers(2, 5)) if depthwise else draw(st.integers(1, 3))
    c = groups if depthwise else groups * draw(st.integers(1, 3))
    o = groups * draw(st.integers(1, 3))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    kind = draw(st.sampled_from(["int", "pair", "quad", "same", "same_lower", "valid"]))
    s = (1, 1) if kind.startswith("same") else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if kind == "int":
        p = draw(st.integers(0, 3))
    elif kind == "pair":
        p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    elif kind == "quad":
        p = tuple(draw(st.integers(0, 3)) for _ in range(4))
    else:
        p = kind
    t, b, left, right = _explicit_pads(p, k, d)
    span_h = max(1, d[0] * (k[0] - 1) + 1 - t - b)
    span_w = max(1, d[1] * (k[1] - 1) + 1 - left - right)
    h = draw(st.integers(span_h, span_h + 5))
    w = draw(st.integers(span_w, span_w + 20))  # rows past a vector: the SIMD tails
    n = draw(st.integers(1, 3))
    return (n, c, h, w, o, k, s, p, d, groups)


def _layer(geom, dtype, seed, bias=True):
    n, c, h, w, o, k, s, p, d, groups = geom
    conv = cp.Conv2d(c, o, k, s, p, d, groups=groups, bias=bias, dtype=dtype, rng=seed)
    rng = np.random.default_rng(seed)
    if bias:
        conv.bias.data[...] = rng.standard_normal(o)  # a zero bias would hide bias bugs
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    return conv, x


# ------------------------------------------------------- values and gradients
@pytest.mark.parametrize("mode", ["auto", "blocked", "gemm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(geom=grouped_geometry(), seed=st.integers(0, 2**16), bias=st.booleans())
@settings(deadline=None)
def test_matches_the_reference_on_every_path(mode, dtype, geom, seed, bias):
    conv, x = _layer(geom, dtype, seed, bias)
    expected = _force(conv, mode)
    _, g, gx = _check(conv, x, geom[7], seed, reference=_numpy_reference)
    if expected is not None:
        assert _path(conv) == expected
    np.testing.assert_array_equal(conv.backward(g), gx)  # saved state untouched


@pytest.mark.parametrize("mode", ["auto", "gemm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(geom=grouped_geometry(), seed=st.integers(0, 2**16), bias=st.booleans())
@settings(deadline=None)
def test_matches_torch(mode, dtype, geom, seed, bias):
    conv, x = _layer(geom, dtype, seed, bias)
    expected = _force(conv, mode)
    _check(conv, x, geom[7], seed)
    if expected is not None:
        assert _path(conv) == expected


# Each path named, so that none is skipped silently: (N, C, H, W, O, kernel,
# stride, padding, dilation, groups, path on this build).
SIMD_PATH = "direct" if _direct.SIMD else "grouped"
PATH_CASES = [
    ((2, 6, 9, 21, 6, 3, 1, 1, 1, 6), "depthwise"),
    ((2, 6, 9, 21, 12, 3, 1, "same", 1, 6), "depthwise"),  # channel multiplier 2
    ((3, 4, 7, 37, 12, (2, 4), 1, (1, 0, 3, 0), (2, 1), 4), "depthwise"),  # even, asymmetric
    ((2, 5, 6, 17, 5, 1, 1, 0, 1, 5), "depthwise"),  # 1x1 depthwise: a per-channel scale
    ((2, 6, 9, 21, 6, 3, 2, 1, 1, 6), "depthwise"),  # a stride: the input gradient scatters
    ((2, 6, 9, 21, 6, 3, 1, 3, 1, 6), "depthwise"),  # padding past d*(k-1): scatters too
    ((2, 3, 11, 23, 6, (3, 2), (2, 3), (2, 0, 1, 3), (1, 2), 3), "depthwise"),
    ((2, 6, 9, 21, 9, 3, 1, 1, 1, 3), SIMD_PATH),
    ((2, 8, 8, 19, 4, 3, 1, (0, 2, 1, 1), 2, 2), SIMD_PATH),
    ((2, 6, 9, 11, 9, 3, 2, (1, 0, 0, 1), 1, 3), "grouped"),
    ((2, 6, 5, 5, 9, 1, 1, 0, 1, 3), "grouped"),  # grouped 1x1: no im2col
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("geom", "path"), PATH_CASES, ids=[str(c[0]) for c in PATH_CASES])
def test_each_path_is_taken_and_matches_the_reference(dtype, geom, path):
    conv, x = _layer(geom, dtype, 3)
    y, g, gx = _check(conv, x, geom[7], 4, reference=_numpy_reference)
    assert _path(conv) == path
    gw = conv.weight.grad.copy()
    np.testing.assert_array_equal(conv.backward(g), gx)  # saved state untouched
    np.testing.assert_allclose(conv.weight.grad, 2 * gw, rtol=1e-6)  # accumulated


@pytest.mark.parametrize("geom", [g for g, path in PATH_CASES if path != "grouped"])
def test_depthwise_and_blocked_and_gemm_paths_agree(geom):
    results = []
    for mode in ("auto", "blocked", "gemm"):
        conv, x = _layer(geom, np.float64, 5)
        _force(conv, mode)
        y = conv(x)
        g = np.random.default_rng(6).standard_normal(y.shape)
        results.append((_path(conv), y, conv.backward(g), conv.weight.grad, conv.bias.grad))
    assert len({r[0] for r in results}) >= 2
    for other in results[1:]:
        for a, b in zip(results[0][1:], other[1:], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf, on purpose
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_keeps_non_finite_inputs_where_they_belong(dtype):
    conv = cp.Conv2d(3, 3, 3, padding=1, groups=3, dtype=dtype, rng=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 19)).astype(dtype)
    x[0, 0, 2, 0], x[1, 2, 5, 18], x[0, 1, 0, 9] = np.inf, -np.inf, np.nan
    y = conv(x)
    assert _path(conv) == "depthwise"
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = conv.backward(g)
    ty, tgx, tgw, tgb = _torch_reference(conv, x, g, 1)
    assert np.isfinite(y[0, 2]).all() and np.isfinite(y[1, :2]).all()  # other planes clean
    np.testing.assert_allclose(y, ty, equal_nan=True, **_tol(dtype))
    np.testing.assert_allclose(gx, tgx, equal_nan=True, **_tol(dtype))
    np.testing.assert_allclose(conv.weight.grad, tgw, equal_nan=True, **_tol(dtype))


@pytest.mark.parametrize(
    "geom", [(1, 2, 5, 6, 4, 3, 1, "same", 1, 2), (2, 3, 5, 4, 3, 2, 2, (1, 0, 0, 2), 1, 3)]
)
@pytest.mark.parametrize("mode", ["auto", "blocked", "gemm"])
def test_gradcheck(geom, mode):
    conv, x = _layer(geom, np.float64, 0)
    _force(conv, mode)
    assert cp.gradcheck(conv, x) < 1e-6


# ------------------------------------------------------------------ threads
@pytest.mark.parametrize(
    ("geom", "mode"),
    [
        ((16, 8, 20, 36, 16, 3, 1, "same", 1, 8), "auto"),  # depthwise, multiplier 2
        ((16, 8, 20, 36, 16, 3, 1, "same", 1, 8), "blocked"),
        ((16, 8, 20, 36, 16, 3, 1, (0, 2, 1, 1), 1, 4), "auto"),
        ((16, 8, 20, 36, 16, 3, 2, 1, 1, 4), "gemm"),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_bits_on_one_and_two_threads(geom, mode, dtype):
    results = []
    for threads in (1, 2):
        cp.set_num_threads(threads)
        try:
            conv, x = _layer(geom, dtype, 7)
            _force(conv, mode)
            y = conv(x)
            g = np.random.default_rng(8).standard_normal(y.shape).astype(dtype)
            gx = conv.backward(g)
            results.append((y, gx, conv.weight.grad.copy(), conv.bias.grad.copy()))
        finally:
            cp.set_num_threads(0)
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ padding
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, (2, 5)])
@pytest.mark.parametrize("dilation", [1, 2, (3, 1)])
def test_same_keeps_the_size_and_puts_the_odd_pad_last_as_torch(kernel, dilation):
    conv = cp.Conv2d(2, 3, kernel, padding="same", dilation=dilation, dtype=np.float64, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 7, 8))
    assert conv(x).shape == (2, 3, 7, 8)
    _check(conv, x, "same")
    lower = cp.Conv2d(2, 3, kernel, padding="same_lower", dilation=dilation, rng=0)
    top, bottom, left, right = lower._pads
    assert top >= bottom and left >= right and top + bottom == conv._pads[0] + conv._pads[1]


def test_padding_forms_are_kept_as_given():
    assert cp.Conv2d(1, 1, 3, padding=1).padding == (1, 1)
    assert cp.Conv2d(1, 1, 3, padding=(1, 2)).padding == (1, 2)
    assert cp.Conv2d(1, 1, 3, padding=(1, 1, 2, 2)).padding == (1, 2)  # symmetric: a pair
    assert cp.Conv2d(1, 1, 3, padding=[0, 1, 2, 0]).padding == (0, 1, 2, 0)
    assert cp.Conv2d(1, 1, 3, padding="same").padding == "same"
    assert cp.Conv2d(1, 1, 3, padding="valid")._pads == (0, 0, 0, 0)
    text = repr(cp.Conv2d(4, 4, 3, padding="same", groups=2))
    assert "padding='same'" in text and "groups=2" in text


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(padding="same", stride=2), ValueError, r"padding='same' needs stride 1.*\(2, 2\)"),
        (dict(padding="same_lower", stride=(1, 2)), ValueError, "needs stride 1"),
        (dict(padding="full"), ValueError, r"padding must be .*'valid'.*got 'full'"),
        (dict(padding=(1, 2, 3)), TypeError, r"four ints \(top, bottom, left, right\)"),
        (dict(padding=(1, -1, 0, 0)), ValueError, r"padding \(top, bottom, left, right\)"),
        (dict(padding=(1, 1, 1.5, 1)), TypeError, "got \\(1, 1, 1.5, 1\\)"),
        (dict(padding=-1), ValueError, "padding must be >= 0"),
        (dict(padding=2**40), ValueError, "at most 2"),
        (dict(groups=0), ValueError, "groups must be >= 1"),
        (dict(groups=1.0), TypeError, "groups must be an int"),
        (dict(groups=True), TypeError, "groups must be an int"),
        (dict(groups=4), ValueError, r"groups=4 must divide both in_channels=6 and out_ch"),
        (dict(groups=2**62), ValueError, "groups=4611686018427387904 must divide"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, match):
    with pytest.raises(error, match=match):
        cp.Conv2d(6, 4, 3, **kwargs)


def test_bias_is_no_longer_the_seventh_positional_argument():
    # PyTorch's order: groups comes before bias.  An old positional bias
    # lands on groups and is refused, not read as groups=0/1.
    with pytest.raises(TypeError, match="groups must be an int"):
        cp.Conv2d(2, 2, 3, 1, 0, 1, False)
    assert cp.Conv2d(2, 4, 3, 1, 0, 1, 2, False).bias is None


def test_output_too_small_names_the_padding():
    conv = cp.Conv2d(1, 1, 5, padding=(0, 1, 0, 0))
    with pytest.raises(ValueError, match=r"padding=\(0, 1, 0, 0\) gives output"):
        conv(np.zeros((1, 1, 3, 8), np.float32))


# ------------------------------------------------------------------ unbatched
@pytest.mark.parametrize(
    ("geom", "mode"),
    [
        ((1, 4, 6, 9, 8, 3, 1, "same", 1, 4), "auto"),
        ((1, 4, 6, 9, 8, 3, 1, (1, 0, 0, 2), 1, 2), "auto"),
        ((1, 4, 6, 9, 8, 3, 2, 1, 1, 2), "gemm"),
        ((1, 4, 6, 9, 8, 1, 1, 0, 1, 1), "gemm"),  # the pointwise shortcut
        ((1, 4, 6, 9, 8, 3, 1, 1, 1, 1), "gemm"),
    ],
)
def test_unbatched_input_gives_unbatched_output_and_grad(geom, mode):
    conv, x = _layer(geom, np.float64, 1)
    twin, _ = _layer(geom, np.float64, 1)
    _force(conv, mode)
    _force(twin, mode)
    y = conv(x[0])
    g = np.random.default_rng(2).standard_normal(y.shape)
    gx = conv.backward(g)
    assert y.ndim == 3 and gx.shape == x[0].shape
    assert conv.output_shape(x[0].shape) == y.shape
    np.testing.assert_array_equal(y, twin(x)[0])
    np.testing.assert_array_equal(gx, twin.backward(g[None])[0])
    np.testing.assert_array_equal(conv.weight.grad, twin.weight.grad)
    _check(_layer(geom, np.float64, 1)[0], x, geom[7])  # and torch's batch
    torch = _torch()
    torch_y = torch.nn.functional.conv2d(
        torch.nn.functional.pad(torch.tensor(x[0]), _torch_pad(conv)),
        torch.tensor(conv.weight.data),
        torch.tensor(conv.bias.data), conv.stride, 0, conv.dilation, conv.groups,
    )  # fmt: skip
    np.testing.assert_allclose(y, torch_y.numpy(), rtol=1e-10, atol=1e-10)  # torch unbatched
    with pytest.raises(ValueError, match="grad_output"):
        conv.backward(g[None])  # a batched gradient after an unbatched forward


def test_unbatched_channel_mismatch_names_the_unbatched_shape():
    with pytest.raises(ValueError, match=r"x has 3 channels \(unbatched, shape \(3, 5, 5\)"):
        cp.Conv2d(4, 4, 3)(np.zeros((3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"input_shape must be \(N, 4, H, W\) or \(4, H, W\)"):
        cp.Conv2d(4, 4, 3).output_shape((3, 5, 5))


def _torch_pad(conv):
    t, b, left, right = conv._pads
    return (left, right, t, b)


def test_unbatched_input_is_not_kept_by_reference():
    conv = cp.Conv2d(3, 3, 1, groups=3, dtype=np.float64, rng=0)
    twin = cp.Conv2d(3, 3, 1, groups=3, dtype=np.float64, rng=0)
    x = np.random.default_rng(0).standard_normal((3, 4, 5))
    y = conv(x)
    x_before = x.copy()
    x[...] = 7.0  # the caller edits its input before backward
    g = np.ones_like(y)
    conv.backward(g)
    twin(x_before)
    twin.backward(g)
    np.testing.assert_array_equal(conv.weight.grad, twin.weight.grad)


# ------------------------------------------------------------------ save / load
def test_save_load_keeps_groups_and_padding(tmp_path):
    model = cp.Sequential(
        cp.Conv2d(4, 8, 3, padding="same", groups=4, rng=0),
        cp.Conv2d(8, 8, 3, padding=(0, 2, 1, 1), groups=2, rng=1),
        cp.Conv2d(8, 6, 2, padding="valid", dilation=2, groups=2, bias=False, rng=2),
        cp.Conv2d(6, 2, 3, padding="same_lower", rng=3),
    )
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = cp.load(path)
    x = np.random.default_rng(0).standard_normal((2, 4, 9, 9)).astype(np.float32)
    for a, b in zip(model.layers, loaded.layers, strict=True):
        assert a.get_config() == b.get_config()
        assert (a.padding, a.groups, a._pads) == (b.padding, b.groups, b._pads)
    np.testing.assert_array_equal(model(x), loaded(x))


def _rewrite_config(path, out, edit):
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    with np.load(path) as npz:
        arch = json.loads(str(npz["__architecture__"]))
    edit(arch["layers"][0]["config"])
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array(json.dumps(arch)), allow_pickle=False)
    members["__architecture__.npy"] = buf.getvalue()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_files_without_groups_still_load(tmp_path):
    # A file written before groups existed: no "groups" key, padding a pair.
    model = cp.Sequential(cp.Conv2d(2, 3, 3, padding=1, rng=0))
    model.save(tmp_path / "new.npz")
    _rewrite_config(tmp_path / "new.npz", tmp_path / "old.npz", lambda c: c.pop("groups"))
    loaded = cp.load(tmp_path / "old.npz")
    assert loaded.layers[0].groups == 1 and loaded.layers[0].padding == (1, 1)
    x = np.ones((1, 2, 5, 5), np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("groups", 0, "groups must be >= 1"),
        ("groups", 3, "groups=3 must divide"),
        ("groups", 2**62, "must divide"),
        ("groups", "2", "groups must be an int"),
        ("padding", "sideways", "padding must be"),
        ("padding", [1, 2, 3], "padding must be"),
        ("padding", [2**62, 0, 0, 0], "at most 2"),
        ("in_channels", 2**20, "more elements than|the saved file declares"),
    ],
)
def test_hostile_configs_are_refused(tmp_path, key, value, match):
    model = cp.Sequential(cp.Conv2d(4, 4, 3, groups=2, rng=0))
    model.save(tmp_path / "good.npz")
    bad = tmp_path / "bad.npz"
    _rewrite_config(tmp_path / "good.npz", bad, lambda c: c.__setitem__(key, value))
    with pytest.raises((ValueError, TypeError), match=match):
        cp.load(bad)


def test_a_grouped_layer_counts_its_own_weights_against_the_cap(tmp_path):
    # 2**20 channels in 2**20 groups: 9 weights per output channel, which
    # the cap must not count as 2**20 * 2**20 * 9.
    from cnnpool import model as model_module

    config = dict(in_channels=2**20, out_channels=2**20, kernel_size=[3, 3], groups=2**20)
    assert model_module._conv_allocates(config) == 2**20 * 9 + 2**20
    del config["groups"]  # an old file: no groups
    assert model_module._conv_allocates(config) == 2**40 * 9 + 2**20
    # Values the constructor refuses before allocating count no weights, so
    # that its message (which names groups) is the one the user sees.
    for groups in (0, "2", 2.0, None):
        config["groups"] = groups
        assert model_module._conv_allocates(config) == 2**20
