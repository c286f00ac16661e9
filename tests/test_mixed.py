"""MixedPool2d and GatedPool2d: strategies with parameters, and the param_grads hook of Pool2d."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import cnnpool as cp
from cnnpool.pooling.geometry import make_geometry

GEOMETRIES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1)),
]


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((2, 3, 7, 6))


def _pair(layer_cls, fast, **kwargs):
    layer = layer_cls(**kwargs)
    layer.use_fast_path = fast
    return layer


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_mixed_endpoints_are_max_and_mean(x, geometry, fast):
    g = np.random.default_rng(1).standard_normal(cp.MaxPool2d(**geometry).output_shape(x.shape))
    for alpha, other in ((1.0, cp.MaxPool2d), (0.0, cp.MeanPool2d)):
        mixed = _pair(cp.MixedPool2d, fast, alpha=alpha, dtype=np.float64, **geometry)
        ref = other(**geometry)
        np.testing.assert_allclose(mixed(x), ref(x), rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(mixed.backward(g), ref.backward(g), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "generic"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_mixed_gradcheck_input_and_alpha(x, geometry, fast):
    layer = _pair(cp.MixedPool2d, fast, alpha=0.3, **geometry)
    assert cp.gradcheck(layer, x) < 1e-7
    per_channel = _pair(cp.MixedPool2d, fast, channels=3, **geometry)
    per_channel.alpha.data[:] = [0.1, 0.5, 0.8]
    assert cp.gradcheck(per_channel, x) < 1e-7


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_gated_gradcheck_input_and_weight(x, geometry):
    layer = cp.GatedPool2d(**geometry)
    layer.weight.data[:] = np.random.default_rng(2).standard_normal(layer.weight.shape)
    assert cp.gradcheck(layer, x) < 1e-7


def test_mixed_paths_agree_on_output_and_parameter_gradient():
    x = np.random.default_rng(3).standard_normal((4, 2, 9, 9)).astype(np.float32)
    g = np.random.default_rng(4).standard_normal((4, 2, 4, 4)).astype(np.float32)
    results = []
    for fast in (True, False):
        layer = _pair(cp.MixedPool2d, fast, kernel_size=3, stride=2, alpha=0.25, channels=2)
        y = layer(x)
        gx = layer.backward(g)
        results.append((y, gx, layer.alpha.grad.copy()))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert results[0][2].shape == (2,) and results[0][2].dtype == np.float32


def test_alpha_gradient_by_hand():
    x = np.array([[[[1.0, 5.0], [2.0, 0.0]]]])  # max 5, mean 2
    layer = cp.MixedPool2d(2, alpha=0.5)
    assert layer(x)[0, 0, 0, 0] == pytest.approx(3.5)
    layer.backward(np.array([[[[2.0]]]]))
    assert layer.alpha.grad[0] == pytest.approx(2.0 * (5 - 2))
    layer.backward(np.array([[[[2.0]]]]))  # gradients accumulate, as for every layer
    assert layer.alpha.grad[0] == pytest.approx(12.0)
    layer.zero_grad()
    assert layer.alpha.grad[0] == 0.0


def test_gated_starts_as_an_even_blend_and_gates_by_content():
    x = np.random.default_rng(5).standard_normal((1, 2, 4, 4))
    layer = cp.GatedPool2d(2)
    half = 0.5 * (cp.MaxPool2d(2)(x) + cp.MeanPool2d(2)(x))
    np.testing.assert_allclose(layer(x), half, rtol=1e-6)
    layer.weight.data[:] = 50.0  # a large positive window sum -> a = 1 -> max
    big = np.abs(x) + 1.0
    np.testing.assert_allclose(layer(big), cp.MaxPool2d(2)(big), rtol=1e-6)


@pytest.mark.parametrize("cls", [cp.MixedPool2d, cp.GatedPool2d])
def test_parameters_are_found_and_an_optimizer_step_lowers_the_loss(cls):
    rng = np.random.default_rng(6)
    x = np.abs(rng.standard_normal((8, 2, 6, 6))) + 0.5  # positive: a gate can open fully
    target = cp.MaxPool2d(2)(x)  # the best blend is pure max
    layer = cls(2, dtype=np.float64)
    params = layer.parameters()
    assert len(params) == 1 and params[0].name in ("alpha", "weight")

    def loss():
        return 0.5 * np.sum((layer(x) - target) ** 2)

    before = loss()
    for _ in range(20):
        layer.zero_grad()
        diff = layer(x) - target
        layer.backward(diff)
        for p in layer.parameters():
            p.data -= 0.01 * p.grad
    assert loss() < 0.5 * before


def test_per_channel_alpha_checks_the_channel_count():
    layer = cp.MixedPool2d(2, channels=3)
    assert layer.alpha.shape == (3,)
    with pytest.raises(ValueError, match="3 channels, got an input with 2"):
        layer(np.zeros((1, 2, 4, 4)))
    with pytest.raises(TypeError):
        cp.MixedPool2d(2, alpha="half")
    with pytest.raises(TypeError):
        cp.MixedPool2d(2, dtype=np.int32)


def test_config_round_trip():
    for layer in (cp.MixedPool2d(3, 2, 1, channels=4), cp.GatedPool2d((2, 3), 1)):
        clone = type(layer)(**layer.get_config())
        assert clone.get_config() == layer.get_config()
        assert [p.shape for p in clone.parameters()] == [p.shape for p in layer.parameters()]


# ------------------------------------------------- the param_grads contract of Pool2d
class Scaled(cp.Pool2d):
    """A user's strategy with a parameter: ``y = s * mean(window)``."""

    def __init__(self, kernel_size):
        super().__init__(kernel_size)
        self.scale = cp.Parameter(np.array([2.0]), "scale")

    def pool(self, windows):
        return self.scale.data[0] * windows.mean(axis=-1)

    def route(self, windows, pooled):
        k = windows.shape[-1]
        return np.full(windows.shape, self.scale.data[0] / k)

    def param_grads(self, windows, pooled, grad_output):
        return {self.scale: np.array([np.sum(grad_output * windows.mean(axis=-1))])}


