"""The compiled extension point: _strategy.pxd, the window driver, LpWindow, a user's own .pyx."""

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cnnpool as cp
from cnnpool.pooling.strategies._lp import LpWindow
from cnnpool.pooling.tiers import _strategy
from cnnpool.pooling.tiers.compiled import strategy_backward, strategy_forward, window_plan

GEOMETRIES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1)),
]


@pytest.fixture
def x():
    return np.abs(np.random.default_rng(0).standard_normal((2, 3, 7, 6))) + 0.1


@pytest.mark.parametrize("p", [2.0, 3.0])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_compiled_lp_strategy_matches_the_numpy_strategy(x, geometry, p):
    """LpWindow run by the driver = the same Lp written in NumPy (Pool2d's generic path).

    p = 2 runs LpWindow's own block loops (with 2x2 and 3x3 windows their
    constant-window copies), p = 3 the per-window arithmetic.
    """

    class NumpyLp(cp.Pool2d):
        def pool(self, windows):
            inside = self.geometry.inside
            n = inside.sum(axis=-1)
            s = np.where(inside, windows**p, 0).sum(axis=-1) / n * windows.shape[-1]
            return s ** (1 / p)

        def route(self, windows, pooled):
            inside = self.geometry.inside
            n = inside.sum(axis=-1)[..., None]
            k = windows.shape[-1]
            s = np.where(inside, windows**p, 0).sum(axis=-1, keepdims=True) / n * k
            return np.where(inside, k / n * s ** (1 / p - 1) * windows ** (p - 1), 0)

    compiled = cp.CompiledPool2d(LpWindow(p), **geometry)
    reference = NumpyLp(**geometry)
    y = compiled(x)
    np.testing.assert_allclose(y, reference(x), rtol=1e-13)
    g = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_allclose(compiled.backward(g), reference.backward(g), rtol=1e-12)
    for fast in (True, False):
        compiled.use_fast_path = fast
        assert cp.gradcheck(compiled, x) < 1e-7


@pytest.mark.parametrize("p", [1.5, 0.5, -2.5, 2.0, 3.0])
def test_lp_window_matches_the_lp_layer_for_any_p(x, p):
    """Fractional p runs NumPy in LpPool2d; LpWindow must still agree with it."""
    compiled = cp.CompiledPool2d(LpWindow(p), 3, 2, ceil_mode=True)
    layer = cp.LpPool2d(p, 3, 2, ceil_mode=True)
    y = compiled(x)
    np.testing.assert_allclose(y, layer(x), rtol=1e-12)
    g = np.random.default_rng(6).standard_normal(y.shape)
    np.testing.assert_allclose(compiled.backward(g), layer.backward(g), rtol=1e-10)


