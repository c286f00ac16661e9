"""Compiled 3-D (and 1-D) max and mean pooling kernels.

Planes ``x`` are (P, D, H, W), C-contiguous, float32 or float64; each is
pooled whole by one thread (OpenMP over the planes, the library's thread
setting), so the bits never depend on the thread count.  A 1-D signal is
the plane (1, 1, L).

Windows are described per axis by three intp arrays of the output's length,
``(start, lo, hi)``, exactly as :attr:`PoolGeometry.ranges` gives them for
2-D: the input taps of output ``o`` along the axis are
``start[o] + i * dil`` for ``i`` in ``[lo[o], hi[o])``.  Padding, ceil_mode
and asymmetric padding only change these arrays.  The thin Python layer
below checks every array and every range (so that no index can leave the
plane), then trusted nogil loops run.

Max (PyTorch's rule): scanning a window's input taps in (d, h, w) order, a
tap replaces the best so far when it is greater, or when it is NaN; the
best starts at the first input tap.  So the first of equal maxima wins,
the last of several NaNs wins, and a window of -inf's reports its first
input tap.  That fold is associative over contiguous runs of the scan:
reducing each window row (w), then the rows of each slice (h), then the
slices (d), each time with the same rule, picks the same tap.  The kernel
does exactly that, separably: every input row is reduced once per slice
(a row-max over w, unit-stride or stride-2 loads vectorised over the
output columns), each d-slice's (OH, OW) result is kept in a small ring
(shared by the output slices whose windows overlap on it), and output
slice ``od`` folds its window's slices in d order, a whole (OH, OW) slice
per vector loop.  The winner travels as its flat in-plane index
``d*H*W + h*W + w`` stored in the input's own float type (selects of equal
width vectorise; exact below 2**24 elements per float32 plane: larger
float32 planes take a per-window loop with int64 indices).

Mean (PyTorch's arithmetic): each window's sum starts at 0 and adds its
input taps in (d, h, w) order in the input's precision, then is divided by
the caller's ``divisor`` (counts with or without padding, or
``divisor_override``), rounded to the float type as PyTorch does.  Float
addition is not associative, so mean is not separable: the forward adds
tap by tap, vectorised over the output columns.  The backward adds
``grad / divisor`` to every input tap of every window, windows in output
order as PyTorch does (an input element receives its windows' shares in
(od, oh, ow) order: within a window row the taps run from the last to the
first, since a later window reaches an element through an earlier tap).

Max backward adds each output gradient at its flat argmax in output order
into a zeroed plane (PyTorch's scatter-add: overlapping windows
accumulate).  Its argmax is the caller's, so every index is range-checked.
"""

from cython cimport floating
from cython.parallel cimport parallel
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

import numpy as np

cimport numpy as cnp

from cnnpool._arrays cimport checked, dims, float_type
from cnnpool._openmp cimport cnnpool_share

cnp.import_array()


cdef enum:
    BLOCK = 256  # output columns per vector block (stack arrays)


# Planes of more elements than this take max's window-by-window loop
# (float32 flat indices are exact only below 2**24; float64 always are);
# tests lower it to run that loop on small planes.
cdef Py_ssize_t separable_max = (<Py_ssize_t>1) << 24


def set_separable_max(Py_ssize_t elements):
    """Max-pool planes of more than ``elements`` window by window (a test hook).

    By default (2**24) only float32 planes above 2**24 elements, whose flat
    indices float32 cannot hold exactly, take the window loop; below the
    default, float64 planes above the limit take it too.  Returns the
    previous limit; values above 2**24 are taken as 2**24.  Not for
    concurrent use (a process-wide setting).
    """
    global separable_max
    if elements < 0:
        raise ValueError(f"elements must be >= 0, got {elements}")
    previous = separable_max
    separable_max = min(elements, (<Py_ssize_t>1) << 24)
    return previous


# Limits that keep the range checks free of integer overflow.
cdef Py_ssize_t _BIG = (<Py_ssize_t>1) << 31
cdef Py_ssize_t _HUGE = (<Py_ssize_t>1) << 40


ctypedef struct Axis:
    # Input size, output size, dilation, taps of a full window (max hi).
    Py_ssize_t size, out, dil, k
    # Windows [a, b) are full (lo = 0, hi = k) with starts a + step apart
    # (step >= 1): the vectorised run; the rest go window by window.
    Py_ssize_t a, b, step
    const Py_ssize_t* start
    const Py_ssize_t* lo
    const Py_ssize_t* hi


ctypedef struct Geo:
    Axis d, h, w
    Py_ssize_t plane_in, plane_out, slice_out
    # d-slices kept in the max ring: (kd - 1) * dil_d + 1.
    Py_ssize_t slots
    # Flat indices exact in the float type: the separable max.
    bint separable
    # The w run spans whole rows (W = OW * step): one run through all rows.
    bint w_flat


# ------------------------------------------------------------------ checks

# The argument names of each axis's arrays (made once: no f-string per call).
_NAMES = {axis: (f"{axis} start", f"{axis} lo", f"{axis} hi") for axis in "dhw"}