def test_user_strategy_with_a_parameter_passes_gradcheck(x):
    layer = Scaled(2)
    assert layer.parameters() == [layer.scale]
    assert cp.gradcheck(layer, x) < 1e-8


def test_param_grads_mistakes_are_caught(x):
    class Forgot(Scaled):
        param_grads = cp.Pool2d.param_grads

    layer = Forgot(2)
    layer(x)
    with pytest.raises(ValueError, match="missing"):
        layer.backward(np.ones((2, 3, 3, 3)))

    class WrongShape(Scaled):
        def param_grads(self, windows, pooled, grad_output):
            return {self.scale: np.zeros(3)}

    layer = WrongShape(2)
    layer(x)
    with pytest.raises(ValueError, match="shape"):
        layer.backward(np.ones((2, 3, 3, 3)))

    class Stranger(Scaled):
        def param_grads(self, windows, pooled, grad_output):
            return {self.scale: np.zeros(1), cp.Parameter(np.zeros(1)): np.zeros(1)}

    layer = Stranger(2)
    layer(x)
    with pytest.raises(ValueError, match="not parameters of this layer"):
        layer.backward(np.ones((2, 3, 3, 3)))


def test_parameter_free_strategies_are_untouched(x):
    """The two-method contract: no parameters, param_grads never needed."""

    class Plain(cp.Pool2d):
        def pool(self, windows):
            return windows.sum(axis=-1)

        def route(self, windows, pooled):
            return np.ones_like(windows)

    layer = Plain(2)
    assert layer.parameters() == []
    assert cp.gradcheck(layer, x) < 1e-8


# ------------------------------------------------------------------ kernel tier
# MixedPool2d's kernel tier runs MaxPool2d's and MeanPool2d's kernels and
# blends them: the bits of those two layers, blended in the input's dtype.
# GatedPool2d's kernel tier computes its gate in float64: its NumPy tier
# (use_fast_path = False, in the input's dtype) is the reference, to rounding.

