"""Compiled kernels of :class:`~cnnpool.pooling.StochasticPool2d` (its kernel tier).

The arithmetic of ``stochastic.py``'s NumPy reference, window by window,
with ``r = max(x, 0)`` over a window's input taps (NaN kept, -0.0 kept):

* **Training** draws tap ``s``, the first whose running float64 sum of
  ``r`` exceeds ``u * S`` (``S`` the window's sum, ``u`` the window's
  uniform draw, passed in: the caller draws them from the layer's
  generator, so the stream is the NumPy tier's); the last positive tap if
  ``u * S`` rounded up to ``S``; the first input tap if no element is
  positive; the first NaN if there is one.  The output is ``r_s`` and the
  gradient goes to ``s`` alone, where ``r_s > 0`` (``live``).
* **Evaluation** outputs ``sum(r**2) / S`` (0 when ``S == 0``, NaN with a
  NaN) with gradient ``(2 r_i S - sum(r**2)) / S**2`` at positive taps.

The running sums are the reference's bit for bit (sequential, in tap
order; padded taps add +0.0, which changes no sum that can win a draw),
so the drawn taps, the training output and its gradient are exactly the
NumPy tier's.  Evaluation sums in the same order, where NumPy's
``sum`` may pair its terms differently: equal to rounding.

The Python layer (``stochastic.py``) builds the arrays; the entry points
here check them (type, dtype, rank, layout, shapes, and the window table
against the plane sizes) before the loops run with bounds checks off, in
parallel over the N*C planes (each plane whole on one thread: the result
never depends on the thread count).
"""

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memset

cimport numpy as cnp

from cnnpool._arrays cimport checked, float_type
from cnnpool.pooling.strategies._window_plan cimport (
    WindowPlan,
    check_planes,
    cnnpool_pick_d,
    cnnpool_keep_v,
    first_inside,
    pick,
    plan_windows,
    relu,
    tap_position,
    tap_t,
    tap_type,
)

cnp.import_array()


cdef Py_ssize_t _bad_taps(Py_ssize_t bad) except -1:
    if bad:
        raise ValueError(
            f"taps holds {bad} tap numbers that are not input taps of their windows "
            f"(the taps of another call or geometry?)")
    return 0


# ------------------------------------------------------------------ training

# The forward loops run a row of windows at a time, tap by tap: for each
# tap, one pass over the row's windows that have it inside the input (a
# strided read of one input row) updates per-window running values kept in
# scratch arrays.  Those passes vectorise; every window still sees its taps
# in row-major order, so its sums are the per-window loop's bit for bit.
# Tap numbers ride in doubles there (exact), beside the float64 sums: gcc
# vectorises selects between operands of one width only.

cdef enum:
    TRAIN_ROWS = 6  # scratch rows of out_w doubles the training forward uses
    EVAL_ROWS = 2