cdef int _axis(Axis* ax, object ranges, str name, Py_ssize_t size,
               Py_ssize_t dil) except -1:
    """Fill ``ax`` from ``ranges = (start, lo, hi)`` after checking every window.

    Every window must hold at least one input tap and all of its taps
    ``start + i*dil``, ``lo <= i < hi``, must lie in ``[0, size)``.
    """
    try:
        start, lo, hi = ranges
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a (start, lo, hi) triple of intp arrays, got "
            f"{type(ranges).__name__}") from None
    cdef tuple names = _NAMES[name]
    cdef cnp.ndarray s = checked(start, names[0], 1, cnp.NPY_INTP, False)
    cdef cnp.ndarray lows = checked(lo, names[1], 1, cnp.NPY_INTP, False)
    cdef cnp.ndarray h = checked(hi, names[2], 1, cnp.NPY_INTP, False)
    if not (s.shape[0] == lows.shape[0] == h.shape[0]):
        raise ValueError(
            f"{name} start, lo and hi must have the same length, got "
            f"{s.shape[0]}, {lows.shape[0]} and {h.shape[0]}")
    if s.shape[0] < 1:
        raise ValueError(f"{name} has no windows (length-0 ranges)")
    if dil < 1 or dil >= _BIG:
        raise ValueError(f"{name} dilation must be >= 1, got {dil}")
    ax.size = size
    ax.out = s.shape[0]
    ax.dil = dil
    ax.start = <const Py_ssize_t*>cnp.PyArray_DATA(s)
    ax.lo = <const Py_ssize_t*>cnp.PyArray_DATA(lows)
    ax.hi = <const Py_ssize_t*>cnp.PyArray_DATA(h)
    cdef Py_ssize_t o, st, a, b, k = 0, bad = -1
    for o in range(ax.out):
        st, a, b = ax.start[o], ax.lo[o], ax.hi[o]
        if (a < 0 or b <= a or b >= _BIG or st <= -_HUGE or st >= _HUGE
                or st + a * dil < 0 or st + (b - 1) * dil >= size):
            bad = o
            break
        k = max(k, b)
    if bad >= 0:
        o = bad
        raise ValueError(
            f"{name} window {o} (start={ax.start[o]}, lo={ax.lo[o]}, hi={ax.hi[o]}, "
            f"dilation={dil}) does not hold only input taps of an axis of size {size}: "
            f"need 0 <= lo < hi and 0 <= start + lo*dilation, "
            f"start + (hi-1)*dilation < {size}")
    ax.k = k
    # The vectorised run: the first full window and the full windows after
    # it whose starts advance by one constant step.
    ax.a = ax.b = 0
    ax.step = 1
    for o in range(ax.out):
        if ax.lo[o] == 0 and ax.hi[o] == k:
            ax.a = o
            ax.b = o + 1
            break
    if ax.b > 0 and ax.b < ax.out and ax.lo[ax.b] == 0 and ax.hi[ax.b] == k:
        ax.step = ax.start[ax.b] - ax.start[ax.a]
        if ax.step >= 1:
            while (ax.b < ax.out and ax.lo[ax.b] == 0 and ax.hi[ax.b] == k
                   and ax.start[ax.b] - ax.start[ax.b - 1] == ax.step):
                ax.b += 1
        else:
            ax.step = 1
    return 0


cdef int _geo(Geo* g, cnp.ndarray planes, object d, object h, object w,
              object dilation) except -1:
    """The geometry of one call on (P, D, H, W) ``planes``."""
    try:
        dd, dh, dw = dilation
    except (TypeError, ValueError):
        raise TypeError(
            f"dilation must be three ints (d, h, w), got {dilation!r}") from None
    _axis(&g.d, d, "d", planes.shape[1], dd)
    _axis(&g.h, h, "h", planes.shape[2], dh)
    _axis(&g.w, w, "w", planes.shape[3], dw)
    g.plane_in = planes.shape[1] * planes.shape[2] * planes.shape[3]
    g.slice_out = g.h.out * g.w.out
    g.plane_out = g.d.out * g.slice_out
    g.slots = (g.d.k - 1) * g.d.dil + 1
    g.w_flat = g.w.b > g.w.a and g.w.size == g.w.out * g.w.step
    return 0


cdef cnp.ndarray _planes(object x, str name, int typenum):
    cdef cnp.ndarray a = checked(x, name, 4, typenum, False)
    if a.shape[1] < 1 or a.shape[2] < 1 or a.shape[3] < 1:
        raise ValueError(f"{name} must have non-empty (D, H, W) planes, got shape {dims(a)}")
    return a


cdef cnp.ndarray _output(object out, str name, tuple shape, int typenum):
    """``out`` checked against ``shape`` and dtype ``typenum``, or a new array when None."""
    if out is None:
        return np.empty(shape, cnp.PyArray_DescrFromType(typenum))
    cdef cnp.ndarray a = checked(out, name, len(shape), typenum, True)
    if dims(a) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {dims(a)}")
    return a


cdef cnp.ndarray _divisor(object divisor, const Geo* g):
    cdef cnp.ndarray a = checked(divisor, "divisor", 3, cnp.NPY_FLOAT64, False)
    cdef tuple want = (g.d.out, g.h.out, g.w.out)
    if dims(a) != want:
        raise ValueError(f"divisor must have shape (OD, OH, OW) = {want}, got {dims(a)}")
    return a


cdef tuple _in_size(object in_size):
    if (type(in_size) is tuple and len(in_size) == 3
            and (type(in_size[0]) is type(in_size[1]) is type(in_size[2]) is int)
            and min(in_size) >= 1):
        return in_size  # the usual call, checked without a generator
    try:
        size = tuple(int(v) for v in in_size)
    except TypeError:
        raise TypeError(f"in_size must be three ints (D, H, W), got {in_size!r}") from None
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"in_size must be three positive ints (D, H, W), got {in_size!r}")
    return size


# ----------------------------------------------------------------- max: rule

cdef inline bint _wins(floating v, floating best) noexcept nogil:
    return (v > best) | (v != v)


# ------------------------------------------------------- max: separable path

cdef inline void _run_max(const floating* p, Py_ssize_t n, Py_ssize_t sw, Py_ssize_t k,
                          Py_ssize_t dw, floating first, const floating* ramp,
                          floating* vo, floating* fo) noexcept nogil:
    """Row-max of ``n`` full windows whose first taps are ``p[t*sw]``.

    Writes each winner's value and flat index: window t's first tap is at
    flat index ``first + t*sw``; ``ramp[t] = t*sw`` (as a float, a table:
    no int-to-float conversion in the loop).  Inlined with a constant
    ``sw`` (1, 2), which the loads then vectorise on.
    """
    cdef floating best[BLOCK]
    cdef floating off[BLOCK]
    cdef Py_ssize_t t0 = 0, m, t, tap
    cdef const floating* q
    cdef floating v, b, o, tf, c
    while t0 < n:
        m = min(n - t0, <Py_ssize_t>BLOCK)
        q = p + t0 * sw
        for t in range(m):
            best[t] = q[t * sw]
            off[t] = 0
        for tap in range(1, k):
            tf = <floating>(tap * dw)
            q = p + t0 * sw + tap * dw
            for t in range(m):
                # Unconditional stores of selects: gcc vectorises those.
                v = q[t * sw]
                b = best[t]
                o = off[t]
                if _wins(v, b):
                    b = v
                    o = tf
                best[t] = b
                off[t] = o
        c = first + <floating>(t0 * sw)
        for t in range(m):
            vo[t0 + t] = best[t]
            fo[t0 + t] = (c + ramp[t]) + off[t]
        t0 += m


