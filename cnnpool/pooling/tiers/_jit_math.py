"""``math.exp`` for the JIT kernels, in a form the compiler can vectorise.

A JIT strategy's window functions call ``math.exp`` per tap (softmax-like
pooling).  Numba compiles that to a call of the C library's ``exp``, one
value at a time, and the call cannot be vectorised (llvmlite's wheels have
no SVML, and its pass builder ignores ``-vector-library``): most of such a
kernel's time goes there.  This module holds the same algorithm as glibc's
``exp`` (the table-driven one of glibc >= 2.28, ARM's optimized-routines),
written as Numba arithmetic (fused multiply-adds exactly where glibc's FMA
build uses them, the 2^(k/128) table as a constant array), with its rare
cases (|x| < 2^-54, |x| >= 512, inf, NaN) as branches the compiler turns
into selects.  Inlined into a loop over windows it becomes AVX-512 code.

It is used only where it gives the C library's bits: :func:`matches_libm`
compares it, in plain Python, with ``math.exp`` on inputs from every
branch; on another C library or a CPU without FMA (glibc then runs a
build without fused operations) the kernels keep ``math.exp``.  Both
ways the compiled kernels agree with the NumPy tier to the last bit.
"""

from __future__ import annotations

import functools
import math
import struct
import types
from fractions import Fraction
from typing import Any

import numpy as np

# glibc's __exp_data (EXP_TABLE_BITS = 7, EXP_POLY_ORDER = 5).
_N = 128
INV_LN2_N = float.fromhex("0x1.71547652b82fep+7")
NEG_LN2_HI_N = float.fromhex("-0x1.62e42fefa0000p-8")
NEG_LN2_LO_N = float.fromhex("-0x1.cf79abc9e3b3ap-47")
C2 = float.fromhex("0x1.ffffffffffdbdp-2")
C3 = float.fromhex("0x1.555555555543cp-3")
C4 = float.fromhex("0x1.55555cf172b91p-5")
C5 = float.fromhex("0x1.1111167a4d017p-7")
SHIFT = float.fromhex("0x1.8p52")
TWO_1009 = 2.0**1009
TWO_M1022 = 2.0**-1022
NEG_INF_BITS = struct.unpack("<q", struct.pack("<d", -math.inf))[0]


def _bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _double(b: int) -> float:
    return struct.unpack("<d", struct.pack("<q", ((b + (1 << 63)) % (1 << 64)) - (1 << 63)))[0]


def _table() -> np.ndarray:
    """glibc's ``__exp_data.tab``: per ``k < 128``, the bits of ``T[k]`` and
    of ``H[k]`` less ``k << 45``, with ``2^(k/128) = H[k] * (1 + T[k])``
    (``H`` the nearest double, ``T`` the rounded relative error).

    ``2^(k/128)`` to 128 bits is seven integer square roots of ``2^k``
    (128 = 2^7), far beyond what the two roundings need.
    """
    bits = 128
    tab = np.empty(2 * _N, dtype=np.int64)
    for k in range(_N):
        root = 1 << (k + 128 * bits)
        for _ in range(7):
            root = math.isqrt(root)
        exact = Fraction(root, 1 << bits)
        h = float(exact)
        t = float((exact - Fraction(h)) / Fraction(h))
        tab[2 * k] = _bits(t)
        tab[2 * k + 1] = _bits(h) - (k << 45)
    return tab


@functools.lru_cache(maxsize=1)
def table() -> np.ndarray:
    """The table, built once per process (a few milliseconds)."""
    tab = _table()
    tab.flags.writeable = False
    return tab


def _fma(a: float, b: float, c: float) -> float:
    """``a * b + c`` rounded once (exact rationals; Python 3.11 has no math.fma)."""
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return a * b + c
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def reference_exp(x: float) -> float:
    """The algorithm of the compiled :func:`exp`, in plain Python (for the check)."""
    tab = table()
    ix = _bits(x)
    abstop = (ix >> 52) & 0x7FF
    kd = _fma(x, INV_LN2_N, SHIFT)
    ki = _bits(kd)
    kd = kd - SHIFT
    r = _fma(kd, NEG_LN2_LO_N, _fma(kd, NEG_LN2_HI_N, x))
    idx = (ki & 127) * 2
    tail = _double(int(tab[idx]))
    sbits = int(tab[idx + 1]) + (ki << 45)
    r2 = r * r
    tmp = _fma(r2 * r2, _fma(r, C5, C4), _fma(r2, _fma(r, C3, C2), tail + r))
    if abstop < 0x3C9:
        return 1.0 + x
    if abstop < 0x408:
        return _fma(_double(sbits), tmp, _double(sbits))
    if abstop >= 0x409:
        if abstop >= 0x7FF:
            return 0.0 if ix == NEG_INF_BITS else 1.0 + x
        return 0.0 if ix < 0 else math.inf
    if (ki & 0x80000000) == 0:
        s = _double(sbits - (1009 << 52))
        return TWO_1009 * _fma(s, tmp, s)
    s = _double(sbits + (1022 << 52))
    t = s * tmp
    y = s + t
    if y < 1.0:
        lo = (s - y) + t
        hi = 1.0 + y
        lo = ((1.0 - hi) + y) + lo
        y = (hi + lo) - 1.0
        if y == 0.0:
            y = 0.0
    return TWO_M1022 * y


