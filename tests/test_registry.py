"""cnnpool.registry: one registration serves saved models, make_pool and cnnpool-compare."""

import textwrap
import types

import numpy as np
import pytest

import cnnpool as cp
from cnnpool import registry
from cnnpool.pooling.strategies._lp import LpWindow


@pytest.fixture
def forget():
    """Unregister what a test registered, even when it fails."""
    names = []
    yield names.append
    for name in names:
        if name in registry.pool_names():
            registry.unregister(registry.pool_class(name))  # its class name too


def _softmax_source(module_name, beta_default):
    """A user's softmax pooling, as a module (or notebook cell) would define it."""
    return textwrap.dedent(
        f"""
        import numpy as np
        import cnnpool as cp

        class SoftmaxPool2d(cp.Pool2d, name="test-softmax"):
            def __init__(self, kernel_size, stride=None, beta={beta_default}):
                super().__init__(kernel_size, stride)
                self.beta = beta

            def pool(self, windows):
                w = np.exp(self.beta * (windows - windows.max(-1, keepdims=True)))
                w /= w.sum(-1, keepdims=True)
                return (w * windows).sum(-1)

            def route(self, windows, pooled):
                w = np.exp(self.beta * (windows - windows.max(-1, keepdims=True)))
                w /= w.sum(-1, keepdims=True)
                return w * (1 + self.beta * (windows - pooled[..., None]))

            def get_config(self):
                return {{"kernel_size": list(self.kernel_size),
                        "stride": list(self.stride), "beta": self.beta}}
        """
    )


def _define(source, module_name):
    """Run ``source`` as the body of a module named ``module_name`` (a notebook cell)."""
    namespace = {"__name__": module_name}
    exec(compile(source, f"<{module_name}>", "exec"), namespace)
    return types.SimpleNamespace(**namespace)


def test_one_class_keyword_serves_make_pool_and_save_load(tmp_path, forget):
    forget("test-softmax")
    user = _define(_softmax_source("user_pooling", 1.0), "user_pooling")
    cls = user.SoftmaxPool2d
    assert "test-softmax" in registry.pool_names()
    assert registry.pool_class("test-softmax") is cls and registry.pool_name(cls) == "test-softmax"
    assert registry.layer_class("SoftmaxPool2d") is cls

    layer = cp.make_pool("test-softmax", 2, 1, beta=3.0)  # kwargs reach the constructor
    assert type(layer) is cls and layer.beta == 3.0 and layer.stride == (1, 1)

    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    model = cp.Sequential(cp.Conv2d(3, 2, 3, rng=0), layer)
    expected = model(x)
    model.save(tmp_path / "m.npz")
    loaded = cp.load(tmp_path / "m.npz")
    assert type(loaded[1]) is cls and loaded[1].beta == 3.0
    np.testing.assert_array_equal(loaded(x), expected)


def test_a_rerun_notebook_cell_replaces_the_class(tmp_path, forget):
    forget("test-softmax")
    first = _define(_softmax_source("notebook", 1.0), "notebook").SoftmaxPool2d
    old_layer = first(2)
    second = _define(_softmax_source("notebook", 2.0), "notebook").SoftmaxPool2d  # same cell again
    assert second is not first
    assert registry.pool_class("test-softmax") is second
    assert registry.layer_class("SoftmaxPool2d") is second
    assert cp.make_pool("test-softmax", 2).beta == 2.0
    # A layer built before the re-run still saves; loading builds the current class.
    cp.Sequential(old_layer).save(tmp_path / "m.npz")
    assert type(cp.load(tmp_path / "m.npz")[0]) is second


