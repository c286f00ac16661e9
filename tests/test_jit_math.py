"""The vectorisable exp of the JIT kernels (cnnpool/pooling/tiers/_jit_math.py).

The kernels swap it for ``math.exp`` only where it gives the C library's
bits; these tests hold it to that, compiled and in plain Python, over every
branch of the algorithm, and check that the swap reaches the forms a user
writes (``math.exp``, ``from math import exp``) without touching their module.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numba
import numpy as np

from cnnpool.pooling.tiers import _jit_kernels, _jit_math


def libm_exp(values):
    out = np.empty_like(values)
    for i, v in enumerate(values):
        try:
            out[i] = math.exp(v)
        except OverflowError:
            out[i] = math.inf
    return out


def samples():
    rng = np.random.default_rng(13)
    return np.concatenate(
        [
            rng.uniform(-760.0, 720.0, 40_000),  # every branch, incl. |x| >= 512
            rng.standard_normal(40_000) * 4.0,  # where softmax pooling lives
            rng.uniform(-745.2, -708.0, 20_000),  # results in the subnormal range
            rng.standard_normal(5_000) * 1e-17,  # |x| < 2^-54
            np.array(_jit_math.PROBES + [math.nan, -math.nan]),
        ]
    )


def same_bits(a, b):
    return (a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))


def test_the_compiled_exp_gives_the_c_librarys_bits():
    if not _jit_math.matches_libm():  # another C library: the kernels keep its exp
        assert _jit_kernels._vector_exp(numba) is None
        return
    assert _jit_kernels._vector_exp(numba) is not None
    exp = _jit_math.compiled_exp(numba)

    @numba.njit
    def run(x, out):
        for i in range(x.shape[0]):  # a loop the compiler vectorises
            out[i] = exp(x[i])

    x = samples()
    got = np.empty_like(x)
    run(x, got)
    want = libm_exp(x)
    bad = ~same_bits(got, want)
    assert not bad.any(), list(zip(x[bad][:5], got[bad][:5], want[bad][:5]))


def test_the_python_form_follows_the_same_algorithm():
    """reference_exp is what matches_libm trusts: it must be the compiled one's twin."""
    exp = _jit_math.compiled_exp(numba)
    x = samples()[::40]
    compiled = np.array([exp(v) for v in x])
    python = np.array([_jit_math.reference_exp(float(v)) for v in x])
    assert same_bits(compiled, python).all()


def test_the_table_is_two_to_the_k_over_128():
    tab = [int(v) for v in _jit_math.table()]
    for k in range(128):
        h = _jit_math._double(tab[2 * k + 1] + (k << 45))
        t = _jit_math._double(tab[2 * k])
        # h * (1 + t), exactly, is 2^(k/128) to far better than double precision
        ratio = (Fraction(h) * (1 + Fraction(t))) ** 128 / 2**k
        assert abs(ratio - 1) < Fraction(1, 2**95)
        assert abs(t) < 2.0**-53  # the tail is below half an ulp of h


def test_math_exp_is_swapped_only_in_a_copy_of_the_globals():
    from math import exp as bare_exp

    ns = {"math": math, "exp": bare_exp, "other": 1.0}
    marker = object()
    swapped = _jit_kernels._with_exp(ns, marker)
    assert swapped["exp"] is marker and swapped["math"].exp is marker
    assert swapped["math"].sqrt is math.sqrt and swapped["other"] == 1.0
    assert ns["math"] is math and ns["exp"] is bare_exp  # the user's module untouched
    assert math.exp is not marker
    assert _jit_kernels._with_exp({"other": 1.0}, marker) == {"other": 1.0}


def test_the_swapped_globals_hold_only_what_the_code_reads():
    """The kernels are cached for the process: the copy of the globals they keep
    must not keep the rest of the user's namespace (a doctest's classes) alive."""
    ns = {"math": math, "unrelated": object()}
    exec("def window(values, params):\n    return math.exp(values[0])\n", ns)
    marker = object()
    adopted = _jit_kernels._adopt(ns["window"], marker)
    assert set(adopted.__globals__) == {"math", "__builtins__"}
    assert adopted.__globals__["math"].exp is marker
    assert ns["math"] is math  # the user's namespace untouched
    assert _jit_kernels._adopt(ns["window"]).__globals__ is ns  # no swap: the globals as they are