def test_generic_path_runs_the_same_compiled_strategy(x):
    layer = cp.CompiledPool2d(LpWindow(2.0), 3, 2, padding=1)
    y_fast = layer(x)
    g = np.random.default_rng(2).standard_normal(y_fast.shape)
    gx_fast = layer.backward(g)
    layer.use_fast_path = False
    np.testing.assert_array_equal(layer(x), y_fast)
    np.testing.assert_allclose(layer.backward(g), gx_fast, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", [(2, 2, 0), (3, 2, 0), (3, 1, 0), (3, 2, 1)])
def test_lp_layer_uses_the_driver_and_threads_do_not_change_results(dtype, geometry):
    """The layer = the driver called directly, bit for bit, on one thread and on two."""
    k, s, pad = geometry
    x = np.abs(np.random.default_rng(3).standard_normal((16, 8, 20, 20))).astype(dtype)
    layer = cp.CompiledPool2d(LpWindow(2.0), k, s, padding=pad)
    y = layer(x)
    gx = layer.backward(np.ones_like(y))
    planes = x.reshape(128, 400)
    plan = window_plan(layer.geometry.taps.reshape(-1, k * k), 400)
    assert plan.full == (pad == 0) and plan.disjoint == (k == s == 2)
    for threads in (1, 2):
        out = np.empty((128, plan.taps.shape[0]), dtype)
        _strategy.forward(LpWindow(2.0), planes, plan.taps, plan.counts, plan.full, out, threads)
        np.testing.assert_array_equal(out.reshape(y.shape), y)
        grad = np.zeros_like(planes)
        _strategy.backward(
            LpWindow(2.0),
            planes,
            plan.taps,
            plan.counts,
            plan.full,
            plan.disjoint,
            out,
            np.ones_like(out),
            grad,
            threads,
        )
        np.testing.assert_array_equal(grad.reshape(x.shape), gx)


def test_window_plan_compacts_the_tap_table():
    taps = np.array([[-1, 0, 1, -1], [2, 3, 4, 5], [5, -1, 6, 7]], dtype=np.intp)
    plan = window_plan(taps, 8)
    assert plan.taps[:, :3].tolist()[0][:2] == [0, 1]
    assert plan.taps[2, :3].tolist() == [5, 6, 7]
    assert plan.counts.tolist() == [2, 4, 3]
    assert not plan.full and not plan.disjoint and plan.covers
    disjoint = window_plan(np.array([[0, 1], [2, -1]], dtype=np.intp), 4)
    assert disjoint.disjoint and not disjoint.covers


def test_the_driver_rejects_disagreeing_shapes():
    plan = window_plan(np.array([[0, 1]], dtype=np.intp), 4)
    x = np.ones((2, 4))
    with pytest.raises(ValueError, match="shapes disagree"):
        _strategy.forward(LpWindow(2.0), x, plan.taps, plan.counts, True, np.empty((2, 2)), 1)
    with pytest.raises(TypeError, match="out must have dtype float64"):
        _strategy.forward(
            LpWindow(2.0), x, plan.taps, plan.counts, True, np.empty((2, 1), np.float32), 1
        )
    with pytest.raises(ValueError, match="grad_x must be writeable"):
        ro = np.zeros((2, 4))
        ro.flags.writeable = False
        _strategy.backward(
            LpWindow(2.0),
            x,
            plan.taps,
            plan.counts,
            True,
            False,
            np.ones((2, 1)),
            np.ones((2, 1)),
            ro,
            1,
        )


def test_driver_checks_its_inputs():
    planes = np.ones((2, 9))
    with pytest.raises(ValueError, match=r"\[-1, 9\)"):
        strategy_forward(LpWindow(2.0), planes, np.array([[0, 9]], dtype=np.intp))
    with pytest.raises(ValueError, match=r"\[-1, 9\)"):
        strategy_forward(LpWindow(2.0), planes, np.array([[0, -2]], dtype=np.intp))
    with pytest.raises(ValueError, match="at least one tap"):
        strategy_forward(LpWindow(2.0), planes, np.array([[-1, -1]], dtype=np.intp))
    with pytest.raises(TypeError, match="intp"):
        strategy_forward(LpWindow(2.0), planes, np.array([[0, 1]], dtype=np.int32))
    with pytest.raises(TypeError, match="WindowStrategy"):
        strategy_forward(object(), planes, np.array([[0, 1]], dtype=np.intp))
    with pytest.raises(ValueError, match="shape"):
        strategy_backward(
            LpWindow(2.0),
            planes,
            np.array([[0, 1]], dtype=np.intp),
            np.ones((2, 2)),
            np.ones((2, 1)),
        )
    with pytest.raises(TypeError, match="abstract"):
        cp.pooling.WindowStrategy()
    with pytest.raises(TypeError, match="WindowStrategy"):
        cp.CompiledPool2d(lambda w: w, 2)
    with pytest.raises(ValueError, match="finite non-zero"):
        LpWindow(0.0)


def test_pxd_ships_with_the_package():
    here = Path(cp.__file__).parent / "pooling" / "tiers"
    assert (here / "_strategy.pxd").is_file()
    assert "cdef class WindowStrategy" in (here / "_strategy.pxd").read_text()


# --------------------------------------------------- a user's strategy, compiled here
USER_PYX = textwrap.dedent('''
    # cython: language_level=3
    """Log-sum-exp pooling, a smooth maximum: y = log(sum(exp(x_i)))."""
    from libc.math cimport exp, log
    from cnnpool.pooling.tiers._strategy cimport WindowStrategy


    cdef class LogSumExp(WindowStrategy):
        cdef double reduce(self, const double* values, Py_ssize_t n,
                           Py_ssize_t window_size) noexcept nogil:
            cdef double top = values[0], total = 0
            cdef Py_ssize_t i
            for i in range(1, n):
                if values[i] > top:
                    top = values[i]
            for i in range(n):
                total += exp(values[i] - top)
            return top + log(total)

        cdef void route(self, const double* values, Py_ssize_t n, Py_ssize_t window_size,
                        double pooled, double* local) noexcept nogil:
            cdef Py_ssize_t i
            for i in range(n):
                local[i] = exp(values[i] - pooled)   # softmax weights
''')

USER_SETUP = textwrap.dedent("""
    import sys
    from Cython.Build import cythonize
    from setuptools import Extension, setup

    setup(
        name="user_strategy",
        ext_modules=cythonize(
            [Extension("user_strategy", ["user_strategy.pyx"])],
            include_path=[sys.argv.pop()],  # where the installed cnnpool package lives
            quiet=True,
        ),
        script_args=["build_ext", "--inplace"],
    )
""")


def _compiler():
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


def test_user_strategy_compiles_against_the_installed_pxd(tmp_path, monkeypatch):
    if _compiler() is None:
        pytest.skip("no C compiler found")
    pytest.importorskip("Cython", reason="a user's own .pyx needs Cython to build")
    (tmp_path / "user_strategy.pyx").write_text(USER_PYX)
    (tmp_path / "setup.py").write_text(USER_SETUP)
    package_root = str(Path(cp.__file__).parent.parent)
    done = subprocess.run(
        [sys.executable, "setup.py", package_root],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    monkeypatch.syspath_prepend(str(tmp_path))
    import user_strategy

    x = np.random.default_rng(5).standard_normal((2, 3, 7, 6))
    layer = cp.CompiledPool2d(user_strategy.LogSumExp(), 3, 2, padding=1)
    y = layer(x)
    # reference: log-sum-exp over the input taps of each window
    windows = layer.gather_windows(x)
    inside = layer.geometry.inside
    expected = np.log(np.where(inside, np.exp(windows), 0).sum(axis=-1))
    np.testing.assert_allclose(y, expected, rtol=1e-13)
    assert cp.gradcheck(layer, x) < 1e-7
    layer.use_fast_path = False
    np.testing.assert_allclose(layer(x), y, rtol=1e-15)
    assert cp.gradcheck(layer, x) < 1e-7
