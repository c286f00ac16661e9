"""Compiled kernels of the built-in max and mean strategies.

Fused float32/float64, GIL released, parallel over the N*C planes (each
plane whole on one thread, so results never depend on the thread count).
The thin Python layer (``max.py``, ``mean.py``, through ``base.py``)
checks every shape, dtype and contiguity and builds the window ranges;
these loops then run with bounds checks off.

Window ranges: for output row ``oh`` the taps ``i`` in
``[row_lo[oh], row_hi[oh])`` land inside the input, at input row
``row_start[oh] + i * dil_h`` (likewise for columns).  Taps outside those
ranges lie in the padding and are skipped: padding never wins a max and
adds nothing to a sum, so a padded input is never materialised.

How the loops are organised (all of it is about speed; the arithmetic is
PyTorch's, operation for operation, so the numbers agree bit for bit):

* Output columns split into a left border, an *interior* run whose
  windows lie wholly inside the input columns, and a right border.
  Border windows take the general per-window loop with range lookups.
* Interior columns of one output row run "tap-major": for each window
  tap in row-major order, one pass over the whole run of windows.  That
  inner pass is a plain strided loop without lookups or branches, which
  gcc -O3 vectorises.  Each window still sees its taps in row-major
  order, so max ties/NaN and the float summation order are unchanged.
* The most common kernels (2x2 stride 2 and 3x3 stride 2, no dilation,
  all rows inside) have fused row loops that keep the running max/sum in
  registers across the taps.
* Backward of non-overlapping pooling (stride = kernel, no padding or
  dilation) writes every input gradient exactly once, so its output needs
  no zero-fill; other geometries zero one plane at a time (in cache) and
  accumulate.

Summation order of overlapping mean backward: an input element receives
its windows' shares in row-major window order, as in PyTorch.  The
tap-major pass keeps that order by running the taps of a window row from
the last column to the first (a later window reaches a column through an
earlier tap).
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memset


ctypedef struct Plan:
    # Input and output plane sizes.
    Py_ssize_t height, width, out_h, out_w
    # Kernel, stride, dilation.
    Py_ssize_t kh, kw, sh, sw, dh, dw
    # Interior output columns [ow_a, ow_b): windows wholly inside the columns.
    Py_ssize_t ow_a, ow_b
    # Which fused row loop applies to interior windows whose rows are all inside.
    int fused
    const Py_ssize_t* row_start
    const Py_ssize_t* row_lo
    const Py_ssize_t* row_hi
    const Py_ssize_t* col_start
    const Py_ssize_t* col_lo
    const Py_ssize_t* col_hi


cdef enum:
    FUSED_NONE = 0
    FUSED_2X2S2 = 1
    FUSED_3X3S2 = 2


cdef Plan _plan(Py_ssize_t height, Py_ssize_t width, Py_ssize_t out_h, Py_ssize_t out_w,
                const Py_ssize_t[::1] row_start, const Py_ssize_t[::1] row_lo,
                const Py_ssize_t[::1] row_hi, const Py_ssize_t[::1] col_start,
                const Py_ssize_t[::1] col_lo, const Py_ssize_t[::1] col_hi,
                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                Py_ssize_t dh, Py_ssize_t dw) noexcept:
    cdef Plan g
    cdef Py_ssize_t ow
    g.height, g.width, g.out_h, g.out_w = height, width, out_h, out_w
    g.kh, g.kw, g.sh, g.sw, g.dh, g.dw = kh, kw, sh, sw, dh, dw
    g.row_start = &row_start[0]
    g.row_lo = &row_lo[0]
    g.row_hi = &row_hi[0]
    g.col_start = &col_start[0]
    g.col_lo = &col_lo[0]
    g.col_hi = &col_hi[0]
    # Full windows form one run of columns (window starts increase with ow).
    g.ow_a = out_w
    g.ow_b = out_w
    for ow in range(out_w):
        if col_lo[ow] == 0 and col_hi[ow] == kw:
            if g.ow_a == out_w:
                g.ow_a = ow
            g.ow_b = ow + 1
    if (kh - 1) * dh * width + (kw - 1) * dw >= (1 << 24):
        # Tap offsets would not be exact in float32: every window takes the
        # general loop (only for absurdly wide windows).
        g.ow_a = out_w
        g.ow_b = out_w
    g.fused = FUSED_NONE
    if dh == 1 and dw == 1 and sh == 2 and sw == 2:
        if kh == 2 and kw == 2:
            g.fused = FUSED_2X2S2
        elif kh == 3 and kw == 3:
            g.fused = FUSED_3X3S2
    return g


cdef inline bint _full_rows(const Plan* g, Py_ssize_t oh) noexcept nogil:
    return g.row_lo[oh] == 0 and g.row_hi[oh] == g.kh


# ---------------------------------------------------------------------------- max
#
# PyTorch's rule, tap by tap in row-major window order: a tap replaces the
# current best when it is greater, or when it is NaN.  So the first of equal
# maxima wins, the last of several NaNs wins, and a window of -inf's reports
# its first input tap.  Starting from "best = first input tap" is the same
# as PyTorch's "best = -inf, index = first input tap": the first tap always
# replaces -inf unless it is -inf itself, and then the index is the same.

cdef inline bint _wins(floating v, floating best) noexcept nogil:
    return (v > best) | (v != v)


cdef void _max_window(const floating* x, const Plan* g, Py_ssize_t oh, Py_ssize_t ow,
                      floating* out, int64_t* ind) noexcept nogil:
    """One window with range lookups (border windows)."""
    cdef Py_ssize_t i, j, ih, iw, k, best_k
    cdef Py_ssize_t r0 = g.row_start[oh], c0 = g.col_start[ow]
    cdef Py_ssize_t jlo = g.col_lo[ow], jhi = g.col_hi[ow]
    cdef floating v, best
    ih = r0 + g.row_lo[oh] * g.dh
    best_k = ih * g.width + c0 + jlo * g.dw
    best = x[best_k]
    for i in range(g.row_lo[oh], g.row_hi[oh]):
        ih = r0 + i * g.dh
        for j in range(jlo, jhi):
            iw = c0 + j * g.dw
            k = ih * g.width + iw
            v = x[k]
            if _wins(v, best):
                best = v
                best_k = k
    out[ow] = best
    ind[ow] = best_k


cdef enum:
    BLOCK = 256  # interior windows handled per block (room on the stack)


# Interior windows: a vectorisable pass keeps each window's running best and
# the *offset* of its tap from the window's first element (0, 1, W, W+1 ...)
# in two arrays of the input's own type, so gcc needs no mixed-width
# vector selects (which SSE2 lacks).  The offsets are small integers, exact
# in float32 (``_plan`` routes windows spanning 2**24 elements elsewhere); a
# short scalar pass then turns them into int64 indices.

cdef inline void _max_indices(int64_t* ind, const floating* offset, Py_ssize_t n,
                              Py_ssize_t base, Py_ssize_t sw) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        ind[t] = base + t * sw + <Py_ssize_t>offset[t]


cdef inline void _max_taps(const floating* x, const Plan* g, Py_ssize_t oh, Py_ssize_t ow0,
                           Py_ssize_t n, floating* o, int64_t* ind,
                           Py_ssize_t sw) noexcept nogil:
    """Interior windows ``[ow0, ow0 + n)`` of output row ``oh``, tap-major.

    Any kernel; ``n <= BLOCK``.  ``sw`` is passed separately so that calls
    with a constant stride get a loop specialised for it.
    """
    cdef floating offset[BLOCK]
    cdef Py_ssize_t i, j, t, first_j, tap
    cdef Py_ssize_t base = (g.row_start[oh] + g.row_lo[oh] * g.dh) * g.width + g.col_start[ow0]
    cdef const floating* row = x + base
    cdef floating v, best, off, tap_offset
    o += ow0
    for t in range(n):
        o[t] = row[t * sw]
        offset[t] = 0
    for i in range(g.row_lo[oh], g.row_hi[oh]):
        first_j = 1 if i == g.row_lo[oh] else 0
        for j in range(first_j, g.kw):
            tap = (i - g.row_lo[oh]) * g.dh * g.width + j * g.dw
            row = x + base + tap
            tap_offset = <floating>tap
            for t in range(n):
                # Unconditional stores: gcc does not if-convert conditional ones.
                v = row[t * sw]
                best = o[t]
                off = offset[t]
                if _wins(v, best):
                    best = v
                    off = tap_offset
                o[t] = best
                offset[t] = off
    _max_indices(ind + ow0, offset, n, base, sw)


cdef inline void _max_2x2s2(const floating* x, const Plan* g, Py_ssize_t oh, Py_ssize_t ow0,
                            Py_ssize_t n, floating* o, int64_t* ind) noexcept nogil:
    """Interior windows of 2x2 stride-2 pooling, all rows inside: fused."""
    cdef floating offset[BLOCK]
    cdef Py_ssize_t w = g.width
    cdef Py_ssize_t base = g.row_start[oh] * w + g.col_start[ow0]
    cdef const floating* r0 = x + base
    cdef const floating* r1 = r0 + w
    cdef floating fw = <floating>w, fw1 = <floating>(w + 1)
    cdef Py_ssize_t t, k
    cdef floating best, v, off
    o += ow0
    for t in range(n):
        k = 2 * t
        best = r0[k]
        off = 0
        v = r0[k + 1]
        if _wins(v, best):
            best = v
            off = 1
        v = r1[k]
        if _wins(v, best):
            best = v
            off = fw
        v = r1[k + 1]
        if _wins(v, best):
            best = v
            off = fw1
        o[t] = best
        offset[t] = off
    _max_indices(ind + ow0, offset, n, base, 2)


cdef inline void _max_3x3s2(const floating* x, const Plan* g, Py_ssize_t oh, Py_ssize_t ow0,
                            Py_ssize_t n, floating* o, int64_t* ind) noexcept nogil:
    """Interior windows of 3x3 stride-2 pooling, all rows inside: fused."""
    cdef floating offset[BLOCK]
    cdef Py_ssize_t w = g.width
    cdef Py_ssize_t base = g.row_start[oh] * w + g.col_start[ow0]
    cdef const floating* r0 = x + base
    cdef const floating* r1 = r0 + w
    cdef const floating* r2 = r1 + w
    # Every offset precomputed: arithmetic inside the ifs stops gcc's
    # if-conversion, and with it the vectorisation.
    cdef floating w0 = <floating>w, w1 = <floating>(w + 1), w2 = <floating>(w + 2)
    cdef floating ww0 = <floating>(2 * w), ww1 = <floating>(2 * w + 1)
    cdef floating ww2 = <floating>(2 * w + 2)
    cdef Py_ssize_t t, k
    cdef floating best, v, off
    o += ow0
    for t in range(n):
        k = 2 * t
        best = r0[k]
        off = 0
        v = r0[k + 1]
        if _wins(v, best):
            best = v
            off = 1
        v = r0[k + 2]
        if _wins(v, best):
            best = v
            off = 2
        v = r1[k]
        if _wins(v, best):
            best = v
            off = w0
        v = r1[k + 1]
        if _wins(v, best):
            best = v
            off = w1
        v = r1[k + 2]
        if _wins(v, best):
            best = v
            off = w2
        v = r2[k]
        if _wins(v, best):
            best = v
            off = ww0
        v = r2[k + 1]
        if _wins(v, best):
            best = v
            off = ww1
        v = r2[k + 2]
        if _wins(v, best):
            best = v
            off = ww2
        o[t] = best
        offset[t] = off
    _max_indices(ind + ow0, offset, n, base, 2)


cdef void _max_plane(const floating* x, floating* out, int64_t* ind,
                     const Plan* g) noexcept nogil:
    cdef Py_ssize_t oh, ow, n
    cdef bint full
    for oh in range(g.out_h):
        for ow in range(g.ow_a):
            _max_window(x, g, oh, ow, out, ind)
        full = _full_rows(g, oh)
        ow = g.ow_a
        while ow < g.ow_b:
            n = min(g.ow_b - ow, <Py_ssize_t>BLOCK)
            if g.fused == FUSED_2X2S2 and full:
                _max_2x2s2(x, g, oh, ow, n, out, ind)
            elif g.fused == FUSED_3X3S2 and full:
                _max_3x3s2(x, g, oh, ow, n, out, ind)
            elif g.sw == 1:
                _max_taps(x, g, oh, ow, n, out, ind, 1)
            elif g.sw == 2:
                _max_taps(x, g, oh, ow, n, out, ind, 2)
            else:
                _max_taps(x, g, oh, ow, n, out, ind, g.sw)
            ow += n
        for ow in range(g.ow_b, g.out_w):
            _max_window(x, g, oh, ow, out, ind)
        out += g.out_w
        ind += g.out_w


def max_forward(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                int64_t[:, :, ::1] indices,
                const Py_ssize_t[::1] row_start, const Py_ssize_t[::1] row_lo,
                const Py_ssize_t[::1] row_hi, const Py_ssize_t[::1] col_start,
                const Py_ssize_t[::1] col_lo, const Py_ssize_t[::1] col_hi,
                Py_ssize_t dil_h, Py_ssize_t dil_w, Py_ssize_t kernel_h,
                Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                int n_threads):
    """Max over each window, and the flat index (``ih * W + iw``) of the winner.

    ``x`` is (P, H, W), ``out`` and ``indices`` are (P, OH, OW).
    """
    cdef Py_ssize_t planes = x.shape[0], p
    cdef Py_ssize_t plane_in = x.shape[1] * x.shape[2]
    cdef Py_ssize_t plane_out = out.shape[1] * out.shape[2]
    if planes == 0 or plane_out == 0:
        return
    cdef Plan g = _plan(x.shape[1], x.shape[2], out.shape[1], out.shape[2],
                        row_start, row_lo, row_hi, col_start, col_lo, col_hi,
                        kernel_h, kernel_w, stride_h, stride_w, dil_h, dil_w)
    cdef const floating* xp = &x[0, 0, 0]
    cdef floating* op = &out[0, 0, 0]
    cdef int64_t* ip = &indices[0, 0, 0]
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            _max_plane(xp + p * plane_in, op + p * plane_out, ip + p * plane_out, &g)


cdef inline void _max_back_2x2(const floating* grad, const int64_t* ind, floating* gin,
                               Py_ssize_t n, Py_ssize_t base, Py_ssize_t w) noexcept nogil:
    """One output row of non-overlapping 2x2 max backward: write all 4 taps.

    A scalar pass turns each winner's index into its offset in the window
    (0, 1, W or W+1) in the gradient's own type; the pass that writes the
    four taps is then all-float, which gcc vectorises.
    """
    cdef floating offset[BLOCK]
    cdef floating* r0
    cdef floating* r1
    cdef floating fw = <floating>w, fw1 = <floating>(w + 1)
    cdef Py_ssize_t t, k, t0, m
    cdef floating v, off
    t0 = 0
    while t0 < n:
        m = min(n - t0, <Py_ssize_t>BLOCK)
        for t in range(m):
            offset[t] = <floating>(ind[t0 + t] - base - 2 * (t0 + t))
        r0 = gin + base + 2 * t0
        r1 = r0 + w
        for t in range(m):
            k = 2 * t
            # 0 + v, as PyTorch accumulates into zeros (turns -0.0 into +0.0).
            v = grad[t0 + t] + 0
            off = offset[t]
            r0[k] = v if off == 0 else 0
            r0[k + 1] = v if off == 1 else 0
            r1[k] = v if off == fw else 0
            r1[k + 1] = v if off == fw1 else 0
        t0 += m


cdef void _max_back_tiled(const floating* grad, const int64_t* ind, floating* gin,
                          const Plan* g) noexcept nogil:
    """Non-overlapping windows (stride = kernel, no padding or dilation): no zero-fill.

    Every input element is written exactly once: its window's gradient if
    it is the winner, else 0; elements past the last window are zeroed.
    """
    cdef Py_ssize_t w = g.width, kh = g.kh, kw = g.kw
    cdef Py_ssize_t oh, ow, i, j, base, win
    cdef Py_ssize_t covered_w = g.out_w * kw, covered_h = g.out_h * kh
    cdef floating v
    cdef floating* row
    for oh in range(g.out_h):
        base = oh * kh * w
        if kh == 2 and kw == 2:
            _max_back_2x2(grad, ind, gin, g.out_w, base, w)
        else:
            for i in range(kh):
                row = gin + base + i * w
                for ow in range(g.out_w):
                    v = grad[ow] + 0
                    win = ind[ow] - base - i * w - ow * kw
                    for j in range(kw):
                        row[ow * kw + j] = v if win == j else 0
        if covered_w < w:
            for i in range(kh):
                memset(gin + base + i * w + covered_w, 0, (w - covered_w) * sizeof(floating))
        grad += g.out_w
        ind += g.out_w
    if covered_h < g.height:
        memset(gin + covered_h * w, 0, (g.height - covered_h) * w * sizeof(floating))


cdef inline bint _tiled(const Plan* g) noexcept nogil:
    """Windows tile the input without overlap, gaps or padding (up to a remainder)."""
    return (g.sh == g.kh and g.sw == g.kw and g.dh == 1 and g.dw == 1
            and g.row_start[0] == 0 and g.col_start[0] == 0
            and g.out_h * g.kh <= g.height and g.out_w * g.kw <= g.width)


def max_backward(const floating[:, :, ::1] grad_out, const int64_t[:, :, ::1] indices,
                 floating[:, :, ::1] grad_in,
                 const Py_ssize_t[::1] row_start, const Py_ssize_t[::1] row_lo,
                 const Py_ssize_t[::1] row_hi, const Py_ssize_t[::1] col_start,
                 const Py_ssize_t[::1] col_lo, const Py_ssize_t[::1] col_hi,
                 Py_ssize_t dil_h, Py_ssize_t dil_w, Py_ssize_t kernel_h,
                 Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                 int n_threads):
    """Route each output gradient to its window's winner.

    ``grad_out`` and ``indices`` are (P, OH, OW), ``grad_in`` is (P, H, W)
    and need not be initialised: every element is written.  Overlapping
    windows can share a winner, which then receives the sum, added in
    row-major window order as in PyTorch.
    """
    cdef Py_ssize_t planes = grad_in.shape[0], p, o
    cdef Py_ssize_t plane_in = grad_in.shape[1] * grad_in.shape[2]
    cdef Py_ssize_t plane_out = grad_out.shape[1] * grad_out.shape[2]
    if planes == 0 or plane_in == 0:
        return
    cdef Plan g = _plan(grad_in.shape[1], grad_in.shape[2], grad_out.shape[1],
                        grad_out.shape[2], row_start, row_lo, row_hi, col_start,
                        col_lo, col_hi, kernel_h, kernel_w, stride_h, stride_w,
                        dil_h, dil_w)
    cdef bint tiled = _tiled(&g)
    cdef const floating* gp = &grad_out[0, 0, 0]
    cdef const int64_t* ip = &indices[0, 0, 0]
    cdef floating* xp = &grad_in[0, 0, 0]
    cdef floating* dst
    cdef const floating* src
    cdef const int64_t* idx
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            dst = xp + p * plane_in
            src = gp + p * plane_out
            idx = ip + p * plane_out
            if tiled:
                _max_back_tiled(src, idx, dst, &g)
            else:
                memset(dst, 0, plane_in * sizeof(floating))
                for o in range(plane_out):
                    dst[idx[o]] += src[o]


# --------------------------------------------------------------------------- mean
#
# PyTorch's arithmetic: the sum starts at 0 and adds the input taps in
# row-major window order, in the input's own precision, then is divided by
# the divisor (a small integer, exact in float32).  Dividing in float32 by
# float32(divisor) gives the same bits as dividing in float64 and rounding.

cdef void _mean_window(const floating* x, const Plan* g, const double* div,
                       Py_ssize_t oh, Py_ssize_t ow, floating* out) noexcept nogil:
    cdef Py_ssize_t i, j, ih
    cdef Py_ssize_t c0 = g.col_start[ow], jlo = g.col_lo[ow], jhi = g.col_hi[ow]
    cdef floating total = 0
    for i in range(g.row_lo[oh], g.row_hi[oh]):
        ih = g.row_start[oh] + i * g.dh
        for j in range(jlo, jhi):
            total = total + x[ih * g.width + c0 + j * g.dw]
    out[ow] = total / <floating>div[ow]


cdef inline void _mean_taps(const floating* x, const Plan* g, const double* div,
                            Py_ssize_t oh, floating* out, Py_ssize_t sw) noexcept nogil:
    """Interior windows of output row ``oh``, tap-major (any kernel)."""
    cdef Py_ssize_t ow_a = g.ow_a, n = g.ow_b - g.ow_a
    cdef Py_ssize_t i, j, t
    cdef const floating* row
    cdef floating* o = out + ow_a
    for t in range(n):
        o[t] = 0
    for i in range(g.row_lo[oh], g.row_hi[oh]):
        for j in range(g.kw):
            row = x + (g.row_start[oh] + i * g.dh) * g.width + g.col_start[ow_a] + j * g.dw
            for t in range(n):
                o[t] = o[t] + row[t * sw]
    div += ow_a
    for t in range(n):
        o[t] = o[t] / <floating>div[t]


cdef inline void _mean_2x2s2(const floating* x, const Plan* g, const double* div,
                             Py_ssize_t oh, floating* out) noexcept nogil:
    cdef Py_ssize_t ow_a = g.ow_a, n = g.ow_b - g.ow_a, w = g.width
    cdef const floating* r0 = x + g.row_start[oh] * w + g.col_start[ow_a]
    cdef const floating* r1 = r0 + w
    cdef floating* o = out + ow_a
    cdef Py_ssize_t t, k
    cdef floating total
    div += ow_a
    for t in range(n):
        k = 2 * t
        total = 0
        total = total + r0[k]
        total = total + r0[k + 1]
        total = total + r1[k]
        total = total + r1[k + 1]
        o[t] = total / <floating>div[t]


cdef inline void _mean_3x3s2(const floating* x, const Plan* g, const double* div,
                             Py_ssize_t oh, floating* out) noexcept nogil:
    cdef Py_ssize_t ow_a = g.ow_a, n = g.ow_b - g.ow_a, w = g.width
    cdef const floating* r0 = x + g.row_start[oh] * w + g.col_start[ow_a]
    cdef const floating* r1 = r0 + w
    cdef const floating* r2 = r1 + w
    cdef floating* o = out + ow_a
    cdef Py_ssize_t t, k
    cdef floating total
    div += ow_a
    for t in range(n):
        k = 2 * t
        total = 0
        total = total + r0[k]
        total = total + r0[k + 1]
        total = total + r0[k + 2]
        total = total + r1[k]
        total = total + r1[k + 1]
        total = total + r1[k + 2]
        total = total + r2[k]
        total = total + r2[k + 1]
        total = total + r2[k + 2]
        o[t] = total / <floating>div[t]


cdef void _mean_plane(const floating* x, floating* out, const double* div,
                      const Plan* g) noexcept nogil:
    cdef Py_ssize_t oh, ow
    for oh in range(g.out_h):
        for ow in range(g.ow_a):
            _mean_window(x, g, div, oh, ow, out)
        if g.ow_a < g.ow_b:
            if g.fused == FUSED_2X2S2 and _full_rows(g, oh):
                _mean_2x2s2(x, g, div, oh, out)
            elif g.fused == FUSED_3X3S2 and _full_rows(g, oh):
                _mean_3x3s2(x, g, div, oh, out)
            elif g.sw == 1:
                _mean_taps(x, g, div, oh, out, 1)
            elif g.sw == 2:
                _mean_taps(x, g, div, oh, out, 2)
            else:
                _mean_taps(x, g, div, oh, out, g.sw)
        for ow in range(g.ow_b, g.out_w):
            _mean_window(x, g, div, oh, ow, out)
        out += g.out_w
        div += g.out_w


def mean_forward(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                 const double[:, ::1] divisor,
                 const Py_ssize_t[::1] row_start, const Py_ssize_t[::1] row_lo,
                 const Py_ssize_t[::1] row_hi, const Py_ssize_t[::1] col_start,
                 const Py_ssize_t[::1] col_lo, const Py_ssize_t[::1] col_hi,
                 Py_ssize_t dil_h, Py_ssize_t dil_w, Py_ssize_t kernel_h,
                 Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                 int n_threads):
    """Sum of each window's input taps divided by ``divisor[oh, ow]``."""
    cdef Py_ssize_t planes = x.shape[0], p
    cdef Py_ssize_t plane_in = x.shape[1] * x.shape[2]
    cdef Py_ssize_t plane_out = out.shape[1] * out.shape[2]
    if planes == 0 or plane_out == 0:
        return
    cdef Plan g = _plan(x.shape[1], x.shape[2], out.shape[1], out.shape[2],
                        row_start, row_lo, row_hi, col_start, col_lo, col_hi,
                        kernel_h, kernel_w, stride_h, stride_w, dil_h, dil_w)
    cdef const floating* xp = &x[0, 0, 0]
    cdef floating* op = &out[0, 0, 0]
    cdef const double* dp = &divisor[0, 0]
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            _mean_plane(xp + p * plane_in, op + p * plane_out, dp, &g)