cdef void _train_row_2x2(const floating* x, const double* u, floating* out, tap_t* taps,
                         uint8_t* live, const WindowPlan* g, Py_ssize_t oh,
                         double* work) noexcept nogil:
    """Row ``oh`` of 2x2 stride-2 windows inside the input: the same rule and
    sums as the general loops, unrolled, every choice a select; results go
    through doubles in ``work`` (2 * OW) so that the loop vectorises."""
    cdef double* drawn = work
    cdef double* value = work + g.out_w
    cdef const floating* r0 = x + 2 * oh * g.width
    cdef const floating* r1 = r0 + g.width
    cdef Py_ssize_t ow
    cdef double v0, v1, v2, v3, k0, k1, k2, k3, s1, s2, s3, s4, threshold, t, last, nan
    for ow in range(g.out_w):
        v0 = r0[2 * ow]
        v1 = r0[2 * ow + 1]
        v2 = r1[2 * ow]
        v3 = r1[2 * ow + 1]
        k0 = cnnpool_keep_v(v0)
        k1 = cnnpool_keep_v(v1)
        k2 = cnnpool_keep_v(v2)
        k3 = cnnpool_keep_v(v3)
        s1 = 0 + k0
        s2 = s1 + k1
        s3 = s2 + k2
        s4 = s3 + k3
        threshold = u[ow] * s4
        # The first running sum above u * S (they never decrease), else the
        # last positive tap; the first tap without a positive element; the
        # first NaN before all.
        t = cnnpool_pick_d(s4 > threshold, 3, -1)
        t = cnnpool_pick_d(s3 > threshold, 2, t)
        t = cnnpool_pick_d(s2 > threshold, 1, t)
        t = cnnpool_pick_d(s1 > threshold, 0, t)
        last = cnnpool_pick_d(v3 > 0, 3, cnnpool_pick_d(v2 > 0, 2, cnnpool_pick_d(v1 > 0, 1, 0)))
        t = cnnpool_pick_d(t < 0, last, t)
        t = cnnpool_pick_d(s4 > 0, t, 0)
        nan = cnnpool_pick_d(v2 != v2, 2, 3)
        nan = cnnpool_pick_d(v1 != v1, 1, nan)
        nan = cnnpool_pick_d(v0 != v0, 0, nan)
        t = cnnpool_pick_d((v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3), nan, t)
        drawn[ow] = t
        value[ow] = cnnpool_pick_d(t == 0, k0,
                                   cnnpool_pick_d(t == 1, k1, cnnpool_pick_d(t == 2, k2, k3)))
    for ow in range(g.out_w):
        out[ow] = <floating>value[ow]
        taps[ow] = <tap_t>drawn[ow]
        live[ow] = value[ow] > 0


cdef void _train_plane(const floating* x, const double* u, floating* out, tap_t* taps,
                       uint8_t* live, const WindowPlan* plan, double* work) noexcept nogil:
    # A local copy: the byte stores to ``taps``/``live`` may alias anything,
    # and would make gcc reload every field of ``plan`` after each of them.
    cdef WindowPlan local = plan[0]
    cdef const WindowPlan* g = &local
    cdef Py_ssize_t n = g.out_w, sw = g.sw
    cdef double* total = work
    cdef double* last_positive = work + n
    cdef double* first_nan = work + 2 * n
    cdef double* threshold = work + 3 * n
    cdef double* running = work + 4 * n
    cdef double* drawn = work + 5 * n
    cdef Py_ssize_t oh, ow, i, j, lo, hi, t, pos
    cdef double v, tap
    cdef const floating* xr
    cdef floating r
    if g.direct2x2:
        for oh in range(g.out_h):
            _train_row_2x2(x, u + oh * n, out + oh * n, taps + oh * n, live + oh * n, g, oh,
                           work)
        return
    for oh in range(g.out_h):
        for ow in range(n):
            total[ow] = 0
            last_positive[ow] = -1
            first_nan[ow] = -1
        for i in range(g.row_lo[oh], g.row_hi[oh]):
            for j in range(g.kw):
                xr = x + (g.row_start[oh] + i * g.dh) * g.width + g.col0 + j * g.dw
                tap = i * g.kw + j
                lo, hi = g.ow_lo[j], g.ow_hi[j]
                for ow in range(lo, hi):
                    v = xr[ow * sw]
                    total[ow] = total[ow] + cnnpool_keep_v(v)
                    last_positive[ow] = cnnpool_pick_d(v > 0, tap, last_positive[ow])
                    first_nan[ow] = cnnpool_pick_d((v != v) & (first_nan[ow] < 0), tap,
                                                   first_nan[ow])
        # The first tap whose running sum exceeds u * S.
        for ow in range(n):
            threshold[ow] = u[ow] * total[ow]
            running[ow] = 0
            drawn[ow] = -1
        for i in range(g.row_lo[oh], g.row_hi[oh]):
            for j in range(g.kw):
                xr = x + (g.row_start[oh] + i * g.dh) * g.width + g.col0 + j * g.dw
                tap = i * g.kw + j
                lo, hi = g.ow_lo[j], g.ow_hi[j]
                for ow in range(lo, hi):
                    running[ow] = running[ow] + cnnpool_keep_v(<double>xr[ow * sw])
                    drawn[ow] = cnnpool_pick_d((drawn[ow] < 0) & (running[ow] > threshold[ow]),
                                               tap, drawn[ow])
        for ow in range(n):
            if first_nan[ow] >= 0:  # the first NaN
                t = <Py_ssize_t>first_nan[ow]
            elif not total[ow] > 0:  # no positive element: the first input tap
                t = first_inside(g, oh, ow)
            elif drawn[ow] < 0:  # u * S rounded up to S: the last positive tap
                t = <Py_ssize_t>last_positive[ow]
            else:
                t = <Py_ssize_t>drawn[ow]
            pos = g.row_start[oh] * g.width + g.col_start[ow] + g.tap_offset[t]
            r = relu(x[pos])
            out[ow] = r
            taps[ow] = <tap_t>t
            live[ow] = r > 0
        u += n
        out += n
        taps += n
        live += n


