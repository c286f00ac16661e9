"""The JIT tier (JitPool2d): Numba kernels from scalar Python window functions.

* The compiled kernels give the same bits as the plain-Python NumPy tier of
  the same strategy, over geometries (padding, dilation, ceil_mode) and
  values (ties, NaN, inf), float32 and float64, forward and backward.
* JIT max and mean agree with the independent loops of ``tests/reference.py``
  (PyTorch's rules, including ``count_include_pad`` and ceil_mode overhang).
* gradcheck, parameter gradients, 1 vs 2 threads, save/load, clear errors,
  the fallback without Numba, and the on-disk cache across processes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jit_strategies import (
    FirstMaxPool2d,
    L2Pool2d,
    LearnedSoftmaxPool2d,
    MeanPool2dJit,
    PaddedMeanPool2dJit,
)
from reference import max_pool2d, max_pool2d_backward, mean_pool2d, mean_pool2d_backward

import cnnpool as cp
from cnnpool.pooling.tiers import _jit_kernels, jit

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "examples", "custom_pooling.py")


def _load_example():
    spec = importlib.util.spec_from_file_location("custom_pooling_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SoftmaxPool2d = _load_example().SoftmaxPool2d


def softmax(**kwargs):
    return SoftmaxPool2d(beta=1.5, **kwargs)


STRATEGIES = {
    "l2": L2Pool2d,
    "max": FirstMaxPool2d,
    "mean": MeanPool2dJit,
    "padded-mean": PaddedMeanPool2dJit,
    "softmax": softmax,
    "learned-softmax": LearnedSoftmaxPool2d,
}


def both_tiers(make, **geometry):
    fast, slow = make(**geometry), make(**geometry)
    slow.use_fast_path = False
    return fast, slow


def run(layer, x, g=None):
    y = layer(x)
    g = np.ones_like(y) if g is None else g
    grads = [p.grad.copy() for p in layer.parameters()]
    for p in layer.parameters():
        p.zero_grad()
    gx = layer.backward(g)
    return y, gx, [p.grad.copy() for p in layer.parameters()], grads


@st.composite
def geometries(draw):
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    ceil_mode = draw(st.booleans())
    h = draw(st.integers(max(1, d[0] * (k[0] - 1) + 1 - 2 * p[0]), 7))
    w = draw(st.integers(max(1, d[1] * (k[1] - 1) + 1 - 2 * p[1]), 7))
    geometry = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil_mode)
    try:
        cp.MaxPool2d(**geometry).geometry_for(h, w)
    except ValueError:  # a window wholly in padding or between dilated taps: refused
        from hypothesis import assume

        assume(False)
    return geometry, (h, w)


# Values with ties (a small grid), and NaN and inf where asked.
def values(shape, draw, specials):
    grid = st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    pool = st.one_of(grid, st.sampled_from([math.nan, math.inf, -math.inf])) if specials else grid
    flat = draw(st.lists(pool, min_size=math.prod(shape), max_size=math.prod(shape)))
    return np.array(flat).reshape(shape)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@given(data=st.data())
def test_kernels_give_the_bits_of_the_numpy_tier(name, data):
    """Every geometry feature, ties, NaN and inf: JIT kernel == plain-Python reference."""
    geometry, (h, w) = data.draw(geometries())
    specials = name in ("max", "mean", "padded-mean", "l2") and data.draw(st.booleans())
    x = values((2, 2, h, w), data.draw, specials)
    fast, slow = both_tiers(STRATEGIES[name], **geometry)
    y, gx, pg, _ = run(fast, x)
    g = np.random.default_rng(0).standard_normal(y.shape)
    y, gx, pg, _ = run(fast, x, g)
    y2, gx2, pg2, _ = run(slow, x, g)
    assert fast._state.tier == "kernel" and slow._state.tier == "numpy"
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(gx, gx2)
    for a, b in zip(pg, pg2):
        np.testing.assert_allclose(a, b, rtol=1e-13, equal_nan=True)


GEOMETRIES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1), padding=(1, 1)),
    dict(kernel_size=3, stride=1, dilation=2, padding=1, ceil_mode=True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_float32_and_float64_match_the_numpy_tier(geometry, dtype):
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 8)).astype(dtype)
    for make in (SoftmaxPool2d, L2Pool2d):
        fast, slow = both_tiers(make, **geometry)
        g = np.random.default_rng(2).standard_normal(fast.output_shape(x.shape)).astype(dtype)
        y, gx, _, _ = run(fast, x, g)
        assert y.dtype == gx.dtype == dtype
        y2, gx2, _, _ = run(slow, x, g)
        np.testing.assert_array_equal(y, y2)
        np.testing.assert_array_equal(gx, gx2)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_max_and_mean_agree_with_the_reference_loops(geometry):
    """Independent check of the tap tables: PyTorch's max and mean rules."""
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, (2, 2, 9, 8)).astype(np.float64)  # many ties
    x[0, 0, 1, 1] = np.nan
    x[1, 1, 2, 3] = -np.inf
    k = cp.MaxPool2d(**geometry)
    args = (k.kernel_size, k.stride, k.padding, k.dilation, k.ceil_mode)
    y_ref, idx = max_pool2d(x, *args)
    layer = FirstMaxPool2d(**geometry)
    g = rng.standard_normal(y_ref.shape)
    np.testing.assert_array_equal(layer(x), y_ref)
    np.testing.assert_array_equal(layer.backward(g), max_pool2d_backward(g, idx, x.shape))

    x = rng.standard_normal((2, 2, 9, 8))
    for make, include in ((MeanPool2dJit, False), (PaddedMeanPool2dJit, True)):
        layer = make(**geometry)
        ref = dict(ceil_mode=k.ceil_mode, count_include_pad=include, d=k.dilation)
        y = layer(x)
        np.testing.assert_allclose(y, mean_pool2d(x, k.kernel_size, k.stride, k.padding, **ref))
        np.testing.assert_allclose(
            layer.backward(g),
            mean_pool2d_backward(g, x.shape, k.kernel_size, k.stride, k.padding, **ref),
        )