cdef void _mean_back_window(const Plan* g, Py_ssize_t oh, Py_ssize_t ow, floating share,
                            floating* gin) noexcept nogil:
    cdef Py_ssize_t i, j, ih
    cdef Py_ssize_t c0 = g.col_start[ow], jlo = g.col_lo[ow], jhi = g.col_hi[ow]
    for i in range(g.row_lo[oh], g.row_hi[oh]):
        ih = g.row_start[oh] + i * g.dh
        for j in range(jlo, jhi):
            gin[ih * g.width + c0 + j * g.dw] += share


cdef inline void _mean_back_taps(const floating* grad, const double* div, const Plan* g,
                                 Py_ssize_t oh, Py_ssize_t ow0, Py_ssize_t n,
                                 floating* gin, Py_ssize_t sw) noexcept nogil:
    """Add the shares of the interior windows ``[ow0, ow0 + n)`` of row ``oh``.

    ``n <= BLOCK``.  Taps of a window row run from the last column to
    the first, so that an input column shared by several windows gets
    their shares in window order (a later window reaches it through an
    earlier tap).
    """
    cdef floating share[BLOCK]
    cdef Py_ssize_t i, j, t
    cdef floating* row
    for t in range(n):
        share[t] = grad[ow0 + t] / <floating>div[ow0 + t]
    for i in range(g.row_lo[oh], g.row_hi[oh]):
        for j in range(g.kw - 1, -1, -1):
            row = gin + (g.row_start[oh] + i * g.dh) * g.width + g.col_start[ow0] + j * g.dw
            for t in range(n):
                row[t * sw] += share[t]