def test_taken_names_and_bad_registrations_are_refused(forget):
    forget("test-softmax")
    _define(_softmax_source("one_module", 1.0), "one_module")
    with pytest.raises(
        ValueError, match=r"one_module\.SoftmaxPool2d, is already registered under the class name"
    ):
        _define(_softmax_source("other_module", 1.0), "other_module")
    with pytest.raises(ValueError, match=r"'test-softmax'.*taken by one_module\.SoftmaxPool2d"):

        class OtherSoftmax(cp.Pool2d, name="test-softmax"):
            pass

    with pytest.raises(ValueError, match=r"'max'.*taken by cnnpool\..*MaxPool2d"):
        registry.register(cp.MeanPool2d, "max")
    with pytest.raises(ValueError, match="name.*':'"):
        registry.register(cp.MaxPool2d, "a:b")
    with pytest.raises(TypeError, match="only Pool2d subclasses take a short name"):
        registry.register(cp.ReLU, "relu")
    with pytest.raises(TypeError, match="Layer subclass"):
        registry.register(int)

    class NoStride(cp.Pool2d):
        def __init__(self, kernel_size):
            super().__init__(kernel_size)

    with pytest.raises(TypeError, match="constructor has no stride parameter"):
        registry.register(NoStride, "test-no-stride")
    assert "test-no-stride" not in registry.pool_names()
    registry.register(cp.MaxPool2d, "max")  # the same class again: fine


def test_a_registered_class_owns_its_name(tmp_path):
    # A user class that happens to be called MaxPool2d does not shadow cnnpool's.
    class MaxPool2d(cp.Pool2d):
        def pool(self, windows):
            return windows.max(-1)

    cp.Sequential(cp.MaxPool2d(2)).save(tmp_path / "m.npz")
    assert type(cp.load(tmp_path / "m.npz")[0]) is cp.MaxPool2d
    with pytest.raises(ValueError, match=r"shares the name 'MaxPool2d'.*rename your class"):
        cp.Sequential(MaxPool2d(2)).save(tmp_path / "mine.npz")
    with pytest.raises(ValueError, match=r"different class.*already registered.*'MaxPool2d'"):
        registry.register(MaxPool2d)


def _scale_class(factor):
    class Scale(cp.Layer):
        def __init__(self, factor=factor):
            self.factor = factor

        def forward(self, x):
            return x * self.factor

        def backward(self, g):
            return g * self.factor

        def get_config(self):
            return {"factor": self.factor}

    return Scale


def _other_scale_class():
    class Scale(cp.Layer):  # same name, different qualified name
        def __init__(self, factor=1.0):
            self.factor = -factor

        def get_config(self):
            return {"factor": -self.factor}

    return Scale


def test_ambiguous_names_are_refused_until_one_class_is_registered(tmp_path):
    mine, theirs = _scale_class(2.0), _other_scale_class()
    with pytest.raises(ValueError, match=r"ambiguous layer type 'Scale'.*cnnpool\.register"):
        cp.Sequential(mine(2.0)).save(tmp_path / "m.npz")
    registry.register(mine)
    try:
        cp.Sequential(mine(2.5)).save(tmp_path / "m.npz")
        assert type(cp.load(tmp_path / "m.npz")[0]) is mine
        registry.unregister(mine)
        with pytest.raises(ValueError, match=r"layer 0: ambiguous layer type 'Scale'.*2 different"):
            cp.load(tmp_path / "m.npz")
    finally:
        registry.unregister(mine)
    del theirs  # once nothing uses the other class, the name is unambiguous again
    assert registry.layer_class("Scale") is mine
    assert cp.load(tmp_path / "m.npz")[0].factor == 2.5


def test_unknown_names_say_what_to_do():
    with pytest.raises(ValueError, match=r"unknown pooling strategy 'nope'; known: avg, .*max"):
        registry.make_pool("nope", 2)
    with pytest.raises(ValueError, match="unknown pooling strategy"):
        registry.pool_class(None)
    with pytest.raises(ValueError, match=r"unknown type 'Nope'.*import or define"):
        registry.layer_class("Nope")


def test_builtin_short_names():
    assert set(registry.pool_names()) >= {"max", "mean", "avg", "lp", "stochastic", "mixed"}
    assert registry.pool_class("avg") is registry.pool_class("mean") is cp.MeanPool2d
    assert registry.pool_name(cp.MeanPool2d) == "mean"
    assert registry.pool_name(cp.ReLU) is None
    lp = registry.make_pool("lp", 3, 2)
    assert lp.norm_type == 2 and lp.kernel_size == (3, 3) and lp.stride == (2, 2)
    assert registry.make_pool("lp", 2, norm_type=3).norm_type == 3
    with pytest.raises(ValueError, match=r"could not build LpPool2d.*padding"):
        registry.make_pool("lp", 2, padding=1)


