"""StochasticPool2d: the sampler's frequencies, reproducibility, evaluation mode, edge cases."""

import numpy as np
import pytest

import cnnpool as cp

stats = pytest.importorskip("scipy.stats")


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
    return stats.chisquare(counts[support], expected).pvalue


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
    assert stats.chi2.sf(statistic, dof) > 1e-3


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