@pytest.mark.parametrize("geometry", GEOMETRIES[:3])
def test_softmax_agrees_with_a_vectorised_numpy_softmax(geometry):
    """The example's softmax pooling against the NumPy formula over the windows."""
    x = np.random.default_rng(4).standard_normal((2, 3, 8, 8))
    layer = SoftmaxPool2d(beta=2.0, **geometry)
    y = layer(x)
    windows = layer.gather_windows(x)
    logits = np.where(layer.geometry.inside, 2.0 * windows, -np.inf)
    w = np.exp(logits - logits.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(y, np.sum(w * windows, axis=-1), rtol=1e-12)


@pytest.mark.parametrize("name", ["softmax", "l2", "learned-softmax", "padded-mean"])
@pytest.mark.parametrize("fast", [True, False])
def test_gradcheck(name, fast):
    x = np.random.default_rng(5).standard_normal((2, 2, 7, 7)) + 0.1
    for geometry in (GEOMETRIES[1], GEOMETRIES[4]):
        layer = STRATEGIES[name](**geometry)
        layer.use_fast_path = fast
        assert cp.gradcheck(layer, x) < 1e-7


def test_parameter_gradients_reach_the_parameter():
    x = np.random.default_rng(6).standard_normal((2, 3, 6, 6))
    layer = LearnedSoftmaxPool2d(2, beta=0.7)
    y = layer(x)
    layer.backward(np.ones_like(y))
    # d sum(y) / d beta by central differences
    eps = 1e-6
    plus, minus = LearnedSoftmaxPool2d(2, beta=0.7 + eps), LearnedSoftmaxPool2d(2, beta=0.7 - eps)
    expected = (plus(x).sum() - minus(x).sum()) / (2 * eps)
    np.testing.assert_allclose(layer.beta.grad, [expected], rtol=1e-6)
    layer.backward(np.ones_like(y))  # gradients accumulate, as for every layer
    np.testing.assert_allclose(layer.beta.grad, [2 * expected], rtol=1e-6)


def test_hyper_parameters_are_kernel_arguments_not_baked_in():
    """Two layers with different beta share one compiled kernel and differ."""
    x = np.random.default_rng(7).standard_normal((1, 2, 6, 6))
    a, b = SoftmaxPool2d(2, beta=0.0), SoftmaxPool2d(2, beta=1e6)
    ya = a(x)
    n_kernels = len(jit._KERNELS)
    yb = b(x)
    assert len(jit._KERNELS) == n_kernels
    np.testing.assert_allclose(ya, cp.MeanPool2d(2)(x), rtol=1e-12)
    np.testing.assert_allclose(yb, cp.MaxPool2d(2)(x), rtol=1e-12)
    a.beta = 1e6  # a changed hyper-parameter reaches the next call
    np.testing.assert_array_equal(a(x), yb)


def test_one_and_two_threads_give_the_same_bits(monkeypatch):
    x = np.random.default_rng(8).standard_normal((3, 5, 17, 16)).astype(np.float32)
    used = []
    real = _jit_kernels.run_planes

    def spy(kernel, planes, threads, *args):
        used.append(threads)
        return real(kernel, planes, threads, *args)

    monkeypatch.setattr(_jit_kernels, "run_planes", spy)
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(jit, "threads_for", lambda planes, work, t=threads: t)
        layer = LearnedSoftmaxPool2d(3, stride=2, padding=1, ceil_mode=True, beta=0.5)
        y = layer(x)
        g = np.random.default_rng(9).standard_normal(y.shape).astype(np.float32)
        results.append((y, layer.backward(g), layer.beta.grad.copy()))
    assert used == [1] * 3 + [2] * 3 + [3] * 3  # forward, backward, parameter gradients
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_the_input_is_copied_and_backward_is_repeatable():
    x = np.random.default_rng(10).standard_normal((2, 2, 6, 6))
    layer = SoftmaxPool2d(3, stride=2, padding=1)
    y = layer(x)
    g1 = layer.backward(np.ones_like(y))
    x[...] = 0  # the caller edits its array after the forward
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)), g1)