cdef void _train_forward(const floating* x, const double* u, floating* out, tap_t* taps,
                         uint8_t* live, const WindowPlan* g, Py_ssize_t planes,
                         double* work, int n_threads) noexcept nogil:
    cdef Py_ssize_t p, plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        _train_plane(x + p * plane_in, u + p * plane_out, out + p * plane_out,
                     taps + p * plane_out, live + p * plane_out, g,
                     work + threadid() * TRAIN_ROWS * g.out_w)


cdef cnp.ndarray _scratch(Py_ssize_t rows, int n_threads):
    """Per-thread scratch of ``rows`` float64 values, one block per thread."""
    return cnp.PyArray_EMPTY(1, [max(n_threads, 1) * rows], cnp.NPY_FLOAT64, 0)


def train_forward(x, u, out, taps, live, windows, Py_ssize_t dil_h, Py_ssize_t dil_w,
                  Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                  Py_ssize_t stride_w, int n_threads):
    """Draw one element per window: training forward.

    ``x`` is (P, H, W); ``u`` (P, OH, OW) float64 uniforms in [0, 1), one
    per window; outputs ``out`` (P, OH, OW) of ``x``'s dtype (the drawn
    element's activation), ``taps`` (P, OH, OW) uint8 (windows of <= 255
    taps) or int64 (the drawn tap numbers ``i * kernel_w + j``) and
    ``live`` (P, OH, OW) uint8, 1 where the drawn element is positive (it
    takes the window's gradient).  ``windows, dil_h, ..., stride_w`` are
    ``PoolGeometry.kernel_args``.  All C-contiguous.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef int tap_typenum = tap_type(taps, kernel_h * kernel_w)
    cdef cnp.ndarray au = checked(u, "u", 3, cnp.NPY_FLOAT64, False)
    cdef cnp.ndarray ao = checked(out, "out", 3, typenum, True)
    cdef cnp.ndarray at = checked(taps, "taps", 3, tap_typenum, True)
    cdef cnp.ndarray al = checked(live, "live", 3, cnp.NPY_UINT8, True)
    cdef Py_ssize_t planes = ax.shape[0], oh = ao.shape[1], ow = ao.shape[2]
    check_planes(ao, planes, oh, ow, "out", "(P, OH, OW) with P from x")
    for arr, name in ((au, "u"), (at, "taps"), (al, "live")):
        check_planes(arr, planes, oh, ow, name, "(P, OH, OW) of out")
    if planes == 0 or oh * ow == 0:
        return
    cdef WindowPlan g
    _tables = plan_windows(&g, windows, ax.shape[1], ax.shape[2], oh, ow, dil_h, dil_w,
                           kernel_h, kernel_w, stride_h, stride_w)
    cdef cnp.ndarray scratch = _scratch(TRAIN_ROWS * ow, n_threads)
    cdef double* work = <double*>cnp.PyArray_DATA(scratch)
    cdef void* xp = cnp.PyArray_DATA(ax)
    cdef const double* up = <const double*>cnp.PyArray_DATA(au)
    cdef void* op = cnp.PyArray_DATA(ao)
    cdef void* tp = cnp.PyArray_DATA(at)
    cdef uint8_t* lp = <uint8_t*>cnp.PyArray_DATA(al)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            if tap_typenum == cnp.NPY_UINT8:
                _train_forward(<const float*>xp, up, <float*>op, <uint8_t*>tp, lp, &g,
                               planes, work, n_threads)
            else:
                _train_forward(<const float*>xp, up, <float*>op, <int64_t*>tp, lp, &g,
                               planes, work, n_threads)
        elif tap_typenum == cnp.NPY_UINT8:
            _train_forward(<const double*>xp, up, <double*>op, <uint8_t*>tp, lp, &g,
                           planes, work, n_threads)
        else:
            _train_forward(<const double*>xp, up, <double*>op, <int64_t*>tp, lp, &g,
                           planes, work, n_threads)


cdef Py_ssize_t _train_back_plane(const floating* grad, const tap_t* taps,
                                  const uint8_t* live, floating* gin,
                                  const WindowPlan* g) noexcept nogil:
    """Each live window's gradient onto its drawn element, in window order; the
    number of tap numbers that were not input taps (skipped)."""
    cdef Py_ssize_t oh, ow, pos, o = 0, bad = 0
    memset(gin, 0, g.height * g.width * sizeof(floating))
    for oh in range(g.out_h):
        for ow in range(g.out_w):
            pos = tap_position(g, oh, ow, <Py_ssize_t>taps[o])
            if pos < 0:
                bad += 1
            else:
                # +0.0 for a window that routes nothing changes no sum.
                gin[pos] += pick(live[o] != 0, grad[o], <floating>0)
            o += 1
    return bad


cdef Py_ssize_t _train_backward(const floating* grad, const tap_t* taps, const uint8_t* live,
                                floating* gin, const WindowPlan* g, Py_ssize_t planes,
                                int n_threads) noexcept nogil:
    cdef Py_ssize_t p, bad = 0, plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        bad += _train_back_plane(grad + p * plane_out, taps + p * plane_out,
                                 live + p * plane_out, gin + p * plane_in, g)
    return bad


def train_backward(grad_out, taps, live, grad_in, windows, Py_ssize_t dil_h, Py_ssize_t dil_w,
                   Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                   Py_ssize_t stride_w, int n_threads):
    """Training backward: ``grad_in`` (P, H, W) gets each window's ``grad_out``
    (P, OH, OW) at its drawn tap where ``live``, summed over windows, zero
    elsewhere.  ``taps`` and ``live`` are those :func:`train_forward` wrote."""
    cdef int typenum = float_type(grad_out, "grad_out")
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 3, typenum, False)
    cdef int tap_typenum = tap_type(taps, kernel_h * kernel_w)
    cdef cnp.ndarray at = checked(taps, "taps", 3, tap_typenum, False)
    cdef cnp.ndarray al = checked(live, "live", 3, cnp.NPY_UINT8, False)
    cdef cnp.ndarray ai = checked(grad_in, "grad_in", 3, typenum, True)
    cdef Py_ssize_t planes = ai.shape[0], oh = ag.shape[1], ow = ag.shape[2]
    check_planes(ag, planes, oh, ow, "grad_out", "(P, OH, OW) with P from grad_in")
    check_planes(at, planes, oh, ow, "taps", "(P, OH, OW) of grad_out")
    check_planes(al, planes, oh, ow, "live", "(P, OH, OW) of grad_out")
    if planes == 0 or ai.shape[1] * ai.shape[2] == 0:
        return
    cdef WindowPlan g
    _tables = plan_windows(&g, windows, ai.shape[1], ai.shape[2], oh, ow, dil_h, dil_w,
                           kernel_h, kernel_w, stride_h, stride_w)
    cdef const void* gp = cnp.PyArray_DATA(ag)
    cdef const void* tp = cnp.PyArray_DATA(at)
    cdef const uint8_t* lp = <const uint8_t*>cnp.PyArray_DATA(al)
    cdef void* ip = cnp.PyArray_DATA(ai)
    cdef Py_ssize_t bad
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            if tap_typenum == cnp.NPY_UINT8:
                bad = _train_backward(<const float*>gp, <const uint8_t*>tp, lp, <float*>ip, &g,
                                      planes, n_threads)
            else:
                bad = _train_backward(<const float*>gp, <const int64_t*>tp, lp, <float*>ip, &g,
                                      planes, n_threads)
        elif tap_typenum == cnp.NPY_UINT8:
            bad = _train_backward(<const double*>gp, <const uint8_t*>tp, lp, <double*>ip, &g,
                                  planes, n_threads)
        else:
            bad = _train_backward(<const double*>gp, <const int64_t*>tp, lp, <double*>ip, &g,
                                  planes, n_threads)
    _bad_taps(bad)


# ---------------------------------------------------------------- evaluation

cdef void _eval_row(const floating* x, const WindowPlan* g, Py_ssize_t oh, double* total,
                    double* squares) noexcept nogil:
    """``S = sum(r)`` and ``sum(r**2)`` of each window of row ``oh``, float64, tap order."""
    cdef Py_ssize_t ow, i, j, lo, hi, sw = g.sw
    cdef const floating* xr
    cdef double r
    for ow in range(g.out_w):
        total[ow] = 0
        squares[ow] = 0
    for i in range(g.row_lo[oh], g.row_hi[oh]):
        for j in range(g.kw):
            xr = x + (g.row_start[oh] + i * g.dh) * g.width + g.col0 + j * g.dw
            lo, hi = g.ow_lo[j], g.ow_hi[j]
            for ow in range(lo, hi):
                r = cnnpool_keep_v(<double>xr[ow * sw])
                total[ow] = total[ow] + r
                squares[ow] = squares[ow] + r * r


cdef void _eval_plane(const floating* x, floating* out, const WindowPlan* plan,
                      double* work) noexcept nogil:
    cdef WindowPlan local = plan[0]
    cdef const WindowPlan* g = &local
    cdef Py_ssize_t oh, ow
    cdef double* total = work
    cdef double* squares = work + g.out_w
    for oh in range(g.out_h):
        _eval_row(x, g, oh, total, squares)
        # total > 0: squares / total; NaN: NaN; else 0 (selects: a window
        # without a positive element is common after a ReLU).
        for ow in range(g.out_w):
            out[ow] = <floating>cnnpool_pick_d(
                total[ow] > 0, squares[ow] / total[ow],
                cnnpool_pick_d(total[ow] != total[ow], total[ow], 0))
        out += g.out_w


cdef void _eval_forward(const floating* x, floating* out, const WindowPlan* g,
                        Py_ssize_t planes, double* work, int n_threads) noexcept nogil:
    cdef Py_ssize_t p, plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        _eval_plane(x + p * plane_in, out + p * plane_out, g,
                    work + threadid() * EVAL_ROWS * g.out_w)


def eval_forward(x, out, windows, Py_ssize_t dil_h, Py_ssize_t dil_w, Py_ssize_t kernel_h,
                 Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w, int n_threads):
    """Evaluation forward: ``out`` (P, OH, OW) = ``sum(r**2) / sum(r)`` of each
    window of ``x`` (P, H, W), 0 where no element is positive, NaN with a NaN."""
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef cnp.ndarray ao = checked(out, "out", 3, typenum, True)
    cdef Py_ssize_t planes = ax.shape[0], oh = ao.shape[1], ow = ao.shape[2]
    check_planes(ao, planes, oh, ow, "out", "(P, OH, OW) with P from x")
    if planes == 0 or oh * ow == 0:
        return
    cdef WindowPlan g
    _tables = plan_windows(&g, windows, ax.shape[1], ax.shape[2], oh, ow, dil_h, dil_w,
                           kernel_h, kernel_w, stride_h, stride_w)
    cdef cnp.ndarray scratch = _scratch(EVAL_ROWS * ow, n_threads)
    cdef double* work = <double*>cnp.PyArray_DATA(scratch)
    cdef void* xp = cnp.PyArray_DATA(ax)
    cdef void* op = cnp.PyArray_DATA(ao)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _eval_forward(<const float*>xp, <float*>op, &g, planes, work, n_threads)
        else:
            _eval_forward(<const double*>xp, <double*>op, &g, planes, work, n_threads)


cdef void _eval_back_plane(const floating* x, const floating* grad, floating* gin,
                           const WindowPlan* plan, double* work) noexcept nogil:
    """Every window's share onto its positive taps, a row of windows at a time.

    ``local`` is rounded to the gradient's type before it multiplies, as the
    NumPy tier's route; a tap whose route is 0 receives nothing (not even
    an inf or NaN ``grad``): adding +0.0 instead changes no accumulated
    gradient (it is never -0.0), so the select needs no branch.  Where
    windows overlap, an element's shares add up tap by tap within a row of
    windows, not window by window: equal to rounding.
    """
    cdef WindowPlan local = plan[0]
    cdef const WindowPlan* g = &local
    cdef Py_ssize_t oh, ow, i, j, lo, hi, sw = g.sw
    cdef double* total = work
    cdef double* squares = work + g.out_w
    cdef floating* xr
    cdef floating* gr
    cdef double v, s
    cdef floating share
    memset(gin, 0, g.height * g.width * sizeof(floating))
    for oh in range(g.out_h):
        _eval_row(x, g, oh, total, squares)
        for i in range(g.row_lo[oh], g.row_hi[oh]):
            for j in range(g.kw):
                xr = <floating*>x + (g.row_start[oh] + i * g.dh) * g.width + g.col0 + j * g.dw
                gr = gin + (xr - <floating*>x)
                lo, hi = g.ow_lo[j], g.ow_hi[j]
                for ow in range(lo, hi):
                    v = xr[ow * sw]
                    s = total[ow]
                    share = <floating>((2 * v * s - squares[ow]) / (s * s))
                    gr[ow * sw] += pick((s > 0) & (v > 0) & (share != 0), share * grad[ow],
                                        <floating>0)
        grad += g.out_w


cdef void _eval_backward(const floating* x, const floating* grad, floating* gin,
                         const WindowPlan* g, Py_ssize_t planes, double* work,
                         int n_threads) noexcept nogil:
    cdef Py_ssize_t p, plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        _eval_back_plane(x + p * plane_in, grad + p * plane_out, gin + p * plane_in, g,
                         work + threadid() * EVAL_ROWS * g.out_w)


def eval_backward(x, grad_out, grad_in, windows, Py_ssize_t dil_h, Py_ssize_t dil_w,
                  Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                  Py_ssize_t stride_w, int n_threads):
    """Evaluation backward: ``grad_in`` (P, H, W) from ``grad_out`` (P, OH, OW)
    through the gradient of ``sum(r**2) / sum(r)`` at the input ``x`` (P, H, W)."""
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 3, typenum, False)
    cdef cnp.ndarray ai = checked(grad_in, "grad_in", 3, typenum, True)
    cdef Py_ssize_t planes = ax.shape[0], oh = ag.shape[1], ow = ag.shape[2]
    check_planes(ai, planes, ax.shape[1], ax.shape[2], "grad_in", "(P, H, W) of x")
    check_planes(ag, planes, oh, ow, "grad_out", "(P, OH, OW) with P from x")
    if planes == 0 or ax.shape[1] * ax.shape[2] == 0:
        return
    cdef WindowPlan g
    _tables = plan_windows(&g, windows, ax.shape[1], ax.shape[2], oh, ow, dil_h, dil_w,
                           kernel_h, kernel_w, stride_h, stride_w)
    cdef cnp.ndarray scratch = _scratch(EVAL_ROWS * ow, n_threads)
    cdef double* work = <double*>cnp.PyArray_DATA(scratch)
    cdef void* xp = cnp.PyArray_DATA(ax)
    cdef void* gp = cnp.PyArray_DATA(ag)
    cdef void* ip = cnp.PyArray_DATA(ai)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _eval_backward(<const float*>xp, <const float*>gp, <float*>ip, &g, planes, work,
                           n_threads)
        else:
            _eval_backward(<const double*>xp, <const double*>gp, <double*>ip, &g, planes,
                           work, n_threads)