#: Inputs from every branch of the algorithm, for :func:`matches_libm`.
PROBES = (
    [0.0, -0.0, 1e-300, -1e-17, 2.0**-54, -(2.0**-54), 2.0**-53, 1.0, -1.0, 0.5, -0.693]
    + [0.1 * i - 20.0 for i in range(0, 400, 7)]
    + [-700.123, -708.3964185322641, -709.1, -720.5, -744.4, -745.1332191019411]
    + [-745.1332191019412, -800.0, 512.0, -512.0, 600.25, 709.78, 709.7827128933840]
    + [1024.0, -1024.0, 1e10, -1e10, math.inf, -math.inf]
    + [-545.6761599712345, -517.3705213915570, -601.9891685941718, 3.14159, -2.71828]
)


@functools.lru_cache(maxsize=1)
def matches_libm() -> bool:
    """Whether this process's ``math.exp`` gives the bits of :func:`reference_exp`
    on :data:`PROBES` (glibc's FMA build does; other C libraries may not)."""
    for x in PROBES:
        try:
            want = math.exp(x)
        except OverflowError:
            want = math.inf
        got = reference_exp(x)
        if _bits(want) != _bits(got):
            return False
    nan = reference_exp(math.nan)
    return nan != nan


@functools.lru_cache(maxsize=1)
def compiled_exp(numba: Any) -> Any:
    """The Numba form of :func:`reference_exp` (inlined where it is called)."""
    from llvmlite import ir
    from numba.core import types as nbtypes
    from numba.extending import intrinsic

    double = ir.DoubleType()

    @intrinsic
    def fma(typingctx, a, b, c):
        def codegen(context, builder, sig, args):
            fn = builder.module.declare_intrinsic(
                "llvm.fma", [double], ir.FunctionType(double, [double] * 3)
            )
            return builder.call(fn, args)

        f64 = nbtypes.float64
        return f64(f64, f64, f64), codegen

    @intrinsic
    def bits(typingctx, a):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.IntType(64))

        return nbtypes.int64(nbtypes.float64), codegen

    @intrinsic
    def as_double(typingctx, a):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], double)

        return nbtypes.float64(nbtypes.int64), codegen

    ns = dict(
        np=np,
        fma=fma,
        bits=bits,
        as_double=as_double,
        TAB=table(),
        INV_LN2_N=INV_LN2_N,
        NEG_LN2_HI_N=NEG_LN2_HI_N,
        NEG_LN2_LO_N=NEG_LN2_LO_N,
        C2=C2,
        C3=C3,
        C4=C4,
        C5=C5,
        SHIFT=SHIFT,
        TWO_1009=TWO_1009,
        TWO_M1022=TWO_M1022,
        NEG_INF_BITS=NEG_INF_BITS,
    )
    f = types.FunctionType(_exp_source.__code__, ns, "exp")
    f.__module__ = __name__
    f.__qualname__ = "exp"
    return numba.njit(inline="always", error_model="numpy", nogil=True)(f)


def _exp_source(x):  # pragma: no cover - runs compiled
    # The compiled twin of reference_exp, every case computed without a call so
    # that a loop over windows stays vectorisable; the rare cases are branches
    # on cheap arithmetic (selects once vectorised).
    ix = bits(x)  # noqa: F821 - names from compiled_exp's namespace
    abstop = (ix >> 52) & 0x7FF
    kd = fma(x, INV_LN2_N, SHIFT)  # noqa: F821
    ki = bits(kd)  # noqa: F821
    kd = kd - SHIFT  # noqa: F821
    r = fma(kd, NEG_LN2_LO_N, fma(kd, NEG_LN2_HI_N, x))  # noqa: F821
    idx = (ki & 127) * 2
    tail = as_double(TAB[idx])  # noqa: F821
    sbits = TAB[idx + 1] + (ki << 45)  # noqa: F821
    r2 = r * r
    tmp = fma(r2 * r2, fma(r, C5, C4), fma(r2, fma(r, C3, C2), tail + r))  # noqa: F821
    y = fma(as_double(sbits), tmp, as_double(sbits))  # noqa: F821
    if abstop < 0x3C9 or abstop >= 0x408:
        if abstop < 0x3C9:
            y = 1.0 + x
        elif abstop >= 0x409:
            if abstop >= 0x7FF:
                y = 0.0 if ix == NEG_INF_BITS else 1.0 + x  # noqa: F821
            else:
                y = 0.0 if ix < 0 else np.inf
        elif (ki & 0x80000000) == 0:
            s = as_double(sbits - (1009 << 52))  # noqa: F821
            y = TWO_1009 * fma(s, tmp, s)  # noqa: F821
        else:
            s = as_double(sbits + (1022 << 52))  # noqa: F821
            t = s * tmp
            y = s + t
            if y < 1.0:
                lo = (s - y) + t
                hi = 1.0 + y
                lo = ((1.0 - hi) + y) + lo
                y = (hi + lo) - 1.0
                if y == 0.0:
                    y = 0.0
            y = TWO_M1022 * y  # noqa: F821
    return y
