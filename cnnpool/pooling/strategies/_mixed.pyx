"""Compiled kernels of :class:`~cnnpool.pooling.MixedPool2d` and
:class:`~cnnpool.pooling.GatedPool2d` (their kernel tier), beside the max
and mean kernels.

Both blend each window's max and mean, ``y = a * max + (1 - a) * mean``.
The layers take the max (and its winner) and the mean from MaxPool2d's
and MeanPool2d's own kernel tier (``forward_kernel``/``backward_kernel``),
so ``a = 1`` and ``a = 0`` are those layers bit for bit; what differs is
here:

* **Mixed** (``a`` one number per plane): :func:`mixed_blend` blends in the
  input's type; :func:`mixed_split` turns the output gradient into the
  max's share ``a * g``, the mean's share ``(1 - a) * g`` and each plane's
  blend gradient ``sum(g * (max - mean))`` in float64.  The layer then runs
  the two backward kernels and adds their results: the bits of today's
  max and mean layers.
* **Gated** (``a = sigmoid(w . window)`` per window, padded taps holding
  0): :func:`gated_forward` computes the gate in float64 and rounds the
  blend once; :func:`gated_backward` gives the max's share ``a * g`` and
  adds every other route onto the input, ``((1 - a) / divisor + d a (1 - a)
  w_t) * g`` with ``d = max - mean``, and each plane's weight gradient
  ``sum(g d a (1 - a) x_t)`` in float64.

The gate loops run a row of windows at a time, tap by tap (one strided
pass over an input row per tap), so that they vectorise.  Per-plane
parameter gradients are summed over planes by the caller, in plane order:
no result depends on the thread count.  The entry points check their
arrays and the window table; the loops run with bounds checks off, in
parallel over the N*C planes, each plane whole on one thread.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memset

cimport numpy as cnp

from cnnpool._arrays cimport checked, dims, float_type
from cnnpool.pooling.strategies._window_plan cimport WindowPlan, check_divisor, plan_windows

cnp.import_array()


cdef cnp.ndarray _vector(object a, str name, Py_ssize_t n, int typenum, bint writeable,
                         str what):
    cdef cnp.ndarray arr = checked(a, name, 1, typenum, writeable)
    if arr.shape[0] != n:
        raise ValueError(f"{name} must have {n} entries ({what}), got shape {dims(arr)}")
    return arr


cdef Py_ssize_t _same(cnp.ndarray a, cnp.ndarray b, str name_a, str name_b) except -1:
    if dims(a) != dims(b):
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {dims(a)} "
                         f"and {dims(b)}")
    return 0


cdef cnp.ndarray _scratch(Py_ssize_t per_thread, int n_threads):
    """Per-thread float64 scratch, one block of ``per_thread`` values per thread."""
    return cnp.PyArray_EMPTY(1, [max(n_threads, 1) * max(per_thread, 1)], cnp.NPY_FLOAT64, 0)


# --------------------------------------------------------------------- mixed

cdef void _blend(const floating* mx, const floating* mean, const floating* alpha,
                 floating* out, Py_ssize_t planes, Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t p, o
    cdef floating a, b
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        a = alpha[p]
        b = 1 - a
        for o in range(p * n, p * n + n):
            out[o] = a * mx[o] + b * mean[o]


def mixed_blend(mx, mean, alpha, out, int n_threads):
    """``out = a * mx + (1 - a) * mean`` per plane, in the arrays' dtype.

    ``mx``, ``mean`` and ``out`` are (P, OH, OW); ``alpha`` (P,) the blend
    of each plane, all of one float dtype.
    """
    cdef int typenum = float_type(mx, "mx")
    cdef cnp.ndarray am = checked(mx, "mx", 3, typenum, False)
    cdef cnp.ndarray ae = checked(mean, "mean", 3, typenum, False)
    cdef cnp.ndarray ao = checked(out, "out", 3, typenum, True)
    _same(am, ae, "mx", "mean")
    _same(am, ao, "mx", "out")
    cdef Py_ssize_t planes = am.shape[0], n = am.shape[1] * am.shape[2]
    cdef cnp.ndarray aa = _vector(alpha, "alpha", planes, typenum, False, "one per plane")
    cdef void* mp = cnp.PyArray_DATA(am)
    cdef void* ep = cnp.PyArray_DATA(ae)
    cdef void* ap = cnp.PyArray_DATA(aa)
    cdef void* op = cnp.PyArray_DATA(ao)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _blend(<const float*>mp, <const float*>ep, <const float*>ap, <float*>op, planes, n,
                   n_threads)
        else:
            _blend(<const double*>mp, <const double*>ep, <const double*>ap, <double*>op,
                   planes, n, n_threads)


cdef void _split(const floating* grad, const floating* alpha, const floating* mx,
                 const floating* mean, floating* to_max, floating* to_mean, double* alpha_grad,
                 Py_ssize_t planes, Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t p, o
    cdef floating a, b
    cdef double total
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        a = alpha[p]
        b = 1 - a
        total = 0
        for o in range(p * n, p * n + n):
            to_max[o] = grad[o] * a
            to_mean[o] = grad[o] * b
            total = total + <double>grad[o] * (<double>mx[o] - <double>mean[o])
        alpha_grad[p] = total


def mixed_split(grad_out, alpha, mx, mean, to_max, to_mean, alpha_grad, int n_threads):
    """The shares of the max and the mean of ``grad_out``, and the blend's gradient.

    ``to_max = grad_out * a`` and ``to_mean = grad_out * (1 - a)`` per plane
    (``alpha`` (P,)), in the arrays' dtype; ``alpha_grad`` (P,) float64 gets
    each plane's ``sum(grad_out * (mx - mean))``, summed in order in
    float64.  ``grad_out``, ``mx``, ``mean``, ``to_max``, ``to_mean`` are
    (P, OH, OW).
    """
    cdef int typenum = float_type(grad_out, "grad_out")
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 3, typenum, False)
    cdef cnp.ndarray am = checked(mx, "mx", 3, typenum, False)
    cdef cnp.ndarray ae = checked(mean, "mean", 3, typenum, False)
    cdef cnp.ndarray tm = checked(to_max, "to_max", 3, typenum, True)
    cdef cnp.ndarray te = checked(to_mean, "to_mean", 3, typenum, True)
    for arr, name in ((am, "mx"), (ae, "mean"), (tm, "to_max"), (te, "to_mean")):
        _same(ag, arr, "grad_out", name)
    cdef Py_ssize_t planes = ag.shape[0], n = ag.shape[1] * ag.shape[2]
    cdef cnp.ndarray aa = _vector(alpha, "alpha", planes, typenum, False, "one per plane")
    cdef cnp.ndarray ar = _vector(alpha_grad, "alpha_grad", planes, cnp.NPY_FLOAT64, True,
                                  "one per plane")
    cdef void* gp = cnp.PyArray_DATA(ag)
    cdef void* ap = cnp.PyArray_DATA(aa)
    cdef void* mp = cnp.PyArray_DATA(am)
    cdef void* ep = cnp.PyArray_DATA(ae)
    cdef void* tmp = cnp.PyArray_DATA(tm)
    cdef void* tep = cnp.PyArray_DATA(te)
    cdef double* rp = <double*>cnp.PyArray_DATA(ar)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _split(<const float*>gp, <const float*>ap, <const float*>mp, <const float*>ep,
                   <float*>tmp, <float*>tep, rp, planes, n, n_threads)
        else:
            _split(<const double*>gp, <const double*>ap, <const double*>mp, <const double*>ep,
                   <double*>tmp, <double*>tep, rp, planes, n, n_threads)


# --------------------------------------------------------------------- gated

# exp without a branch or a libm call, so that the gate's loop vectorises
# (libm's exp is a scalar call, most of the gated forward on 2x2 windows):
# exp(x) = 2**k * exp(r), k = round(x / ln 2), r = x - k ln 2 with ln 2 split
# in two (Cody and Waite), |r| <= ln(2) / 2, and exp(r) by its Taylor
# polynomial of degree 13 (truncation below 2e-17 relative), scaled by 2**k
# in two normal factors: within a few ulps of libm's (checked over the whole
# range by tests/test_mixed.py).  Overflow gives inf, underflow 0, NaN stays
# NaN.
cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    static inline double cnnpool_exp(double x)
    {
        const double shift = 0x1.8p52;  /* adding it rounds to an integer */
        double xc = x > 709.79 ? 709.79 : x;
        xc = xc < -745.2 ? -745.2 : xc;
        double kd = xc * 0x1.71547652b82fep0 + shift;
        uint64_t kbits;
        memcpy(&kbits, &kd, 8);
        kd = kd - shift;
        double r = xc - kd * 0x1.62e42fee00000p-1;
        r = r - kd * 0x1.a39ef35793c76p-33;
        double p = 1.0 / 6227020800.0;
        p = p * r + 1.0 / 479001600.0;
        p = p * r + 1.0 / 39916800.0;
        p = p * r + 1.0 / 3628800.0;
        p = p * r + 1.0 / 362880.0;
        p = p * r + 1.0 / 40320.0;
        p = p * r + 1.0 / 5040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        /* 2**k as two normal factors: k runs from -1075 to 1024 here. */
        int64_t k = (int32_t)kbits, k1 = k / 2, k2 = k - k / 2;
        uint64_t b1 = (uint64_t)(k1 + 1023) << 52, b2 = (uint64_t)(k2 + 1023) << 52;
        double s1, s2;
        memcpy(&s1, &b1, 8);
        memcpy(&s2, &b2, 8);
        double e = (p * s1) * s2;
        e = x > 709.78 ? __builtin_inf() : e;
        e = x < -745.2 ? 0.0 : e;
        return x != x ? x : e;
    }
    """
    double cnnpool_exp(double x) noexcept nogil