cdef inline void _run_max_step(const floating* p, Py_ssize_t n, const Axis* w, floating first,
                               const floating* ramp, floating* vo, floating* fo) noexcept nogil:
    """:func:`_run_max` with the step of ``w``'s run, constant for the usual 1 and 2."""
    if w.step == 1:
        _run_max(p, n, 1, w.k, w.dil, first, ramp, vo, fo)
    elif w.step == 2:
        _run_max(p, n, 2, w.k, w.dil, first, ramp, vo, fo)
    else:
        _run_max(p, n, w.step, w.k, w.dil, first, ramp, vo, fo)


cdef void _window_row_max(const floating* r, const Axis* w, Py_ssize_t ow, floating base,
                          floating* vo, floating* fo) noexcept nogil:
    """Row-max of window ``ow`` (one at a time: the border windows)."""
    cdef Py_ssize_t tap, c = w.start[ow] + w.lo[ow] * w.dil, best_c = c
    cdef floating v, best = r[c]
    for tap in range(w.lo[ow] + 1, w.hi[ow]):
        c = w.start[ow] + tap * w.dil
        v = r[c]
        if _wins(v, best):
            best = v
            best_c = c
    vo[ow] = best
    fo[ow] = base + <floating>best_c


cdef void _rows_max(const floating* s, Py_ssize_t row0, Py_ssize_t rows, const Axis* w,
                    const floating* ramp, bint flat, floating* vo,
                    floating* fo) noexcept nogil:
    """Row-max of every window of ``rows`` consecutive input rows ``s``.

    ``row0`` is the plane row of ``s[0]`` (for the flat indices).  Writes
    (rows, OW) values and flat indices.  With ``flat`` (the run holds
    windows [a, b) and ``W = OW * step``), window ``t`` of row ``r`` is
    window ``r*OW + t`` of one long run through all rows, so one vector
    loop does every row; the border windows it computes wrongly (those
    reach into the neighbouring rows, never outside ``s``) are redone.
    """
    cdef Py_ssize_t r, ow, W = w.size, OW = w.out, a = w.a, b = w.b
    cdef const floating* x
    cdef floating base
    if flat:
        _run_max_step(s + w.start[a], (rows - 1) * OW + b - a, w,
                      <floating>(row0 * W + w.start[a]), ramp, vo + a, fo + a)
    for r in range(rows):
        x = s + r * W
        base = <floating>((row0 + r) * W)
        if not flat and b > a:
            _run_max_step(x + w.start[a], b - a, w, base + <floating>w.start[a], ramp,
                          vo + r * OW + a, fo + r * OW + a)
        for ow in range(a):
            _window_row_max(x, w, ow, base, vo + r * OW, fo + r * OW)
        for ow in range(b, OW):
            _window_row_max(x, w, ow, base, vo + r * OW, fo + r * OW)


cdef void _fold_max(floating** vs, floating** fs, Py_ssize_t m, Py_ssize_t n,
                    floating* dv, floating* df, int64_t* am) noexcept nogil:
    """Fold ``m`` (value, flat index) arrays of length ``n``, in order, by the max rule.

    Writes the values to ``dv`` and the flat indices to ``df`` (as floats)
    or ``am`` (as int64), whichever is not NULL.
    """
    cdef floating best[BLOCK]
    cdef floating flat[BLOCK]
    cdef Py_ssize_t t0 = 0, c, t, i
    cdef const floating* src
    cdef const floating* srcf
    cdef floating v, b, f, fv
    cdef bint win
    while t0 < n:
        c = min(n - t0, <Py_ssize_t>BLOCK)
        src = vs[0] + t0
        srcf = fs[0] + t0
        for t in range(c):
            best[t] = src[t]
            flat[t] = srcf[t]
        for i in range(1, m):
            src = vs[i] + t0
            srcf = fs[i] + t0
            for t in range(c):
                v = src[t]
                fv = srcf[t]
                b = best[t]
                f = flat[t]
                win = _wins(v, b)
                best[t] = v if win else b
                flat[t] = fv if win else f
        for t in range(c):
            dv[t0 + t] = best[t]
        if df != NULL:
            for t in range(c):
                df[t0 + t] = flat[t]
        if am != NULL:
            for t in range(c):
                am[t0 + t] = <int64_t>flat[t]
        t0 += c


ctypedef struct MaxWork:
    # Per-thread scratch (untyped: the same struct serves both float types).
    void* rowv   # H * OW: row-max values of the slice being built
    void* rowf   # H * OW: their flat indices
    void* ringv  # slots * OH * OW: slice results (values)
    void* ringf  # slots * OH * OW: slice results (flat indices)
    Py_ssize_t* tags  # slots: the input slice each ring slot holds, -1 for none
    void** vs    # kd pointers (value slices of one d-fold), then kd flat slices


cdef MaxWork _max_work_new(const Geo* g, size_t item) noexcept nogil:
    cdef MaxWork ws
    cdef size_t rows = g.h.size * g.w.out
    ws.rowv = malloc(rows * item)
    ws.rowf = malloc(rows * item)
    ws.ringv = malloc(g.slots * g.slice_out * item)
    ws.ringf = malloc(g.slots * g.slice_out * item)
    ws.tags = <Py_ssize_t*>malloc(g.slots * sizeof(Py_ssize_t))
    ws.vs = <void**>malloc(2 * g.d.k * sizeof(void*))
    return ws


cdef bint _max_work_ok(const MaxWork* ws) noexcept nogil:
    return not (ws.rowv == NULL or ws.rowf == NULL or ws.ringv == NULL or ws.ringf == NULL
                or ws.tags == NULL or ws.vs == NULL)


cdef void _max_work_free(MaxWork* ws) noexcept nogil:
    free(ws.rowv)
    free(ws.rowf)
    free(ws.ringv)
    free(ws.ringf)
    free(ws.tags)
    free(ws.vs)