def test_save_and_load_round_trip(tmp_path):
    # No registration: every Layer subclass is known to cp.load once defined.
    learned = LearnedSoftmaxPool2d(2, beta=0.3)
    learned.beta.data[...] = 1.25  # trained away from its constructor value
    model = cp.Sequential(SoftmaxPool2d(3, stride=1, padding=1, beta=4.0), learned)
    x = np.random.default_rng(11).standard_normal((2, 3, 8, 8))
    model.save(tmp_path / "m.npz")
    loaded = cp.load(tmp_path / "m.npz")
    assert loaded.layers[0].beta == 4.0 and loaded.layers[0].padding == (1, 1)
    np.testing.assert_array_equal(loaded.layers[1].beta.data, [1.25])
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))


def test_get_config_refuses_a_constructor_it_cannot_rebuild():
    class Fixed(L2Pool2d):
        def __init__(self):
            super().__init__(2)

    with pytest.raises(TypeError, match=r"Fixed.get_config: the constructor takes no"):
        Fixed().get_config()


# ------------------------------------------------------------------ errors
def make_strategy(window=None, window_grad=None, name="Broken", **attrs):
    def default_window(values, params):
        return values[0]

    def default_grad(values, pooled, params, grad):
        grad[0] = 1.0

    body = dict(
        window=staticmethod(window or default_window),
        window_grad=staticmethod(window_grad or default_grad),
        **attrs,
    )
    return type(name, (cp.JitPool2d,), body)


X = np.random.default_rng(12).standard_normal((1, 1, 4, 4))


@pytest.mark.parametrize(
    "window, message",
    [
        (lambda values, params: 1 / 0, r"Broken.window raised ZeroDivisionError"),
        (lambda values, params: values[3], r"Broken.window raised IndexError.*len\(values\)"),
        (lambda values, params: (values[0], 1.0), r"Broken.window must return a real number"),
        (lambda values, params: values, r"Broken.window must return a real number.*ndarray"),
        (lambda values, params: math.nan, r"Broken.window returned nan"),
    ],
)
@pytest.mark.parametrize("fast", [True, False])
def test_a_wrong_window_function_gets_a_named_error(window, message, fast):
    layer = make_strategy(window)(2, padding=1)
    layer.use_fast_path = fast
    with pytest.raises(cp.JitStrategyError, match=message):
        layer(X)


def test_a_wrong_window_grad_gets_a_named_error():
    def returns(values, pooled, params, grad):
        return grad

    def writes_nan(values, pooled, params, grad):
        grad[0] = math.nan

    def edits_values(values, pooled, params, grad):
        values[0] = 0.0

    for f, message in (
        (returns, r"Broken.window_grad must write into grad and return None"),
        (writes_nan, r"Broken.window_grad wrote \[nan.*not finite"),
        (edits_values, r"Broken.window_grad raised ValueError.*read-only"),
    ):
        with pytest.raises(cp.JitStrategyError, match=message):
            make_strategy(window_grad=f)(2)(X)


def test_a_function_numba_cannot_compile_gets_a_named_error():
    def uses_python_objects(values, params):
        return float(len(object().__class__.__name__))  # Python objects: not nopython

    with pytest.raises(cp.JitStrategyError, match=r"Numba cannot compile Broken.window"):
        make_strategy(uses_python_objects)(2)(X)


def test_an_error_raised_inside_the_kernel_is_named():
    def picky(values, params):
        if values[0] > 1e6:
            raise ValueError("too large")
        return values[0]

    layer = make_strategy(picky)(2)
    layer(X)  # fine on ordinary values
    with pytest.raises(cp.JitStrategyError, match=r"Broken: .*ValueError: too large"):
        layer(X * 1e9)