cdef inline double _sigmoid(double z) noexcept nogil:
    """``1 / (1 + exp(-z))``: 0 for very negative z (exp overflows to inf), NaN for NaN."""
    return 1 / (1 + cnnpool_exp(-z))


cdef void _gate_row(const floating* x, const floating* w, const WindowPlan* g, Py_ssize_t oh,
                    double* z) noexcept nogil:
    """``z = w . window`` for the windows of row ``oh``, tap by tap, in float64.

    Padded taps hold 0 and are skipped: ``w_t * 0`` adds nothing (for a
    finite weight).
    """
    cdef Py_ssize_t ow, i, j, lo, hi, sw = g.sw
    cdef const floating* xr
    cdef double wt
    for ow in range(g.out_w):
        z[ow] = 0
    for i in range(g.row_lo[oh], g.row_hi[oh]):
        for j in range(g.kw):
            xr = x + (g.row_start[oh] + i * g.dh) * g.width + g.col0 + j * g.dw
            wt = w[i * g.kw + j]
            lo, hi = g.ow_lo[j], g.ow_hi[j]
            for ow in range(lo, hi):
                z[ow] = z[ow] + wt * <double>xr[ow * sw]


cdef void _gate_row_2x2(const floating* x, const floating* w, const WindowPlan* g,
                        Py_ssize_t oh, double* z) noexcept nogil:
    """``_gate_row`` for 2x2 stride 2 windows inside the input, unrolled (the
    same sum, tap by tap from 0)."""
    cdef const floating* r0 = x + 2 * oh * g.width
    cdef const floating* r1 = r0 + g.width
    cdef double w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], s
    cdef Py_ssize_t ow
    for ow in range(g.out_w):
        s = w0 * <double>r0[2 * ow]
        s = s + w1 * <double>r0[2 * ow + 1]
        s = s + w2 * <double>r1[2 * ow]
        z[ow] = s + w3 * <double>r1[2 * ow + 1]