KERNEL_GEOMETRIES = GEOMETRIES + [
    dict(kernel_size=2, stride=3),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(2, 1), ceil_mode=True),
]


def _blend_of_max_and_mean(layer, x, g, geometry, a):
    """What the kernel tier must give: the two layers' outputs and gradients, blended."""
    args = dict(geometry)
    mx_layer = cp.MaxPool2d(**args)
    mean_layer = cp.MeanPool2d(
        args.pop("kernel_size"),
        args.pop("stride", None),
        args.pop("padding", 0),
        args.pop("ceil_mode", False),
        layer.count_include_pad,
        dilation=args.pop("dilation", 1),
    )
    mx, mean = mx_layer(x).copy(), mean_layer(x).copy()
    y = a * mx + (1 - a) * mean
    gx = mx_layer.backward(g * a).copy()
    gx += mean_layer.backward(g * (1 - a))
    return y, gx


@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", KERNEL_GEOMETRIES)
def test_mixed_kernel_tier_is_max_and_mean_blended_bit_for_bit(geometry, dtype, channels, include):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    x[0, 1] = np.round(x[0, 1])  # ties for the max
    layer = cp.MixedPool2d(**geometry, channels=channels, count_include_pad=include, dtype=dtype)
    layer.alpha.data[:] = rng.uniform(-0.5, 1.5, layer.alpha.shape)
    y = layer(x)
    assert layer._state.tier == "kernel"
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = layer.backward(g)
    a = layer.alpha.data.astype(dtype).reshape(-1, 1, 1) if channels else dtype(layer.alpha.data[0])
    y_ref, gx_ref = _blend_of_max_and_mean(layer, x, g, geometry, a)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(gx, gx_ref)
    generic = cp.MixedPool2d(**geometry, channels=channels, count_include_pad=include, dtype=dtype)
    generic.alpha.data[:] = layer.alpha.data
    generic.use_fast_path = False
    generic(x)
    generic.backward(g)
    np.testing.assert_allclose(layer.alpha.grad, generic.alpha.grad, rtol=1e-6, atol=1e-6)


@st.composite
def gated_cases(draw):
    """(layer arguments, x, weight) over geometries with padding, dilation,
    ceil_mode, ties and signed zeros (gated documents finite inputs only)."""
    if draw(st.booleans()):  # 2x2 stride 2 inside the input: the kernels' unrolled loops
        k, s, p, d, ceil = (2, 2), (2, 2), (0, 0), (1, 1), False
    else:
        k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
        d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        ceil = draw(st.booleans())
    h = draw(st.integers((k[0] - 1) * d[0] + 1, 9))
    w = draw(st.integers((k[1] - 1) * d[1] + 1, 9))
    try:
        make_geometry((h, w), k, s, p, d, ceil)
    except ValueError:  # a window wholly in the padding: refused by every tier
        assume(False)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w))
    if draw(st.booleans()):
        x = np.round(x * 2) / 2  # ties and signed zeros
        x[x == 0] = -0.0
    weight = rng.standard_normal(k[0] * k[1]) * draw(st.sampled_from([0.0, 0.5, 2.0]))
    include = draw(st.booleans())
    args = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    return dict(args, count_include_pad=include), x.astype(dtype), weight


@given(case=gated_cases())
def test_gated_kernel_tier_matches_the_numpy_tier(case):
    args, x, weight = case
    before = x.copy()
    results = []
    for fast in (True, False):
        layer = cp.GatedPool2d(**args, dtype=x.dtype)
        layer.weight.data[:] = weight
        layer.use_fast_path = fast
        y = layer(x)
        assert layer._state.tier == ("kernel" if fast else "numpy")
        g = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
        gx = layer.backward(g)
        assert y.dtype == gx.dtype == x.dtype
        results.append((y, gx, layer.weight.grad.copy()))
    # The gate is float64 in the kernel tier and in x's dtype in the NumPy
    # tier, and sums run in other orders: agreement to a few roundings of the
    # largest value summed.
    eps = np.finfo(x.dtype).eps
    k = args["kernel_size"][0] * args["kernel_size"][1]
    for got, ref in zip(*results, strict=True):
        scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
        np.testing.assert_allclose(
            got, ref, rtol=0, atol=16 * k * eps * scale * (1 + np.abs(weight).sum())
        )
    np.testing.assert_array_equal(x, before)