cdef void _max_slice(const floating* x, Py_ssize_t d, const Geo* g, const floating* ramp,
                     MaxWork* ws, floating* sv, floating* sf) noexcept nogil:
    """Slice ``d``'s (OH, OW) window maxima over h and w into ``sv``/``sf``."""
    cdef Py_ssize_t oh, j, t, r, H = g.h.size, OW = g.w.out
    cdef floating* rowv = <floating*>ws.rowv
    cdef floating* rowf = <floating*>ws.rowf
    cdef const floating* src
    cdef const floating* srcf
    cdef floating* dv
    cdef floating* df
    cdef floating v, fv, b, f
    cdef bint win
    _rows_max(x + d * H * g.w.size, d * H, H, &g.w, ramp, g.w_flat, rowv, rowf)
    # The rows of each window in h order, folded by the max rule.
    for oh in range(g.h.out):
        dv = sv + oh * OW
        df = sf + oh * OW
        r = g.h.start[oh] + g.h.lo[oh] * g.h.dil
        src = rowv + r * OW
        srcf = rowf + r * OW
        for t in range(OW):
            dv[t] = src[t]
            df[t] = srcf[t]
        for j in range(g.h.lo[oh] + 1, g.h.hi[oh]):
            r = g.h.start[oh] + j * g.h.dil
            src = rowv + r * OW
            srcf = rowf + r * OW
            for t in range(OW):
                v = src[t]
                fv = srcf[t]
                b = dv[t]
                f = df[t]
                win = _wins(v, b)
                dv[t] = v if win else b
                df[t] = fv if win else f


cdef void _max_plane_rows(const floating* x, floating* out, int64_t* am, const Geo* g,
                          const floating* ramp, MaxWork* ws) noexcept nogil:
    """Windows one row high and one slice deep (1-D pooling): each output row is
    the row-max of one input row, written in place (no folds, no ring)."""
    cdef Py_ssize_t od, oh, r, t, OW = g.w.out
    cdef floating* rowf = <floating*>ws.rowf
    for od in range(g.d.out):
        for oh in range(g.h.out):
            r = (g.d.start[od] * g.h.size) + g.h.start[oh]
            _rows_max(x + r * g.w.size, r, 1, &g.w, ramp, False, out, rowf)
            if am != NULL:
                for t in range(OW):
                    am[t] = <int64_t>rowf[t]
                am += OW
            out += OW


cdef void _max_plane(const floating* x, floating* out, int64_t* am, const Geo* g,
                     const floating* ramp, MaxWork* ws) noexcept nogil:
    cdef Py_ssize_t od, i, d, slot, m, n = g.slice_out
    cdef floating* ringv = <floating*>ws.ringv
    cdef floating* ringf = <floating*>ws.ringf
    cdef floating** vs = <floating**>ws.vs
    cdef floating** fs = vs + g.d.k
    if g.d.k == 1 and g.h.k == 1:
        _max_plane_rows(x, out, am, g, ramp, ws)
        return
    for slot in range(g.slots):
        ws.tags[slot] = -1
    for od in range(g.d.out):
        m = 0
        for i in range(g.d.lo[od], g.d.hi[od]):
            d = g.d.start[od] + i * g.d.dil
            # Slot d % slots: the slices of one window are fewer than
            # ``slots`` apart, so they never share a slot.
            slot = d % g.slots
            if ws.tags[slot] != d:
                _max_slice(x, d, g, ramp, ws, ringv + slot * n, ringf + slot * n)
                ws.tags[slot] = d
            vs[m] = ringv + slot * n
            fs[m] = ringf + slot * n
            m += 1
        _fold_max(vs, fs, m, n, out + od * n, NULL, am + od * n if am != NULL else NULL)


# -------------------------------------------- max: window by window (fallback)

cdef void _max_plane_scalar(const floating* x, floating* out, int64_t* am,
                            const Geo* g) noexcept nogil:
    """PyTorch's loop, window by window (float32 planes of more than 2**24 elements)."""
    cdef Py_ssize_t od, oh, ow, i, j, tap, k, best_k, o = 0
    cdef Py_ssize_t HW = g.h.size * g.w.size, W = g.w.size
    cdef floating v, best
    for od in range(g.d.out):
        for oh in range(g.h.out):
            for ow in range(g.w.out):
                best_k = -1
                best = 0
                for i in range(g.d.lo[od], g.d.hi[od]):
                    for j in range(g.h.lo[oh], g.h.hi[oh]):
                        for tap in range(g.w.lo[ow], g.w.hi[ow]):
                            k = ((g.d.start[od] + i * g.d.dil) * HW
                                 + (g.h.start[oh] + j * g.h.dil) * W
                                 + g.w.start[ow] + tap * g.w.dil)
                            v = x[k]
                            if best_k < 0 or _wins(v, best):
                                best = v
                                best_k = k
                out[o] = best
                if am != NULL:
                    am[o] = best_k
                o += 1


cdef void _max_forward_share(const floating* x, floating* out, int64_t* am, const Geo* g,
                             const floating* ramp, Py_ssize_t planes,
                             int* failed) noexcept nogil:
    """This thread's share of the planes (all of them outside a parallel block)."""
    cdef Py_ssize_t p, lo, hi
    cdef MaxWork ws
    cnnpool_share(planes, &lo, &hi)
    if not g.separable:
        for p in range(lo, hi):
            _max_plane_scalar(x + p * g.plane_in, out + p * g.plane_out,
                              am + p * g.plane_out if am != NULL else NULL, g)
        return
    ws = _max_work_new(g, sizeof(floating))
    if not _max_work_ok(&ws):
        failed[0] = 1
    else:
        for p in range(lo, hi):
            _max_plane(x + p * g.plane_in, out + p * g.plane_out,
                       am + p * g.plane_out if am != NULL else NULL, g, ramp, &ws)
    _max_work_free(&ws)