cdef void _gated_plane(const floating* x, const floating* w, const floating* mx,
                       const floating* mean, floating* out, double* gate,
                       const WindowPlan* plan, double* z) noexcept nogil:
    """One plane: every window's gate into ``z`` (scratch of OH * OW), then the
    sigmoid and the blend in one pass over the plane (a loop that vectorises)."""
    cdef WindowPlan local = plan[0]
    cdef const WindowPlan* g = &local
    cdef Py_ssize_t oh, o
    cdef double a
    for oh in range(g.out_h):
        if g.direct2x2:
            _gate_row_2x2(x, w, g, oh, z + oh * g.out_w)
        else:
            _gate_row(x, w, g, oh, z + oh * g.out_w)
    for o in range(g.out_h * g.out_w):
        a = _sigmoid(z[o])
        out[o] = <floating>(a * <double>mx[o] + (1 - a) * <double>mean[o])
        gate[o] = a


cdef void _gated_forward(const floating* x, const floating* w, const floating* mx,
                         const floating* mean, floating* out, double* gate,
                         const WindowPlan* g, Py_ssize_t planes, double* work,
                         int n_threads) noexcept nogil:
    cdef Py_ssize_t p, plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        _gated_plane(x + p * plane_in, w, mx + p * plane_out, mean + p * plane_out,
                     out + p * plane_out, gate + p * plane_out, g,
                     work + threadid() * plane_out)


