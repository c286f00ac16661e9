"""The pooling layers as a user meets them: worked numbers, API, bad input."""

import numpy as np
import pytest

import cnnpool as cp

# --------------------------------------------------------------- worked numbers


def test_textbook_3x3_stride1_max_and_its_mask():
    """The 4x4 matrix 1..16, 3x3 window, stride 1 (seed text 001)."""
    x = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    pool = cp.MaxPool2d(3, stride=1)
    y = pool(x)
    np.testing.assert_array_equal(y[0, 0], [[11, 12], [15, 16]])
    gx = pool.backward(np.ones_like(y))
    expected = np.zeros((4, 4))
    expected[2:, 2:] = 1  # the positions of 11, 12, 15, 16
    np.testing.assert_array_equal(gx[0, 0], expected)


def test_overlapping_windows_accumulate():
    """One element winning all four overlapping windows receives the sum of their grads."""
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = 9.0  # inside every 3x3 window of a 4x4 input
    pool = cp.MaxPool2d(3, stride=1)
    y = pool(x)
    assert (y == 9).all()
    gx = pool.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    assert gx[0, 0, 1, 2] == 10.0 and gx.sum() == 10.0
    mean = cp.MeanPool2d(3, stride=1)
    mean(x)
    gm = mean.backward(np.ones((1, 1, 2, 2)))
    # the centre 2x2 is in all four windows: 4 * 1/9; corners in one window: 1/9
    np.testing.assert_allclose(gm[0, 0, 1:3, 1:3], 4 / 9)
    np.testing.assert_allclose(gm[0, 0, 0, 0], 1 / 9)