cdef void _mean_back_overlap(const floating* grad, const double* div, floating* gin,
                             const Plan* g) noexcept nogil:
    """Any geometry: zero the plane, then accumulate in window order."""
    cdef Py_ssize_t oh, ow, n
    memset(gin, 0, g.height * g.width * sizeof(floating))
    for oh in range(g.out_h):
        for ow in range(g.ow_a):
            _mean_back_window(g, oh, ow, grad[ow] / <floating>div[ow], gin)
        ow = g.ow_a
        while ow < g.ow_b:
            n = min(g.ow_b - ow, <Py_ssize_t>BLOCK)
            if g.sw == 1:
                _mean_back_taps(grad, div, g, oh, ow, n, gin, 1)
            elif g.sw == 2:
                _mean_back_taps(grad, div, g, oh, ow, n, gin, 2)
            else:
                _mean_back_taps(grad, div, g, oh, ow, n, gin, g.sw)
            ow += n
        for ow in range(g.ow_b, g.out_w):
            _mean_back_window(g, oh, ow, grad[ow] / <floating>div[ow], gin)
        grad += g.out_w
        div += g.out_w


cdef void _mean_back_tiled(const floating* grad, const double* div, floating* gin,
                           const Plan* g) noexcept nogil:
    """Non-overlapping windows: write every input gradient once, no zero-fill."""
    cdef Py_ssize_t w = g.width, kh = g.kh, kw = g.kw
    cdef Py_ssize_t oh, ow, i, j, t, k
    cdef Py_ssize_t covered_w = g.out_w * kw, covered_h = g.out_h * kh
    cdef floating v
    cdef floating* r0
    cdef floating* r1
    for oh in range(g.out_h):
        r0 = gin + oh * kh * w
        if kh == 2 and kw == 2:
            r1 = r0 + w
            for t in range(g.out_w):
                k = 2 * t
                # 0 + share, as PyTorch accumulates into zeros (-0.0 becomes +0.0).
                v = grad[t] / <floating>div[t] + 0
                r0[k] = v
                r0[k + 1] = v
                r1[k] = v
                r1[k + 1] = v
        else:
            for ow in range(g.out_w):
                v = grad[ow] / <floating>div[ow] + 0
                for j in range(kw):
                    r0[ow * kw + j] = v
            for i in range(1, kh):
                for j in range(covered_w):
                    r0[i * w + j] = r0[j]
        if covered_w < w:
            for i in range(kh):
                memset(r0 + i * w + covered_w, 0, (w - covered_w) * sizeof(floating))
        grad += g.out_w
        div += g.out_w
    if covered_h < g.height:
        memset(gin + covered_h * w, 0, (g.height - covered_h) * w * sizeof(floating))