def gated_forward(x, weight, mx, mean, out, gate, windows, Py_ssize_t dil_h, Py_ssize_t dil_w,
                  Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                  Py_ssize_t stride_w, int n_threads):
    """Gated forward: ``out = a * mx + (1 - a) * mean``, ``a = sigmoid(weight . window)``.

    ``x`` (P, H, W); ``weight`` (K,) one per tap in row-major window order;
    ``mx`` and ``mean`` (P, OH, OW) each window's max and mean; outputs
    ``out`` (P, OH, OW), all in ``x``'s dtype, and ``gate`` (P, OH, OW)
    float64, the ``a`` of each window; ``windows, dil_h, ..., stride_w``
    are ``PoolGeometry.kernel_args``.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef cnp.ndarray am = checked(mx, "mx", 3, typenum, False)
    cdef cnp.ndarray ae = checked(mean, "mean", 3, typenum, False)
    cdef cnp.ndarray ao = checked(out, "out", 3, typenum, True)
    cdef cnp.ndarray aa = checked(gate, "gate", 3, cnp.NPY_FLOAT64, True)
    for arr, name in ((ae, "mean"), (ao, "out"), (aa, "gate")):
        _same(am, arr, "mx", name)
    cdef Py_ssize_t planes = ax.shape[0], oh = am.shape[1], ow = am.shape[2]
    if am.shape[0] != planes:
        raise ValueError(f"x and mx must have the same number of planes (first axis), got "
                         f"shapes {dims(ax)} and {dims(am)}")
    cdef cnp.ndarray aw = _vector(weight, "weight", kernel_h * kernel_w, typenum, False,
                                  "one per window tap")
    if planes == 0 or oh * ow == 0:
        return
    cdef WindowPlan g
    _tables = plan_windows(&g, windows, ax.shape[1], ax.shape[2], oh, ow, dil_h, dil_w,
                           kernel_h, kernel_w, stride_h, stride_w)
    cdef cnp.ndarray scratch = _scratch(oh * ow, n_threads)
    cdef double* work = <double*>cnp.PyArray_DATA(scratch)
    cdef void* xp = cnp.PyArray_DATA(ax)
    cdef void* wp = cnp.PyArray_DATA(aw)
    cdef void* mp = cnp.PyArray_DATA(am)
    cdef void* ep = cnp.PyArray_DATA(ae)
    cdef void* op = cnp.PyArray_DATA(ao)
    cdef double* gp = <double*>cnp.PyArray_DATA(aa)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _gated_forward(<const float*>xp, <const float*>wp, <const float*>mp,
                           <const float*>ep, <float*>op, gp, &g, planes, work, n_threads)
        else:
            _gated_forward(<const double*>xp, <const double*>wp, <const double*>mp,
                           <const double*>ep, <double*>op, gp, &g, planes, work, n_threads)


cdef void _gated_back_row_2x2(const floating* x, const floating* w, const WindowPlan* g,
                              Py_ssize_t oh, const double* c_mean, const double* c_slope,
                              floating* gin, double* acc) noexcept nogil:
    """The tap loops of ``_gated_back_plane`` for 2x2 stride 2 windows inside the
    input, unrolled: each input element is a tap of one window."""
    cdef Py_ssize_t n = g.out_w, ow, k0, k1
    cdef const floating* r0 = x + 2 * oh * g.width
    cdef const floating* r1 = r0 + g.width
    cdef floating* o0 = gin + 2 * oh * g.width
    cdef floating* o1 = o0 + g.width
    cdef double w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], cm, cs
    for ow in range(n):
        k0 = 2 * ow
        k1 = k0 + 1
        cm = c_mean[ow]
        cs = c_slope[ow]
        o0[k0] = <floating>(cm + cs * w0)
        o0[k1] = <floating>(cm + cs * w1)
        o1[k0] = <floating>(cm + cs * w2)
        o1[k1] = <floating>(cm + cs * w3)
        acc[ow] += cs * <double>r0[k0]
        acc[n + ow] += cs * <double>r0[k1]
        acc[2 * n + ow] += cs * <double>r1[k0]
        acc[3 * n + ow] += cs * <double>r1[k1]


cdef void _gated_back_plane(const floating* x, const floating* grad, const floating* w,
                            const double* gate, const floating* mx, const floating* mean,
                            floating* to_max, floating* gin, double* weight_grad,
                            const double* div, const WindowPlan* plan,
                            double* work) noexcept nogil:
    """One plane: the max's share, every other route onto ``gin`` (zeroed here)
    and the plane's weight gradient (K,).

    ``work`` holds 2 * OW + K * OW doubles: the row's two coefficients
    and, per tap, per window column, the running weight gradient (summed
    over the row index in the vector loops, over columns at the end).
    """
    cdef WindowPlan local = plan[0]
    cdef const WindowPlan* g = &local
    cdef Py_ssize_t n = g.out_w, oh, ow, i, j, t, lo, hi, sw = g.sw, o
    cdef double* c_mean = work
    cdef double* c_slope = work + n
    cdef double* acc = work + 2 * n
    cdef const floating* xr
    cdef floating* gr
    cdef double a, gv, share, wt, total
    memset(gin, 0, g.height * g.width * sizeof(floating))
    memset(acc, 0, g.k * n * sizeof(double))
    for oh in range(g.out_h):
        for ow in range(n):
            o = oh * n + ow
            a = gate[o]
            gv = grad[o]
            # The divisor's reciprocal rounded to the input's type, as the
            # NumPy tier's route.
            share = <floating>(1.0 / div[o])
            to_max[o] = <floating>(a * gv)
            c_mean[ow] = (1 - a) * share * gv
            c_slope[ow] = (<double>mx[o] - <double>mean[o]) * a * (1 - a) * gv
        if g.direct2x2:
            _gated_back_row_2x2(x, w, g, oh, c_mean, c_slope, gin, acc)
            continue
        for i in range(g.row_lo[oh], g.row_hi[oh]):
            for j in range(g.kw):
                t = i * g.kw + j
                xr = x + (g.row_start[oh] + i * g.dh) * g.width + g.col0 + j * g.dw
                gr = gin + (xr - x)
                wt = w[t]
                lo, hi = g.ow_lo[j], g.ow_hi[j]
                for ow in range(lo, hi):
                    gr[ow * sw] += <floating>(c_mean[ow] + c_slope[ow] * wt)
                    acc[t * n + ow] += c_slope[ow] * <double>xr[ow * sw]
    for t in range(g.k):
        total = 0
        for ow in range(n):
            total = total + acc[t * n + ow]
        weight_grad[t] = total


cdef void _gated_backward(const floating* x, const floating* grad, const floating* w,
                          const double* gate, const floating* mx, const floating* mean,
                          floating* to_max, floating* gin, double* weight_grad,
                          const double* div, const WindowPlan* g, Py_ssize_t planes,
                          double* work, int n_threads) noexcept nogil:
    cdef Py_ssize_t p, plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    cdef Py_ssize_t per_thread = (2 + g.k) * g.out_w
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        _gated_back_plane(x + p * plane_in, grad + p * plane_out, w, gate + p * plane_out,
                          mx + p * plane_out, mean + p * plane_out, to_max + p * plane_out,
                          gin + p * plane_in, weight_grad + p * g.k, div, g,
                          work + threadid() * per_thread)


def gated_backward(x, grad_out, weight, gate, mx, mean, to_max, grad_in, weight_grad, divisor,
                   windows, Py_ssize_t dil_h, Py_ssize_t dil_w, Py_ssize_t kernel_h,
                   Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                   int n_threads):
    """Gated backward, all but the max's part of the input gradient.

    From the forward's input ``x`` (P, H, W), ``weight``, ``gate``, ``mx``
    and ``mean`` and the output gradient ``grad_out`` (P, OH, OW): writes
    ``to_max = a * grad_out`` (P, OH, OW), for the max's backward kernel;
    ``grad_in`` (P, H, W), every other route times ``grad_out`` summed onto
    the input; ``weight_grad`` (P, K) float64, each plane's weight
    gradient.  ``divisor`` (OH, OW) float64 is the mean's.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 3, typenum, False)
    cdef cnp.ndarray aa = checked(gate, "gate", 3, cnp.NPY_FLOAT64, False)
    cdef cnp.ndarray am = checked(mx, "mx", 3, typenum, False)
    cdef cnp.ndarray ae = checked(mean, "mean", 3, typenum, False)
    cdef cnp.ndarray tm = checked(to_max, "to_max", 3, typenum, True)
    cdef cnp.ndarray ai = checked(grad_in, "grad_in", 3, typenum, True)
    cdef cnp.ndarray awg = checked(weight_grad, "weight_grad", 2, cnp.NPY_FLOAT64, True)
    for arr, name in ((aa, "gate"), (am, "mx"), (ae, "mean"), (tm, "to_max")):
        _same(ag, arr, "grad_out", name)
    _same(ax, ai, "x", "grad_in")
    cdef Py_ssize_t planes = ax.shape[0], oh = ag.shape[1], ow = ag.shape[2]
    cdef Py_ssize_t k = kernel_h * kernel_w
    if ag.shape[0] != planes:
        raise ValueError(f"x and grad_out must have the same number of planes (first axis), "
                         f"got shapes {dims(ax)} and {dims(ag)}")
    if awg.shape[0] != planes or awg.shape[1] != k:
        raise ValueError(f"weight_grad must have shape (P, K) = ({planes}, {k}), "
                         f"got {dims(awg)}")
    cdef cnp.ndarray aw = _vector(weight, "weight", k, typenum, False, "one per window tap")
    check_divisor(divisor, oh, ow)
    if planes == 0 or oh * ow == 0:
        return
    cdef WindowPlan g
    _tables = plan_windows(&g, windows, ax.shape[1], ax.shape[2], oh, ow, dil_h, dil_w,
                           kernel_h, kernel_w, stride_h, stride_w)
    cdef cnp.ndarray scratch = _scratch((2 + k) * ow, n_threads)
    cdef double* work = <double*>cnp.PyArray_DATA(scratch)
    cdef void* xp = cnp.PyArray_DATA(ax)
    cdef void* gp = cnp.PyArray_DATA(ag)
    cdef void* wp = cnp.PyArray_DATA(aw)
    cdef const double* ap = <const double*>cnp.PyArray_DATA(aa)
    cdef void* mp = cnp.PyArray_DATA(am)
    cdef void* ep = cnp.PyArray_DATA(ae)
    cdef void* tp = cnp.PyArray_DATA(tm)
    cdef void* ip = cnp.PyArray_DATA(ai)
    cdef double* wgp = <double*>cnp.PyArray_DATA(awg)
    cdef const double* div = <const double*>cnp.PyArray_DATA(<cnp.ndarray>divisor)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _gated_backward(<const float*>xp, <const float*>gp, <const float*>wp, ap,
                            <const float*>mp, <const float*>ep, <float*>tp, <float*>ip, wgp,
                            div, &g, planes, work, n_threads)
        else:
            _gated_backward(<const double*>xp, <const double*>gp, <const double*>wp, ap,
                            <const double*>mp, <const double*>ep, <double*>tp, <double*>ip,
                            wgp, div, &g, planes, work, n_threads)