cdef int _max_forward(const floating* x, floating* out, int64_t* am, Geo* g,
                      Py_ssize_t planes, int n_threads) except -1:
    cdef int failed = 0
    cdef int* failed_p = &failed
    cdef Py_ssize_t ow
    # Flat indices as floats: exact up to 2**24 (float32) or 2**53 (float64).
    if floating is float:
        g.separable = g.plane_in <= separable_max
    else:
        g.separable = g.plane_in <= separable_max or separable_max == (<Py_ssize_t>1) << 24
    cdef floating ramp[BLOCK]
    for ow in range(BLOCK):
        ramp[ow] = <floating>(ow * g.w.step)
    with nogil:
        if n_threads > 1:
            with parallel(num_threads=n_threads):
                _max_forward_share(x, out, am, g, ramp, planes, failed_p)
        else:
            _max_forward_share(x, out, am, g, ramp, planes, failed_p)
    if failed:
        raise MemoryError("max_forward_3d: no memory for the per-thread work space")
    return 0


def max_forward_3d(x, d, h, w, dilation, int n_threads=1, *, out=None, argmax=None,
                   bint indices=True):
    """Max pooling of (P, D, H, W) planes: values and PyTorch's flat argmax.

    Parameters
    ----------
    x : ndarray, shape (P, D, H, W), float32 or float64, C-contiguous
    d, h, w : tuple of three intp ndarrays ``(start, lo, hi)``
        The windows along each axis, of length OD, OH, OW: the input taps
        of output ``o`` are ``start[o] + i * dil`` for ``i`` in
        ``[lo[o], hi[o])`` (as :attr:`PoolGeometry.ranges` per axis).
    dilation : (int, int, int)
    n_threads : int
        OpenMP threads (planes are dealt out whole; results do not depend on it).
    out : ndarray, shape (P, OD, OH, OW), x's dtype, optional
        Written in place and returned (a new array when None).
    argmax : ndarray, shape (P, OD, OH, OW), int64, optional
        Likewise for the indices.
    indices : bool
        False: no indices (inference); ``argmax`` is then ignored and None
        is returned in its place.

    Returns
    -------
    y : ndarray, shape (P, OD, OH, OW)
    argmax : ndarray of int64, shape (P, OD, OH, OW), or None
        Flat index ``d*H*W + h*W + w`` of each window's winner in its plane.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = _planes(x, "x", typenum)
    cdef Geo g
    _geo(&g, ax, d, h, w, dilation)
    cdef tuple shape = (ax.shape[0], g.d.out, g.h.out, g.w.out)
    cdef cnp.ndarray ao = _output(out, "out", shape, typenum)
    cdef cnp.ndarray ai = _output(argmax, "argmax", shape, cnp.NPY_INT64) if indices else None
    cdef Py_ssize_t planes = ax.shape[0]
    cdef int64_t* ip = <int64_t*>cnp.PyArray_DATA(ai) if indices else NULL
    if planes > 0:
        if typenum == cnp.NPY_FLOAT32:
            _max_forward(<const float*>cnp.PyArray_DATA(ax), <float*>cnp.PyArray_DATA(ao),
                         ip, &g, planes, n_threads)
        else:
            _max_forward(<const double*>cnp.PyArray_DATA(ax), <double*>cnp.PyArray_DATA(ao),
                         ip, &g, planes, n_threads)
    return ao, ai


# ------------------------------------------------------------- max backward

cdef void _max_backward_share(const floating* grad, const int64_t* am, floating* gin,
                              Py_ssize_t plane_in, Py_ssize_t plane_out, Py_ssize_t planes,
                              bint* bad) noexcept nogil:
    cdef Py_ssize_t p, lo, hi, o
    cdef int64_t k
    cdef floating* gp
    cnnpool_share(planes, &lo, &hi)
    for p in range(lo, hi):
        gp = gin + p * plane_in
        memset(gp, 0, plane_in * sizeof(floating))
        for o in range(p * plane_out, (p + 1) * plane_out):
            k = am[o]
            if <uint64_t>k >= <uint64_t>plane_in:  # negative k too
                bad[0] = True
                break
            gp[k] += grad[o]


def max_backward_3d(grad_out, argmax, in_size, int n_threads=1, *, out=None):
    """Add each output gradient at its window's winner (PyTorch's scatter-add).

    Parameters
    ----------
    grad_out : ndarray, shape (P, OD, OH, OW), float32 or float64
    argmax : ndarray of int64, shape (P, OD, OH, OW)
        :func:`max_forward_3d`'s indices (each checked to lie in its plane).
    in_size : (int, int, int)
        ``(D, H, W)`` of the input planes.
    n_threads : int
    out : ndarray, shape (P, D, H, W), optional
        Written whole (need not be zeroed) and returned.

    Returns
    -------
    grad_x : ndarray, shape (P, D, H, W)
        Winners shared by overlapping windows receive the sum, added in
        output order from zero as in PyTorch.
    """
    cdef int typenum = float_type(grad_out, "grad_out")
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 4, typenum, False)
    cdef cnp.ndarray am = checked(argmax, "argmax", 4, cnp.NPY_INT64, False)
    if dims(ag) != dims(am):
        raise ValueError(
            f"grad_out and argmax must have the same shape, got {dims(ag)} and {dims(am)}")
    cdef tuple size = _in_size(in_size)
    cdef cnp.ndarray ai = _output(out, "out", (ag.shape[0],) + size, typenum)
    cdef Py_ssize_t planes = ag.shape[0]
    cdef Py_ssize_t plane_in = size[0] * size[1] * size[2]
    cdef Py_ssize_t plane_out = ag.shape[1] * ag.shape[2] * ag.shape[3]
    cdef bint bad = False
    cdef bint* bad_p = &bad
    cdef const int64_t* ip = <const int64_t*>cnp.PyArray_DATA(am)
    cdef void* gp = cnp.PyArray_DATA(ag)
    cdef void* xp = cnp.PyArray_DATA(ai)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            if n_threads > 1:
                with parallel(num_threads=n_threads):
                    _max_backward_share(<const float*>gp, ip, <float*>xp, plane_in,
                                        plane_out, planes, bad_p)
            else:
                _max_backward_share(<const float*>gp, ip, <float*>xp, plane_in, plane_out,
                                    planes, bad_p)
        else:
            if n_threads > 1:
                with parallel(num_threads=n_threads):
                    _max_backward_share(<const double*>gp, ip, <double*>xp, plane_in,
                                        plane_out, planes, bad_p)
            else:
                _max_backward_share(<const double*>gp, ip, <double*>xp, plane_in, plane_out,
                                    planes, bad_p)
    if bad:
        raise ValueError(
            f"argmax holds indices outside [0, D*H*W) = [0, {plane_in}) for in_size {size}")
    return ai


# -------------------------------------------------------------------- mean

cdef inline void _run_sum(const floating* p, Py_ssize_t m, Py_ssize_t sw, Py_ssize_t k,
                          Py_ssize_t dw, floating* total) noexcept nogil:
    """Add the ``k`` taps of ``m`` full windows (first taps ``p[t*sw]``) to ``total``."""
    cdef Py_ssize_t t, tap = 0
    cdef const floating* q
    if sw == 2 and dw == 1:
        # Taps in pairs: the two adjacent inputs of each window in one pass
        # (loads of whole pairs vectorise; every other element does not).
        while tap + 1 < k:
            q = p + tap
            for t in range(m):
                total[t] = (total[t] + q[2 * t]) + q[2 * t + 1]
            tap += 2
    elif sw == 1:
        # Unit stride: two taps per pass over the sums (half the passes).
        while tap + 1 < k:
            q = p + tap * dw
            for t in range(m):
                total[t] = (total[t] + q[t]) + q[t + dw]
            tap += 2
    for tap in range(tap, k):
        q = p + tap * dw
        for t in range(m):
            total[t] = total[t] + q[t * sw]


cdef void _mean_window(const floating* x, const Geo* g, Py_ssize_t od, Py_ssize_t oh,
                       Py_ssize_t ow, floating* out, const double* div) noexcept nogil:
    """One window's mean, taps in (d, h, w) order (the border windows)."""
    cdef Py_ssize_t i, j, tap, HW = g.h.size * g.w.size, W = g.w.size
    cdef const floating* r
    cdef floating total = 0
    for i in range(g.d.lo[od], g.d.hi[od]):
        for j in range(g.h.lo[oh], g.h.hi[oh]):
            r = x + (g.d.start[od] + i * g.d.dil) * HW + (g.h.start[oh] + j * g.h.dil) * W
            for tap in range(g.w.lo[ow], g.w.hi[ow]):
                total = total + r[g.w.start[ow] + tap * g.w.dil]
    out[ow] = total / <floating>div[ow]


