"""gradcheck on max, mean and a user's strategy; and that it catches a wrong one."""

import numpy as np
import pytest

import cnnpool as cp


class LpPool(cp.Pool2d):
    """What a user writes: Lp-norm pooling, ``(sum |x|^p)^(1/p)`` per window."""

    def __init__(self, norm, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)
        self.norm = norm

    def pool(self, windows):
        return np.sum(np.abs(windows) ** self.norm, axis=-1) ** (1.0 / self.norm)

    def route(self, windows, pooled):
        # d/dx_i (sum |x|^p)^(1/p) = sign(x_i) |x_i|^(p-1) / pooled^(p-1)
        p = self.norm
        return np.sign(windows) * np.abs(windows) ** (p - 1) / pooled[..., None] ** (p - 1)


class WrongMean(cp.Pool2d):
    """A mean whose route forgets to divide by the window size."""

    def pool(self, windows):
        return windows.mean(axis=-1)

    def route(self, windows, pooled):
        return np.ones_like(windows)


GEOMETRIES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1),  # overlapping windows
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1)),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
]


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((2, 2, 6, 5))


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("fast", [True, False])
def test_gradcheck_builtins(x, geometry, fast):
    for layer in (cp.MaxPool2d(**geometry), cp.MeanPool2d(**geometry)):
        layer.use_fast_path = fast
        assert cp.gradcheck(layer, x) < 1e-7


def test_gradcheck_max_with_dilation(x):
    assert cp.gradcheck(cp.MaxPool2d(2, 1, 1, dilation=2), x) < 1e-7


@pytest.mark.parametrize("norm", [2.0, 3.0])
def test_gradcheck_user_lp_strategy(x, norm):
    layer = LpPool(norm, 3, stride=2, padding=1)
    assert cp.gradcheck(layer, x) < 1e-6
    # and it really is the Lp norm of each window
    y = layer(x)
    win = x[0, 0, 1:4, 1:4]
    assert np.isclose(y[0, 0, 1, 1], np.sum(np.abs(win) ** norm) ** (1 / norm))


def test_gradcheck_catches_wrong_route(x):
    assert cp.gradcheck(WrongMean(2), x) > 0.5


def test_gradcheck_fails_on_nan_gradients(x):
    class NanRoute(WrongMean):
        def route(self, windows, pooled):
            return np.full_like(windows, np.nan)

    assert cp.gradcheck(NanRoute(2), x) == float("inf")


def test_gradcheck_restores_parameters_and_checks_them():
    class Scale(cp.Layer):
        def __init__(self):
            self.w = cp.Parameter(np.array([2.0], dtype=np.float32), "w")

        def parameters(self):
            return [self.w]

        def forward(self, x):
            self.x = x
            return x * self.w.data

        def backward(self, g):
            self.w.grad += np.sum(g * self.x)
            return g * self.w.data

    layer = Scale()
    assert cp.gradcheck(layer, np.arange(4.0)) < 1e-8
    assert layer.w.data.dtype == np.float32 and layer.w.data[0] == 2.0
    assert layer.w.grad[0] == 0.0

    class WrongScale(Scale):
        def backward(self, g):
            self.w.grad += 2 * np.sum(g * self.x)  # wrong parameter gradient
            return g * self.w.data

    assert cp.gradcheck(WrongScale(), np.arange(4.0)) > 0.3  # |2a - a| / |2a|


def test_gradcheck_refuses_what_is_not_a_layer():
    x = np.zeros((1, 1, 2, 2))
    with pytest.raises(TypeError, match="must be a cnnpool Layer.*has no forward, backward"):
        cp.gradcheck(np.sum, x)

    class NoParams:
        def forward(self, x):
            return x

        def backward(self, g):
            return g

    with pytest.raises(TypeError, match="has no parameters"):
        cp.gradcheck(NoParams(), x)
    assert cp.gradcheck(NoParams(), x, check_params=False) < 1e-8