def mean_backward(const floating[:, :, ::1] grad_out, floating[:, :, ::1] grad_in,
                  const double[:, ::1] divisor,
                  const Py_ssize_t[::1] row_start, const Py_ssize_t[::1] row_lo,
                  const Py_ssize_t[::1] row_hi, const Py_ssize_t[::1] col_start,
                  const Py_ssize_t[::1] col_lo, const Py_ssize_t[::1] col_hi,
                  Py_ssize_t dil_h, Py_ssize_t dil_w, Py_ssize_t kernel_h,
                  Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                  int n_threads):
    """Spread ``grad_out[oh, ow] / divisor[oh, ow]`` over the window's input taps.

    The same ``divisor`` array as the forward, so the two can never disagree.
    ``grad_in`` need not be initialised: every element is written.
    """
    cdef Py_ssize_t planes = grad_in.shape[0], p
    cdef Py_ssize_t plane_in = grad_in.shape[1] * grad_in.shape[2]
    cdef Py_ssize_t plane_out = grad_out.shape[1] * grad_out.shape[2]
    if planes == 0 or plane_in == 0:
        return
    cdef Plan g = _plan(grad_in.shape[1], grad_in.shape[2], grad_out.shape[1],
                        grad_out.shape[2], row_start, row_lo, row_hi, col_start,
                        col_lo, col_hi, kernel_h, kernel_w, stride_h, stride_w,
                        dil_h, dil_w)
    cdef bint tiled = _tiled(&g)
    cdef const floating* gp = &grad_out[0, 0, 0]
    cdef floating* xp = &grad_in[0, 0, 0]
    cdef const double* dp = &divisor[0, 0]
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            if tiled:
                _mean_back_tiled(gp + p * plane_out, dp, xp + p * plane_in, &g)
            else:
                _mean_back_overlap(gp + p * plane_out, dp, xp + p * plane_in, &g)