cdef void _mean_plane(const floating* x, floating* out, const double* div,
                      const Geo* g) noexcept nogil:
    cdef floating total[BLOCK]
    cdef Py_ssize_t od, oh, ow, i, j, t, t0, m, first
    cdef Py_ssize_t HW = g.h.size * g.w.size, W = g.w.size, sw = g.w.step
    cdef Py_ssize_t a = g.w.a, b = g.w.b
    cdef const floating* r
    for od in range(g.d.out):
        for oh in range(g.h.out):
            for ow in range(a):
                _mean_window(x, g, od, oh, ow, out, div)
            t0 = a
            while t0 < b:
                m = min(b - t0, <Py_ssize_t>BLOCK)
                for t in range(m):
                    total[t] = 0
                first = g.w.start[t0]
                for i in range(g.d.lo[od], g.d.hi[od]):
                    for j in range(g.h.lo[oh], g.h.hi[oh]):
                        r = (x + (g.d.start[od] + i * g.d.dil) * HW
                             + (g.h.start[oh] + j * g.h.dil) * W + first)
                        if sw == 1:
                            _run_sum(r, m, 1, g.w.k, g.w.dil, total)
                        elif sw == 2:
                            _run_sum(r, m, 2, g.w.k, g.w.dil, total)
                        else:
                            _run_sum(r, m, sw, g.w.k, g.w.dil, total)
                for t in range(m):
                    out[t0 + t] = total[t] / <floating>div[t0 + t]
                t0 += m
            for ow in range(b, g.w.out):
                _mean_window(x, g, od, oh, ow, out, div)
            out += g.w.out
            div += g.w.out


cdef void _mean_forward_share(const floating* x, floating* out, const double* div,
                              const Geo* g, Py_ssize_t planes) noexcept nogil:
    cdef Py_ssize_t p, lo, hi
    cnnpool_share(planes, &lo, &hi)
    for p in range(lo, hi):
        _mean_plane(x + p * g.plane_in, out + p * g.plane_out, div, g)


cdef void _mean_forward(const floating* x, floating* out, const double* div, const Geo* g,
                        Py_ssize_t planes, int n_threads) noexcept nogil:
    if n_threads > 1:
        with parallel(num_threads=n_threads):
            _mean_forward_share(x, out, div, g, planes)
    else:
        _mean_forward_share(x, out, div, g, planes)