def test_6x6_2x2_max_routes_to_window_argmax_and_mean_spreads_quarters():
    rng = np.random.default_rng(7)
    x = rng.permutation(36).astype(np.float64).reshape(1, 1, 6, 6)
    pool = cp.MaxPool2d(2)
    y = pool(x)
    g = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    gx = pool.backward(g)
    for i in range(3):
        for j in range(3):
            win = x[0, 0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
            gwin = gx[0, 0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
            assert y[0, 0, i, j] == win.max()
            a, b = np.unravel_index(np.argmax(win), (2, 2))
            assert gwin[a, b] == g[0, 0, i, j]
            assert np.count_nonzero(gwin) == 1
            assert pool.indices[0, 0, i, j] == (2 * i + a) * 6 + (2 * j + b)
    mean = cp.MeanPool2d(2)
    mean(x)
    np.testing.assert_allclose(mean.backward(g)[0, 0], np.kron(g[0, 0], np.full((2, 2), 0.25)))


# ------------------------------------------------------------------- API shape


def test_repr_shows_configuration():
    assert repr(cp.MaxPool2d(3, 2, 1)) == (
        "MaxPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
        "dilation=(1, 1), ceil_mode=False)"
    )
    text = repr(cp.MeanPool2d((2, 3), count_include_pad=False))
    assert text.startswith("MeanPool2d(kernel_size=(2, 3), stride=(2, 3)")
    assert "count_include_pad=False" in text


def test_avgpool_alias_and_stride_default():
    assert cp.AvgPool2d is cp.MeanPool2d
    assert cp.MaxPool2d((2, 3)).stride == (2, 3)
    assert cp.MaxPool2d(2, stride=1).stride == (1, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", [cp.MaxPool2d, cp.MeanPool2d])
def test_dtype_preserved_and_layouts_accepted(cls, dtype):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((2, 3, 8, 9)).astype(dtype)
    expected = cls(2)(base)
    for variant in (
        np.asfortranarray(base),
        base[:, :, ::-1, ::-1].copy()[:, :, ::-1, ::-1],
        np.pad(base, ((0, 0), (0, 0), (0, 0), (0, 3)))[..., :9],
    ):
        read_only = variant.view()
        read_only.flags.writeable = False
        pool = cls(2)
        y = pool(read_only)
        assert y.dtype == dtype
        np.testing.assert_array_equal(y, expected)
        gx = pool.backward(np.ones_like(y))
        assert gx.dtype == dtype and gx.shape == base.shape


@pytest.mark.parametrize("cls", [cp.MaxPool2d, cp.MeanPool2d])
@pytest.mark.parametrize("fast", [True, False])
def test_empty_batch(cls, fast):
    pool = cls(2)
    pool.use_fast_path = fast
    y = pool(np.zeros((0, 3, 6, 6), dtype=np.float32))
    assert y.shape == (0, 3, 3, 3) and y.dtype == np.float32
    assert pool.backward(np.zeros_like(y)).shape == (0, 3, 6, 6)


@pytest.mark.parametrize("cls", [cp.MaxPool2d, cp.MeanPool2d])
@pytest.mark.parametrize("fast", [True, False])
def test_backward_twice_gives_same_answer_and_keeps_indices(cls, fast):
    x = np.random.default_rng(1).standard_normal((2, 2, 7, 7))
    pool = cls(3, 2, 1)
    pool.use_fast_path = fast
    y = pool(x)
    before = None if cls is cp.MeanPool2d else pool.indices.copy()
    g = np.random.default_rng(2).standard_normal(y.shape)
    first = pool.backward(g)
    second = pool.backward(g)
    np.testing.assert_array_equal(first, second)
    if before is not None:
        np.testing.assert_array_equal(pool.indices, before)
        assert not pool.indices.flags.writeable


def test_output_does_not_alias_saved_state():
    """Editing the returned output in place must not change a later backward."""
    x = np.random.default_rng(3).standard_normal((1, 1, 4, 4))
    pool = cp.MaxPool2d(2)
    pool.use_fast_path = False
    y = pool(x)
    g = np.ones_like(y)
    first = pool.backward(g)
    y[...] = 1e9
    np.testing.assert_array_equal(pool.backward(g), first)


def test_all_neg_inf_and_all_nan_windows_have_valid_indices():
    x = np.full((1, 1, 4, 4), -np.inf)
    x[0, 0, 2:, 2:] = np.nan
    pool = cp.MaxPool2d(2, padding=1)
    y = pool(x)
    idx = pool.indices
    assert idx.min() >= 0 and idx.max() < 16
    gx = pool.backward(np.ones_like(y))
    assert gx.sum() == y.size  # every output's gradient landed inside the input
    assert np.isnan(y[0, 0, -1, -1]) and y[0, 0, 0, 0] == -np.inf


def test_ceil_mode_never_makes_a_window_wholly_in_padding():
    # size 5, kernel 2, stride 2, pad 1, ceil: a 4th window would start at 5 = H + p - 1 + 1
    pool = cp.MaxPool2d(2, 2, 1, ceil_mode=True)
    y = pool(np.arange(25.0).reshape(1, 1, 5, 5))
    assert y.shape == (1, 1, 3, 3)
    assert np.isfinite(y).all()


def test_output_shape_helper():
    assert cp.MaxPool2d(3, 2, 1).output_shape((8, 4, 32, 32)) == (8, 4, 16, 16)
    assert cp.MeanPool2d(2, ceil_mode=True).output_shape((1, 1, 5, 7)) == (1, 1, 3, 4)


# ------------------------------------------------------------------- bad input

X = np.zeros((1, 1, 4, 4), dtype=np.float32)


@pytest.mark.parametrize(
    "make, exc, words",
    [
        (lambda: cp.MaxPool2d(0), ValueError, "kernel_size must be >= 1"),
        (lambda: cp.MaxPool2d(2, stride=0), ValueError, "stride must be >= 1"),
        (lambda: cp.MaxPool2d(2, dilation=0), ValueError, "dilation must be >= 1"),
        (lambda: cp.MaxPool2d(2, padding=-1), ValueError, "padding must be >= 0"),
        (lambda: cp.MaxPool2d(3, padding=2), ValueError, "at most half the kernel"),
        (lambda: cp.MaxPool2d((2, 2, 2)), TypeError, "kernel_size must be an int or 2 ints"),
        (lambda: cp.MaxPool2d(2.0), TypeError, "kernel_size"),
        (lambda: cp.MaxPool2d(2, ceil_mode="yes"), TypeError, "ceil_mode"),
        (lambda: cp.MeanPool2d(2, divisor_override=0), ValueError, "divisor_override"),
    ],
)
def test_bad_configuration(make, exc, words):
    with pytest.raises(exc, match=words):
        make()


@pytest.mark.parametrize(
    "x, exc, words",
    [
        (np.zeros((4, 4), np.float32), ValueError, r"4-D .*shape \(4, 4\)"),
        (np.zeros((1, 1, 1, 4, 4), np.float32), ValueError, "got 5-D"),
        (np.zeros((1, 1, 4, 4), np.int64), TypeError, "float32 or float64, got dtype int64"),
        (np.zeros((1, 1, 4, 4), bool), TypeError, "got dtype bool"),
        (np.zeros((1, 1, 4, 4), np.complex128), TypeError, "complex128"),
        (np.zeros((1, 1, 4, 4), object), TypeError, "object"),
        (np.zeros((1, 1, 4, 4), np.float16), TypeError, "float16"),
        ("not an array", TypeError, "NumPy array"),
        (np.zeros((1, 1, 1, 1), np.float32), ValueError, r"larger than the padded input"),
    ],
)
@pytest.mark.parametrize("cls", [cp.MaxPool2d, cp.MeanPool2d])
def test_bad_input(cls, x, exc, words):
    with pytest.raises(exc, match=words):
        cls(2)(x)


def test_window_with_no_input_element_is_refused():
    """1-wide plane, kernel 2, dilation 2, padding 1: both taps miss the input."""
    pool = cp.MaxPool2d(2, stride=1, padding=1, dilation=2)
    with pytest.raises(ValueError, match="hold no input element"):
        pool(np.ones((1, 1, 1, 1), np.float32))
    # the same layer is fine where every window touches the input
    assert pool(np.ones((1, 1, 5, 5), np.float32)).shape == (1, 1, 5, 5)


def test_backward_before_forward_and_bad_gradients():
    pool = cp.MaxPool2d(2)
    with pytest.raises(cp.BackwardBeforeForwardError, match="before forward"):
        pool.backward(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError):  # also a ValueError, for code that catches bad input
        cp.MeanPool2d(2).backward(np.zeros((1, 1, 2, 2), np.float32))
    pool(X)
    with pytest.raises(
        ValueError, match=r"shape of the forward output \(1, 1, 2, 2\), got \(1, 1, 3, 3\)"
    ):
        pool.backward(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(TypeError, match="dtype of the forward output"):
        pool.backward(np.zeros((1, 1, 2, 2), np.float64))
    with pytest.raises(TypeError, match="NumPy array"):
        pool.backward([[1.0]])


def test_strategy_returning_wrong_shapes_is_refused():
    class BadPool(cp.Pool2d):
        def pool(self, windows):
            return windows.sum(axis=(-1, -2))  # forgot only the window axis

        def route(self, windows, pooled):
            return np.ones(windows.shape[:4])

    with pytest.raises(
        ValueError, match=r"BadPool.pool must return an array of shape \(1, 1, 2, 2\)"
    ):
        BadPool(2)(X)

    class BadRoute(BadPool):
        def pool(self, windows):
            return windows.max(axis=-1)

    layer = BadRoute(2)
    y = layer(X)
    with pytest.raises(ValueError, match=r"BadRoute.route must return .*\(1, 1, 2, 2, 4\)"):
        layer.backward(np.ones_like(y))


def test_strategy_cannot_edit_saved_windows():
    class Sneaky(cp.Pool2d):
        def pool(self, windows):
            windows[...] = 0
            return windows.max(axis=-1)

    with pytest.raises(ValueError, match="read-only"):
        Sneaky(2)(X)


def test_base_without_strategy_says_what_is_missing():
    with pytest.raises(NotImplementedError, match="must implement pool"):
        cp.Pool2d(2)(X)


class _DrawOne(cp.Pool2d):
    """A strategy with per-forward state: each window outputs one tap drawn at random."""

    def __init__(self, kernel_size, seed=0):
        super().__init__(kernel_size)
        self.rng = np.random.default_rng(seed)

    def pool(self, windows, ctx):
        ctx.pick = self.rng.integers(0, windows.shape[-1], windows.shape[:-1])
        return np.take_along_axis(windows, ctx.pick[..., None], axis=-1)[..., 0]

    def route(self, windows, pooled, ctx):
        local = np.zeros(windows.shape, windows.dtype)
        np.put_along_axis(local, ctx.pick[..., None], 1, axis=-1)
        return local


def test_ctx_state_belongs_to_its_forward_pass():
    layer = _DrawOne(2, seed=3)
    x = np.arange(32.0).reshape(1, 2, 4, 4)
    y1 = layer(x)
    state1 = layer._state
    g = np.ones_like(y1)
    grad1 = layer.backward(g)
    # Each output's gradient lands on the element the forward drew: the
    # input gradient marks exactly the drawn elements, whose values are y1.
    assert np.array_equal(np.sort(x[grad1 == 1]), np.sort(y1.ravel()))
    np.testing.assert_array_equal(layer.backward(g), grad1)  # backward twice: same
    layer(x + 100)  # a new forward draws again, into its own record
    assert layer._state is not state1 and layer._state.saved.ctx is not state1.saved.ctx
    assert not hasattr(layer, "pick") and not hasattr(layer, "ctx")


def test_forward_kernel_without_backward_kernel_is_refused():
    with pytest.raises(TypeError, match="implements forward_kernel but not backward_kernel"):

        class _Half(cp.Pool2d):
            def forward_kernel(self, x, geom):
                return x, None


def test_kernel_tier_hooks_are_public_and_documented():
    layer = cp.MaxPool2d(2)
    assert layer.has_kernel and cp.MeanPool2d(2).has_kernel and cp.LpPool2d(2, 2).has_kernel
    assert not cp.LpPool2d(1.5, 2).has_kernel  # fractional p: the NumPy tier runs
    layer(np.ones((1, 1, 4, 4)))
    assert layer._state.tier == "kernel"
    layer.use_fast_path = False
    layer(np.ones((1, 1, 4, 4)))
    assert layer._state.tier == "numpy"