def test_seed_reaches_strategies_that_draw():
    x = np.abs(np.random.default_rng(1).standard_normal((1, 2, 8, 8)))
    a = registry.make_pool("stochastic", 2, seed=7)
    np.testing.assert_array_equal(a(x), cp.StochasticPool2d(2, rng=7)(x))
    assert registry.make_pool("max", 2, seed=7).kernel_size == (2, 2)  # ignored where unused
    with pytest.raises(TypeError, match="seed or rng, not both"):
        registry.make_pool("stochastic", 2, seed=1, rng=2)


def test_compiled_strategies_save_and_load(tmp_path, forget):
    forget("test-compiled-l2")

    class L2Pool2d(cp.CompiledPool2d, name="test-compiled-l2"):
        """A CompiledPool2d-style strategy a user registers."""

        def __init__(self, kernel_size, stride=None, p=2.0):
            super().__init__(LpWindow(p), kernel_size, stride)
            self.p = p

        def get_config(self):
            return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "p": self.p}

    x = np.abs(np.random.default_rng(2).standard_normal((2, 3, 6, 6)))
    layer = registry.make_pool("test-compiled-l2", 2, p=3.0)
    cp.Sequential(layer).save(tmp_path / "m.npz")
    loaded = cp.load(tmp_path / "m.npz")[0]
    assert type(loaded) is L2Pool2d and loaded.p == 3.0
    np.testing.assert_array_equal(loaded(x), layer(x))
    with pytest.raises(ValueError, match=r"bare CompiledPool2d\(LpWindow.*subclass"):
        cp.Sequential(cp.CompiledPool2d(LpWindow(2.0), 2)).save(tmp_path / "bare.npz")


def test_defaults_need_a_name():
    with pytest.raises(TypeError, match="defaults= needs a short name"):

        class _Bad(cp.Pool2d, defaults={"x": 1}):
            pass


def test_allocates_class_keyword_reaches_load(tmp_path, forget):
    forget("test-weighted")

    class WeightedMax(cp.MaxPool2d, name="test-weighted", allocates=lambda c: c["taps"]):
        def __init__(self, kernel_size, stride=None, taps=4):
            super().__init__(kernel_size, stride)
            self.weight = cp.Parameter(np.ones(taps), "weight")

        def parameters(self):
            return [self.weight]

        def get_config(self):
            return {"kernel_size": 2, "stride": 2, "taps": self.weight.data.size}

    assert registry.allocates_of(WeightedMax)({"taps": 7}) == 7
    cp.Sequential(registry.make_pool("test-weighted", 2)).save(tmp_path / "w.npz")
    assert type(cp.load(tmp_path / "w.npz")[0]) is WeightedMax
    registry.unregister(WeightedMax)
    assert registry.allocates_of(WeightedMax) is None


def test_a_jit_strategy_registers_by_class_keyword_and_round_trips(tmp_path, forget):
    pytest.importorskip("numba")
    forget("test-jit-l2")

    class JitL2(cp.JitPool2d, name="test-jit-l2"):
        @staticmethod
        def window(values, params):
            total = 0.0
            for v in values:
                total += v * v
            return total**0.5

        @staticmethod
        def window_grad(values, pooled, params, grad):
            for j in range(len(values)):
                grad[j] = values[j] / pooled if pooled > 0 else 0.0

    layer = registry.make_pool("test-jit-l2", 2)
    x = np.abs(np.random.default_rng(4).standard_normal((2, 3, 6, 6))) + 0.1
    model = cp.Sequential(layer)
    model.save(tmp_path / "j.npz")
    loaded = cp.load(tmp_path / "j.npz")
    assert type(loaded[0]) is JitL2
    np.testing.assert_array_equal(loaded(x), layer(x))