def mean_forward_3d(x, d, h, w, dilation, divisor, int n_threads=1, *, out=None):
    """Mean pooling of (P, D, H, W) planes, PyTorch's arithmetic.

    Parameters
    ----------
    x : ndarray, shape (P, D, H, W), float32 or float64, C-contiguous
    d, h, w, dilation
        The windows, as for :func:`max_forward_3d`.
    divisor : ndarray of float64, shape (OD, OH, OW)
        Each window's divisor (tap counts with or without padding, or a
        ``divisor_override``); the backward must be given the same array.
    n_threads : int
    out : ndarray, shape (P, OD, OH, OW), optional

    Returns
    -------
    y : ndarray, shape (P, OD, OH, OW)
        Each window's sum, taps added in (d, h, w) order from 0 in x's
        precision, divided by ``divisor`` rounded to x's dtype.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = _planes(x, "x", typenum)
    cdef Geo g
    _geo(&g, ax, d, h, w, dilation)
    cdef cnp.ndarray ad = _divisor(divisor, &g)
    cdef tuple shape = (ax.shape[0], g.d.out, g.h.out, g.w.out)
    cdef cnp.ndarray ao = _output(out, "out", shape, typenum)
    cdef Py_ssize_t planes = ax.shape[0]
    cdef const double* dp = <const double*>cnp.PyArray_DATA(ad)
    cdef void* xp = cnp.PyArray_DATA(ax)
    cdef void* op = cnp.PyArray_DATA(ao)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _mean_forward(<const float*>xp, <float*>op, dp, &g, planes, n_threads)
        else:
            _mean_forward(<const double*>xp, <double*>op, dp, &g, planes, n_threads)
    return ao


cdef void _mean_back_window(floating* gin, const Geo* g, Py_ssize_t od, Py_ssize_t oh,
                            Py_ssize_t ow, floating share) noexcept nogil:
    cdef Py_ssize_t i, j, tap, HW = g.h.size * g.w.size, W = g.w.size
    cdef floating* r
    for i in range(g.d.lo[od], g.d.hi[od]):
        for j in range(g.h.lo[oh], g.h.hi[oh]):
            r = gin + (g.d.start[od] + i * g.d.dil) * HW + (g.h.start[oh] + j * g.h.dil) * W
            for tap in range(g.w.lo[ow], g.w.hi[ow]):
                r[g.w.start[ow] + tap * g.w.dil] += share


cdef inline void _run_spread(floating* p, Py_ssize_t m, Py_ssize_t sw, Py_ssize_t k,
                             Py_ssize_t dw, const floating* share) noexcept nogil:
    """Add ``share[t]`` to the ``k`` taps of ``m`` full windows (first taps ``p[t*sw]``).

    Taps from the last to the first: an element reached by windows t < t'
    is reached by t through a later tap, so it receives t's share first.
    """
    cdef Py_ssize_t t, tap = k - 1
    cdef floating* q
    if sw == 2 and dw == 1:
        # Taps in pairs (tap - 1, tap), one pass: stores of whole pairs
        # vectorise.  No element is reached twice in a pass (the pair's two
        # elements of window t are 2t + tap - 1 and 2t + tap).
        while tap >= 1:
            q = p + tap - 1
            for t in range(m):
                q[2 * t] += share[t]
                q[2 * t + 1] += share[t]
            tap -= 2
    while tap >= 0:
        q = p + tap * dw
        for t in range(m):
            q[t * sw] += share[t]
        tap -= 1


cdef inline bint _tiles(const Axis* ax) noexcept nogil:
    """Windows along ``ax`` that are full, undilated and do not overlap (stride = kernel)."""
    return ax.a == 0 and ax.b == ax.out and ax.dil == 1 and (ax.out == 1 or ax.step == ax.k)


cdef inline void _run_fill(floating* r, Py_ssize_t n, Py_ssize_t k,
                           const floating* share) noexcept nogil:
    """Write ``share[t]`` to the ``k`` elements of tile ``t`` of row ``r``."""
    cdef Py_ssize_t t, tap
    for t in range(n):
        for tap in range(k):
            r[t * k + tap] = share[t]


cdef void _mean_back_tiled(const floating* grad, const double* div, floating* gin,
                           const Geo* g, floating* share) noexcept nogil:
    """Windows that tile the plane: every input element receives at most one share,
    so it is written once (``0 + share``, as PyTorch's accumulation into zeros)."""
    cdef Py_ssize_t od, oh, ow, i, j, HW = g.h.size * g.w.size, W = g.w.size
    cdef Py_ssize_t OW = g.w.out, kw = g.w.k
    cdef floating* r
    if (g.d.start[0] != 0 or g.h.start[0] != 0 or g.w.start[0] != 0
            or g.d.out * g.d.k != g.d.size or g.h.out * g.h.k != g.h.size
            or OW * kw != W):
        memset(gin, 0, g.plane_in * sizeof(floating))  # elements no window covers
    for od in range(g.d.out):
        for oh in range(g.h.out):
            for ow in range(OW):
                share[ow] = grad[ow] / <floating>div[ow] + 0
            for i in range(g.d.k):
                for j in range(g.h.k):
                    r = (gin + (g.d.start[od] + i) * HW + (g.h.start[oh] + j) * W
                         + g.w.start[0])
                    if kw == 2:
                        _run_fill(r, OW, 2, share)
                    else:
                        _run_fill(r, OW, kw, share)
            grad += OW
            div += OW


cdef void _mean_back_plane(const floating* grad, const double* div, floating* gin,
                           const Geo* g, floating* share) noexcept nogil:
    """One plane's input gradient; ``share`` is OW elements of scratch."""
    cdef Py_ssize_t od, oh, ow, i, j, n = g.w.b - g.w.a
    cdef Py_ssize_t HW = g.h.size * g.w.size, W = g.w.size, sw = g.w.step
    cdef floating* r
    if _tiles(&g.d) and _tiles(&g.h) and _tiles(&g.w):
        _mean_back_tiled(grad, div, gin, g, share)
        return
    memset(gin, 0, g.plane_in * sizeof(floating))
    for od in range(g.d.out):
        for oh in range(g.h.out):
            for ow in range(g.w.out):
                share[ow] = grad[ow] / <floating>div[ow]
            # Windows in output order: the border windows left of the run,
            # the run, the windows right of it.
            for ow in range(g.w.a):
                _mean_back_window(gin, g, od, oh, ow, share[ow])
            if n > 0:
                for i in range(g.d.lo[od], g.d.hi[od]):
                    for j in range(g.h.lo[oh], g.h.hi[oh]):
                        r = (gin + (g.d.start[od] + i * g.d.dil) * HW
                             + (g.h.start[oh] + j * g.h.dil) * W + g.w.start[g.w.a])
                        if sw == 1:
                            _run_spread(r, n, 1, g.w.k, g.w.dil, share + g.w.a)
                        elif sw == 2:
                            _run_spread(r, n, 2, g.w.k, g.w.dil, share + g.w.a)
                        else:
                            _run_spread(r, n, sw, g.w.k, g.w.dil, share + g.w.a)
            for ow in range(g.w.b, g.w.out):
                _mean_back_window(gin, g, od, oh, ow, share[ow])
            grad += g.w.out
            div += g.w.out


cdef void _mean_backward_share(const floating* grad, const double* div, floating* gin,
                               const Geo* g, Py_ssize_t planes, int* failed) noexcept nogil:
    cdef Py_ssize_t p, lo, hi
    cnnpool_share(planes, &lo, &hi)
    cdef floating* share = <floating*>malloc(g.w.out * sizeof(floating))
    if share == NULL:
        failed[0] = 1
        return
    for p in range(lo, hi):
        _mean_back_plane(grad + p * g.plane_out, div, gin + p * g.plane_in, g, share)
    free(share)


cdef void _mean_backward(const floating* grad, const double* div, floating* gin,
                         const Geo* g, Py_ssize_t planes, int n_threads,
                         int* failed) noexcept nogil:
    if n_threads > 1:
        with parallel(num_threads=n_threads):
            _mean_backward_share(grad, div, gin, g, planes, failed)
    else:
        _mean_backward_share(grad, div, gin, g, planes, failed)


def mean_backward_3d(grad_out, in_size, d, h, w, dilation, divisor, int n_threads=1, *,
                     out=None):
    """Spread ``grad_out / divisor`` over each window's input taps, as PyTorch.

    Parameters
    ----------
    grad_out : ndarray, shape (P, OD, OH, OW), float32 or float64
    in_size : (int, int, int)
        ``(D, H, W)`` of the input planes.
    d, h, w, dilation, divisor
        As given to :func:`mean_forward_3d`.
    n_threads : int
    out : ndarray, shape (P, D, H, W), optional
        Written whole (need not be zeroed) and returned.

    Returns
    -------
    grad_x : ndarray, shape (P, D, H, W)
        Every input element receives its windows' shares in output order,
        added from zero in grad_out's precision.
    """
    cdef int typenum = float_type(grad_out, "grad_out")
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 4, typenum, False)
    cdef tuple size = _in_size(in_size)
    cdef cnp.ndarray ai = _output(out, "out", (ag.shape[0],) + size, typenum)
    cdef Geo g
    _geo(&g, ai, d, h, w, dilation)
    if (g.d.out, g.h.out, g.w.out) != dims(ag)[1:]:
        raise ValueError(
            f"grad_out has shape {dims(ag)}, but the windows give an output of "
            f"(OD, OH, OW) = {(g.d.out, g.h.out, g.w.out)}")
    cdef cnp.ndarray ad = _divisor(divisor, &g)
    cdef Py_ssize_t planes = ag.shape[0]
    cdef const double* dp = <const double*>cnp.PyArray_DATA(ad)
    cdef void* gp = cnp.PyArray_DATA(ag)
    cdef void* xp = cnp.PyArray_DATA(ai)
    cdef int failed = 0
    cdef int* failed_p = &failed
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _mean_backward(<const float*>gp, dp, <float*>xp, &g, planes, n_threads, failed_p)
        else:
            _mean_backward(<const double*>gp, dp, <double*>xp, &g, planes, n_threads,
                           failed_p)
    if failed:
        raise MemoryError("mean_backward_3d: no memory for the per-thread work space")
    return ai


