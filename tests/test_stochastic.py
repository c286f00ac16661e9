"""StochasticPool2d: the sampler's frequencies, reproducibility, evaluation mode, edge cases,
and its kernel tier against its NumPy tier."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import cnnpool as cp
from cnnpool.pooling.geometry import make_geometry


def _stats():
    """scipy.stats, for the frequency tests only: the CI's AddressSanitizer
    stage has no SciPy and still runs the kernel tests below."""
    return pytest.importorskip("scipy.stats")


def _tiled(window, copies):
    """``copies`` planes of one 2-D window, shape (copies, 1, kh, kw)."""
    window = np.asarray(window, dtype=np.float64)
    return np.broadcast_to(window, (copies, 1) + window.shape).copy()


def _draw_counts(layer, x, repeats):
    """How often each tap of the (single-window) planes was drawn."""
    kh, kw = x.shape[2:]
    counts = np.zeros(kh * kw, dtype=np.int64)
    for _ in range(repeats):
        layer(x)
        counts += np.bincount(layer.indices.ravel(), minlength=kh * kw)
    return counts


def _chi_square_p(counts, probabilities):
    support = probabilities > 0
    expected = probabilities[support] * counts.sum()
    return _stats().chisquare(counts[support], expected).pvalue


def test_frequencies_match_probabilities():
    """20,000 draws from r = (1, 2, 3, 4, 0, -1): chi-square on the positive taps."""
    window = [[1.0, 2.0, 3.0], [4.0, 0.0, -1.0]]
    layer = cp.StochasticPool2d((2, 3), rng=12345)
    counts = _draw_counts(layer, _tiled(window, 2000), repeats=10)
    assert counts[4] == 0 and counts[5] == 0  # zero and negative: never drawn
    p = np.array([1, 2, 3, 4, 0, 0]) / 10.0
    assert _chi_square_p(counts, p) > 1e-3
    # The test has power: the frequencies of a uniform or a max-biased sampler,
    # or of one proportional to r**2, are rejected outright.
    for wrong in ([1, 1, 1, 1], [1, 2, 3, 5], [1, 4, 9, 16]):
        q = np.array(wrong + [0, 0], dtype=float)
        assert _chi_square_p(counts, q / q.sum()) < 1e-6


def test_frequencies_match_on_random_windows_with_padding_and_overlap():
    """Several different windows at once (3x3, stride 2, padding 1); pooled chi-square."""
    rng = np.random.default_rng(0)
    plane = np.maximum(rng.standard_normal((1, 1, 5, 5)), 0)  # ReLU output: many zeros
    plane[0, 0, 2, 2] = 1.5  # shared by all four overlapping windows
    layer = cp.StochasticPool2d(3, 2, padding=1, rng=7)
    x = np.broadcast_to(plane, (4000, 1, 5, 5)).copy()
    layer(x)
    geom = layer.geometry
    drawn = layer.indices.reshape(4000, -1)
    statistic, dof = 0.0, 0
    for o, taps in enumerate(geom.taps.reshape(-1, geom.window_size)):
        real = taps[taps >= 0]
        r = plane[0, 0].ravel()[real]
        counts = np.array([(drawn[:, o] == t).sum() for t in real])
        assert counts[r <= 0].sum() == 0
        expected = r[r > 0] / r.sum() * len(drawn)
        statistic += ((counts[r > 0] - expected) ** 2 / expected).sum()
        dof += (r > 0).sum() - 1
    assert _stats().chi2.sf(statistic, dof) > 1e-3


def test_training_output_is_the_drawn_element_and_takes_the_gradient():
    rng = np.random.default_rng(1)
    x = np.maximum(rng.standard_normal((2, 3, 6, 6)), 0).astype(np.float32)
    layer = cp.StochasticPool2d(2, rng=0)
    y = layer(x)
    idx = layer.indices
    np.testing.assert_array_equal(
        y, np.take_along_axis(x.reshape(2, 3, -1), idx.reshape(2, 3, -1), 2).reshape(y.shape)
    )
    g = rng.standard_normal(y.shape).astype(np.float32)
    gx = layer.backward(g).reshape(2, 3, -1)
    expected = np.zeros_like(gx)
    np.put_along_axis(expected, idx.reshape(2, 3, -1), (g * (y > 0)).reshape(2, 3, -1), 2)
    np.testing.assert_array_equal(gx, expected)


def test_reproducible_through_rng():
    x = np.abs(np.random.default_rng(2).standard_normal((4, 2, 8, 8)))
    a = cp.StochasticPool2d(2, rng=42)
    b = cp.StochasticPool2d(2, rng=np.random.default_rng(42))
    ya, yb = a(x), b(x)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a(x), ya)  # the stream moves on
    a.rng = 42  # restart it
    np.testing.assert_array_equal(a(x), ya)
    assert not np.array_equal(cp.StochasticPool2d(2, rng=43)(x), ya)


def test_eval_is_the_probability_weighted_average_and_draws_nothing():
    x = np.array([[[[1.0, 3.0], [0.0, -2.0]]]])
    layer = cp.StochasticPool2d(2, rng=0).eval()
    state = layer.rng.bit_generator.state
    y = layer(x)
    assert y[0, 0, 0, 0] == pytest.approx((1 * 1 + 3 * 3) / 4)  # sum r p = sum r^2 / sum r
    assert layer.indices is None
    assert layer.rng.bit_generator.state == state
    gx = layer.backward(np.ones_like(y))[0, 0]
    # d/dr_i (Q / S) = (2 r_i S - Q) / S^2 with S = 4, Q = 10
    np.testing.assert_allclose(gx, [[(2 * 4 - 10) / 16, (6 * 4 - 10) / 16], [0.0, 0.0]])


def test_eval_output_is_the_mean_of_training_outputs():
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((1, 2, 4, 4)), 0) + (rng.random((1, 2, 4, 4)) < 0.3)
    layer = cp.StochasticPool2d(2, rng=5)
    draws = np.stack([layer(x) for _ in range(1500)])
    expected = layer.eval()(x)
    spread = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - expected) < 5 * spread + 1e-12)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_windows_without_positive_elements_give_zero_and_no_gradient(mode):
    x = np.array([[[[0.0, 0.0, -1.0, -2.0], [0.0, 0.0, -3.0, 0.0]]]])
    layer = cp.StochasticPool2d(2, rng=0).train(mode == "train")
    y = layer(x)
    np.testing.assert_array_equal(y, 0.0)
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)), 0.0)
    if mode == "train":
        np.testing.assert_array_equal(layer.indices, [[[[0, 2]]]])  # first input tap


def test_nan_window_is_nan():
    x = np.array([[[[1.0, np.nan], [2.0, 3.0]]]])
    for mode in (True, False):
        layer = cp.StochasticPool2d(2, rng=0).train(mode)
        assert np.isnan(layer(x)[0, 0, 0, 0])


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradcheck(mode):
    class FixedDraws(cp.StochasticPool2d):
        """The same uniforms at every forward, so the function is deterministic."""

        def forward(self, x):
            self.rng = 11
            return super().forward(x)

    x = np.random.default_rng(4).standard_normal((2, 2, 6, 5))
    layer = FixedDraws(3, 2, padding=1, ceil_mode=True).train(mode == "train")
    assert cp.gradcheck(layer, x) < 1e-6


def test_repr_and_config():
    layer = cp.StochasticPool2d(3, 2, 1)
    assert "training=True" in repr(layer)
    assert type(layer)(**layer.get_config()).get_config() == layer.get_config()


# ------------------------------------------------------------------ kernel tier
# The compiled kernels (_stochastic.pyx) against the NumPy tier of the same
# layer (use_fast_path = False), the reference: the same seed must draw the
# same elements, give the same training output and gradient bit for bit, and
# the evaluation formula must agree to rounding.

_SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 2.0, -1.0]


@st.composite
def kernel_cases(draw):
    """(layer arguments, x) over geometries with padding, dilation, ceil_mode,
    ties, zeros, NaN and infinities, float32 or float64."""
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
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c, h, w))
    kind = draw(st.sampled_from(["normal", "relu", "ties", "specials"]))
    if kind == "relu":
        x = np.maximum(x, 0)
    elif kind == "ties":
        x = np.round(x)
    elif kind == "specials":
        where = rng.random(x.shape) < 0.3
        x[where] = rng.choice(_SPECIALS, size=int(where.sum()))
    return dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil), x.astype(dtype)


def _run(args, x, fast, training, seed, g=None):
    layer = cp.StochasticPool2d(**args, rng=seed).train(training)
    layer.use_fast_path = fast
    y = layer(x)
    g = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype) if g is None else g
    return layer, y, layer.backward(g), g


@given(case=kernel_cases(), seed=st.integers(0, 2**32 - 1))
def test_kernel_tier_draws_what_the_numpy_tier_draws(case, seed):
    args, x = case
    before = x.copy()
    fast, y, gx, g = _run(args, x, True, True, seed)
    assert fast._state.tier == "kernel"
    slow, y_ref, gx_ref, _ = _run(args, x, False, True, seed, g)
    np.testing.assert_array_equal(fast.indices, slow.indices)
    assert y.dtype == x.dtype and gx.dtype == x.dtype
    np.testing.assert_array_equal(y, y_ref)  # NaN where NaN, bit for bit
    np.testing.assert_array_equal(gx, gx_ref)
    # the stream moved on exactly as far
    assert fast.rng.bit_generator.state == slow.rng.bit_generator.state
    np.testing.assert_array_equal(x, before)


@given(case=kernel_cases(), seed=st.integers(0, 2**32 - 1))
def test_kernel_tier_evaluation_matches_the_numpy_tier(case, seed):
    args, x = case
    fast, y, gx, g = _run(args, x, True, False, seed)
    slow, y_ref, gx_ref, _ = _run(args, x, False, False, seed, g)
    assert fast.indices is None
    eps = np.finfo(x.dtype).eps
    np.testing.assert_allclose(y, y_ref, rtol=4 * eps, atol=0)
    # shares of overlapping windows are added in another order: rounding of
    # the largest of them
    scale = np.nanmax(np.abs(np.where(np.isfinite(gx_ref), gx_ref, 0)), initial=1.0)
    np.testing.assert_allclose(gx, gx_ref, rtol=16 * eps, atol=16 * eps * scale)


def test_kernel_tier_saves_byte_taps_and_no_input_in_training():
    layer = cp.StochasticPool2d(2, rng=0)
    x = np.abs(np.random.default_rng(0).standard_normal((2, 3, 6, 6)))
    layer(x)
    saved = layer._state.saved
    assert saved.taps.dtype == np.uint8 and saved.taps.shape == (6, 3, 3)
    assert saved.x is None and not saved.taps.flags.writeable
    big = cp.StochasticPool2d(16, rng=0)  # 256 taps: int64
    big(np.abs(np.random.default_rng(1).standard_normal((1, 1, 16, 16))))
    assert big._state.saved.taps.dtype == np.int64
    assert 0 <= big.indices[0, 0, 0, 0] < 256


def test_kernel_tier_evaluation_keeps_its_own_copy_of_x():
    layer = cp.StochasticPool2d(2, rng=0).eval()
    x = np.abs(np.random.default_rng(2).standard_normal((1, 2, 4, 4)))
    y = layer(x)
    g = np.ones_like(y)
    expected = layer.backward(g)
    x[:] = 7.0  # the caller edits its input before backward
    np.testing.assert_array_equal(layer.backward(g), expected)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_tier_across_thread_counts(mode, dtype):
    """The kernels with 1 and 2 threads on a batch big enough to split: the same bits."""
    from cnnpool.pooling.strategies import _stochastic

    rng = np.random.default_rng(5)
    x = np.maximum(rng.standard_normal((48, 20, 21)), 0).astype(dtype)
    geom = cp.StochasticPool2d(3, 2, 1).geometry_for(20, 21)
    shape = (48,) + geom.out_size
    g = rng.standard_normal(shape).astype(dtype)
    u = rng.random(shape)
    results = []
    for threads in (1, 2):
        out, gx = np.empty(shape, dtype), np.empty_like(x)
        if mode == "train":
            taps, live = np.empty(shape, np.uint8), np.empty(shape, np.uint8)
            _stochastic.train_forward(x, u, out, taps, live, *geom.kernel_args, threads)
            _stochastic.train_backward(g, taps, live, gx, *geom.kernel_args, threads)
            results.append((out, gx, taps, live))
        else:
            _stochastic.eval_forward(x, out, *geom.kernel_args, threads)
            _stochastic.eval_backward(x, g, gx, *geom.kernel_args, threads)
            results.append((out, gx))
    for a, b in zip(*results, strict=True):
        assert a.tobytes() == b.tobytes()