def test_the_contract_is_checked_when_the_class_is_defined():
    with pytest.raises(TypeError, match=r"Bad.window must take 2 arguments.*@staticmethod"):

        class Bad(cp.JitPool2d):
            def window(self, values, params):
                return values[0]

    with pytest.raises(TypeError, match=r"window_params must be a tuple of attribute names"):
        make_strategy(window_params="beta")
    with pytest.raises(cp.JitStrategyError, match=r"defines no window_grad"):
        type("NoGrad", (cp.JitPool2d,), {"window": staticmethod(lambda v, p: v[0])})(2)(X)


def test_bad_window_params_are_named():
    cls = make_strategy(window_params=("beta",))
    layer = cls(2)
    layer.beta = "large"
    with pytest.raises(TypeError, match=r"Broken.beta \(listed in window_params\) must be"):
        layer(X)
    layer.beta = cp.Parameter(np.ones(1), "beta")
    with pytest.raises(
        cp.JitStrategyError, match=r"learnable parameters \['beta'\].*no window_param_grad"
    ):
        layer(X)


# ------------------------------------------------------- without Numba
def test_without_numba_the_same_class_runs_in_plain_python(monkeypatch):
    x = np.random.default_rng(13).standard_normal((2, 2, 7, 7))
    compiled = SoftmaxPool2d(3, stride=2, padding=1)
    y, gx, _, _ = run(compiled, x)
    monkeypatch.setitem(sys.modules, "numba", None)  # "import numba" now fails
    monkeypatch.setattr(jit, "_warned_no_numba", False)
    with pytest.warns(
        RuntimeWarning, match=r'Numba is not installed.*pip install "cnnpool\[jit\]"'
    ):
        layer = SoftmaxPool2d(3, stride=2, padding=1)
    assert not jit.numba_available() and not layer.has_kernel
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process, not per layer
        SoftmaxPool2d(2)
    y2, gx2, _, _ = run(layer, x)
    assert layer._state.tier == "numpy"
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(gx2, gx)
    assert cp.gradcheck(layer, x) < 1e-7


# ------------------------------------------------------- the disk cache
def test_the_kernels_are_cached_on_disk_for_the_next_process(tmp_path):
    """Second process: every kernel it runs comes from the cache, none compiles."""
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {HERE!r})
        import numpy as np
        from jit_strategies import L2Pool2d
        from cnnpool.pooling.tiers import jit
        layer = L2Pool2d(2)
        y = layer(np.ones((1, 1, 4, 4), dtype=np.float32))
        layer.backward(np.ones_like(y))
        (kernels,) = jit._KERNELS.values()
        stats = [k.stats for k in (kernels.forward, kernels.backward)]
        print(json.dumps([[sum(s.cache_hits.values()), sum(s.cache_misses.values())] for s in stats]))
        """
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    counts = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=HERE
        )
        assert out.returncode == 0, out.stderr
        counts.append(json.loads(out.stdout.strip().splitlines()[-1]))
    hits = [sum(h for h, _ in run) for run in counts]
    misses = [sum(m for _, m in run) for run in counts]
    assert hits == [0, 2] and misses == [2, 0]
    files = [f for _, _, names in os.walk(tmp_path) for f in names]
    assert any(f.startswith("_jit_kernels.forward_") and f.endswith(".nbi") for f in files), files


def test_the_fingerprint_follows_the_code():
    def a(values, params):
        return values[0]

    def b(values, params):
        return values[0] + 1.0

    def c(values, params):
        return values[0]

    assert _jit_kernels.fingerprint((a, None, None)) == _jit_kernels.fingerprint((c, None, None))
    assert _jit_kernels.fingerprint((a, None, None)) != _jit_kernels.fingerprint((b, None, None))


def test_functions_already_compiled_with_numba_njit_are_accepted():
    import numba

    @numba.njit
    def window(values, params):
        return values.max()

    @numba.njit
    def window_grad(values, pooled, params, grad):
        grad[np.argmax(values)] = 1.0

    cls = make_strategy(window, window_grad, name="Decorated")
    x = np.random.default_rng(14).standard_normal((2, 2, 6, 6))
    fast, slow = both_tiers(cls, kernel_size=3, stride=2, padding=1)
    np.testing.assert_array_equal(fast(x), cp.MaxPool2d(3, 2, 1)(x))
    np.testing.assert_array_equal(fast(x), slow(x))
    g = np.ones_like(fast(x))
    np.testing.assert_array_equal(fast.backward(g), slow.backward(g))