def test_gated_kernel_tier_keeps_its_own_copy_of_x():
    layer = cp.GatedPool2d(3, 2, 1)
    layer.weight.data[:] = np.linspace(-1, 1, 9)
    x = np.random.default_rng(3).standard_normal((2, 2, 7, 7))
    y = layer(x)
    g = np.ones_like(y)
    expected = layer.backward(g).copy()
    grad_w = layer.weight.grad.copy()
    x[:] = 5.0  # the caller edits its input before backward
    np.testing.assert_array_equal(layer.backward(g), expected)
    np.testing.assert_array_equal(layer.weight.grad, 2 * grad_w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gated_kernels_across_thread_counts(dtype):
    """The gate kernels with 1 and 2 threads on a batch big enough to split: the same bits."""
    from cnnpool.pooling.strategies import _mixed

    rng = np.random.default_rng(4)
    layer = cp.GatedPool2d(3, 2, 1)
    geom = layer.geometry_for(20, 21)
    shape = (40,) + geom.out_size
    x = rng.standard_normal((40, 20, 21)).astype(dtype)
    w = rng.standard_normal(9).astype(dtype)
    mx, mean = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    div = layer._mean.divisor(geom)
    results = []
    for threads in (1, 2):
        out, gate = np.empty(shape, dtype), np.empty(shape)
        to_max, rest, wg = np.empty(shape, dtype), np.empty_like(x), np.empty((40, 9))
        _mixed.gated_forward(x, w, mx, mean, out, gate, *geom.kernel_args, threads)
        _mixed.gated_backward(
            x, g, w, gate, mx, mean, to_max, rest, wg, div, *geom.kernel_args, threads
        )
        results.append((out, gate, to_max, rest, wg))
    for a, b in zip(*results, strict=True):
        assert a.tobytes() == b.tobytes()


def test_gate_sigmoid_is_within_a_few_ulps_over_the_whole_range():
    """The gate's branch-free exp (vectorised) against NumPy's sigmoid, 1x1
    windows with weight 1 so that the gate is the input: overflow, underflow,
    the edges of exp's range, signed zeros, infinities and NaN."""
    from cnnpool.pooling.strategies import _mixed

    edges = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-300, 708.5, 709.7, 709.79, -745.1, -745.3]
    rng = np.random.default_rng(0)
    z = np.concatenate([np.linspace(-800, 800, 100001), edges, rng.standard_normal(50000) * 30])
    planes = z.reshape(-1, 1, 1)
    geom = cp.GatedPool2d(1).geometry_for(1, 1)
    out, gate = np.empty_like(planes), np.empty_like(planes)
    ones, zeros = np.ones_like(planes), np.zeros_like(planes)
    _mixed.gated_forward(planes, np.ones(1), ones, zeros, out, gate, *geom.kernel_args, 1)
    with np.errstate(over="ignore"):
        ref = 1 / (1 + np.exp(-z))
    a = gate.ravel()
    np.testing.assert_array_equal(np.isnan(a), np.isnan(ref))
    finite = ~np.isnan(ref)
    ulps = np.abs(a[finite] - ref[finite]) / np.maximum(ref[finite], np.finfo(float).tiny)
    assert ulps.max() <= 4 * np.finfo(float).eps
    assert np.all(a[z == 0] == 0.5) and np.all(a[z > 745] == 1) and np.all(a[z < -746] == 0)
    np.testing.assert_array_equal(out.ravel(), a)  # a * 1 + (1 - a) * 0