# ------------------------------------------------------------------- 1-D

_ONE = (np.zeros(1, np.intp), np.zeros(1, np.intp), np.ones(1, np.intp))


def _signal(a, str name):
    """(P, L) as (P, 1, 1, L), a view (a reshape that copied would hide an ``out``)."""
    if not isinstance(a, np.ndarray) or a.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (P, L) ndarray, got "
            f"{getattr(a, 'shape', type(a).__name__)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return a.reshape(a.shape[0], 1, 1, a.shape[1])


def _plane_out(out, str name, Py_ssize_t planes, Py_ssize_t length):
    if out is None:
        return None
    if isinstance(out, np.ndarray) and out.shape != (planes, length):
        raise ValueError(f"{name} must have shape {(planes, length)}, got {out.shape}")
    return _signal(out, name)


def max_forward_1d(x, w, Py_ssize_t dilation, int n_threads=1, *, out=None, argmax=None,
                   bint indices=True):
    """:func:`max_forward_3d` on (P, L) signals: (P, OL) values and argmax (input positions)."""
    planes = _signal(x, "x")
    length = len(w[0]) if isinstance(w, tuple) and len(w) == 3 else 0
    y, am = max_forward_3d(
        planes, _ONE, _ONE, w, (1, 1, dilation), n_threads,
        out=_plane_out(out, "out", x.shape[0], length),
        argmax=_plane_out(argmax, "argmax", x.shape[0], length), indices=indices)
    return y.reshape(y.shape[0], y.shape[3]), (
        None if am is None else am.reshape(am.shape[0], am.shape[3]))


def max_backward_1d(grad_out, argmax, Py_ssize_t length, int n_threads=1, *, out=None):
    """:func:`max_backward_3d` on (P, OL) gradients: returns the (P, L) input gradient."""
    g = max_backward_3d(
        _signal(grad_out, "grad_out"), _signal(argmax, "argmax"), (1, 1, length), n_threads,
        out=_plane_out(out, "out", grad_out.shape[0], length))
    return g.reshape(g.shape[0], length)


def mean_forward_1d(x, w, Py_ssize_t dilation, divisor, int n_threads=1, *, out=None):
    """:func:`mean_forward_3d` on (P, L) signals; ``divisor`` is (OL,) float64."""
    planes = _signal(x, "x")
    div = np.asarray(divisor).reshape(1, 1, -1) if isinstance(divisor, np.ndarray) else divisor
    length = len(w[0]) if isinstance(w, tuple) and len(w) == 3 else 0
    y = mean_forward_3d(planes, _ONE, _ONE, w, (1, 1, dilation), div, n_threads,
                        out=_plane_out(out, "out", x.shape[0], length))
    return y.reshape(y.shape[0], y.shape[3])


def mean_backward_1d(grad_out, Py_ssize_t length, w, Py_ssize_t dilation, divisor,
                     int n_threads=1, *, out=None):
    """:func:`mean_backward_3d` on (P, OL) gradients: returns the (P, L) input gradient."""
    div = np.asarray(divisor).reshape(1, 1, -1) if isinstance(divisor, np.ndarray) else divisor
    g = mean_backward_3d(_signal(grad_out, "grad_out"), (1, 1, length), _ONE, _ONE, w,
                         (1, 1, dilation), div, n_threads,
                         out=_plane_out(out, "out", grad_out.shape[0], length))
    return g.reshape(g.shape[0], length)
