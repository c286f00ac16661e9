# Max pooling: forward (direct 2x2, panels, flat 3x3, scalar) and backward.
# Included by _kernels.pyx (see its docstring); not a module of its own.


# ---------------------------------------------------------------------------- max
#
# PyTorch's rule, tap by tap in row-major window order: a tap replaces the
# current best when it is greater, or when it is NaN.  So the first of equal
# maxima wins, the last of several NaNs wins, and a window of -inf's reports
# its first input tap.  Starting from "best = first tap" is the same as
# PyTorch's "best = -inf, index = first input tap": the first tap always
# replaces -inf unless it is -inf itself, and then only the index differs,
# which the index pass fixes for any window whose maximum is -inf.
#
# The forward saves each winner's tap number (``tap_t``), not its flat
# index: the backward turns it back into a position with the window's
# origin, which it knows from the plan.

cdef inline bint _wins(floating v, floating best) noexcept nogil:
    return (v > best) | (v != v)


cdef inline Py_ssize_t _first_inside(const Plan* g, Py_ssize_t oh,
                                     Py_ssize_t ow) noexcept nogil:
    """Flat index of the first input tap of window (oh, ow)."""
    return ((g.row_start[oh] + g.row_lo[oh] * g.dh) * g.width
            + g.col_start[ow] + g.col_lo[ow] * g.dw)


cdef inline Py_ssize_t _first_tap(const Plan* g, Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    """Tap number of the first input tap of window (oh, ow)."""
    return g.row_lo[oh] * g.kw + g.col_lo[ow]


cdef void _max_window(const floating* x, const Plan* g, Py_ssize_t oh, Py_ssize_t ow,
                      floating* out, tap_t* ind) noexcept nogil:
    """One window with range lookups (the scalar mode)."""
    cdef Py_ssize_t i, j, k, best_tap = _first_tap(g, oh, ow)
    cdef floating v, best = x[_first_inside(g, oh, ow)]
    for i in range(g.row_lo[oh], g.row_hi[oh]):
        for j in range(g.col_lo[ow], g.col_hi[ow]):
            k = (g.row_start[oh] + i * g.dh) * g.width + g.col_start[ow] + j * g.dw
            v = x[k]
            if _wins(v, best):
                best = v
                best_tap = i * g.kw + j
    out[ow] = best
    ind[ow] = <tap_t>best_tap


cdef inline void _max_2x2s2(const floating* x, const Plan* g, Py_ssize_t oh, Py_ssize_t ow0,
                            Py_ssize_t n, floating* o, tap_t* ind) noexcept nogil:
    """Windows ``[ow0, ow0 + n)`` of row ``oh``, 2x2 stride 2 in place (``n <= BLOCK``)."""
    cdef floating offset[BLOCK]
    cdef Py_ssize_t w = g.width
    cdef const floating* r0 = x + g.row_start[oh] * w + g.col_start[ow0]
    cdef const floating* r1 = r0 + w
    cdef Py_ssize_t t, k
    cdef floating best, v, off
    o += ow0
    ind += ow0
    for t in range(n):
        # The winner's tap number 0..3, kept in the input's type: gcc
        # vectorises selects of equal width only.
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
            off = 2
        v = r1[k + 1]
        if _wins(v, best):
            best = v
            off = 3
        o[t] = best
        offset[t] = off
    for t in range(n):
        ind[t] = <tap_t>offset[t]


# The panel loops keep their results in stack arrays of BLOCK windows: gcc
# then knows they alias nothing and vectorises without run-time alias
# checks (it gives up beyond 10 of them).  BLOCK is a multiple of 8, so a
# chunk of a row rounded up to 8 windows never leaves a scalar remainder.
# Tap numbers are exact in float32 (the plan sends windows of more than
# 2**24 taps to the scalar mode).

cdef void _max_panel_taps(const Plan* g, Work* ws, Py_ssize_t t0, Py_ssize_t n,
                          floating* best, floating* offset) noexcept nogil:
    """Windows ``[t0, t0 + n)`` of one output row, tap by tap over its panels."""
    cdef Py_ssize_t i, j, t
    cdef const floating* r = <floating*>ws.rows[0] + t0
    cdef floating v, b, o, tap
    for t in range(n):
        best[t] = r[t]
        offset[t] = 0
    for i in range(g.kh):
        for j in range(1 if i == 0 else 0, g.kw):
            r = <floating*>ws.rows[i] + g.tap_col[j] + t0
            tap = <floating>(i * g.kw + j)
            for t in range(n):
                # Unconditional stores: gcc if-converts (vectorises) only those.
                v = r[t]
                b = best[t]
                o = offset[t]
                if _wins(v, b):
                    b = v
                    o = tap
                best[t] = b
                offset[t] = o


cdef void _max_panel_3x3s2(const Plan* g, Work* ws, Py_ssize_t t0, Py_ssize_t n,
                           floating* best, floating* offset) noexcept nogil:
    """Windows ``[t0, t0 + n)`` of one output row, 3x3 stride 2, fused.

    Phase 0 of a panel holds the even columns (taps 0 and 2 of a window),
    phase 1 the odd ones (tap 1).  Only constants inside the ifs: any
    arithmetic there stops gcc's if-conversion, and with it the
    vectorisation.
    """
    cdef Py_ssize_t span = g.span, t
    cdef const floating* e0 = <floating*>ws.rows[0] + t0
    cdef const floating* e1 = <floating*>ws.rows[1] + t0
    cdef const floating* e2 = <floating*>ws.rows[2] + t0
    cdef const floating* o0 = e0 + span
    cdef const floating* o1 = e1 + span
    cdef const floating* o2 = e2 + span
    cdef floating b, v, off
    for t in range(n):
        b = e0[t]
        off = 0
        v = o0[t]
        if _wins(v, b):
            b = v
            off = 1
        v = e0[t + 1]
        if _wins(v, b):
            b = v
            off = 2
        v = e1[t]
        if _wins(v, b):
            b = v
            off = 3
        v = o1[t]
        if _wins(v, b):
            b = v
            off = 4
        v = e1[t + 1]
        if _wins(v, b):
            b = v
            off = 5
        v = e2[t]
        if _wins(v, b):
            b = v
            off = 6
        v = o2[t]
        if _wins(v, b):
            b = v
            off = 7
        v = e2[t + 1]
        if _wins(v, b):
            b = v
            off = 8
        best[t] = b
        offset[t] = off


cdef void _max_panel_row(const Plan* g, Work* ws, Py_ssize_t oh, floating* out,
                         tap_t* ind) noexcept nogil:
    """One output row from its panels, BLOCK windows at a time."""
    cdef floating best[BLOCK]
    cdef floating offset[BLOCK]
    cdef Py_ssize_t t0, t, n, ow
    cdef floating v
    t0 = 0
    while t0 < g.out_w:
        n = min(g.n8 - t0, <Py_ssize_t>BLOCK)
        if g.fused3:
            _max_panel_3x3s2(g, ws, t0, n, best, offset)
        else:
            _max_panel_taps(g, ws, t0, n, best, offset)
        for t in range(min(n, g.out_w - t0)):
            ow = t0 + t
            v = best[t]
            out[ow] = v
            if v == -INFINITY:
                ind[ow] = <tap_t>_first_tap(g, oh, ow)  # all inside taps -inf (rare)
            else:
                ind[ow] = <tap_t>offset[t]
        t0 += n


cdef void _max_flat3(const floating* x, floating* out, tap_t* ind, const Plan* g,
                     Work* ws) noexcept nogil:
    """3x3 stride 2 padding 1 on an even plane: rows first, then columns of rows.

    The rule "a tap wins when greater, or when NaN" picks the last NaN of
    the window if it has one, else its first maximum (row-major order).
    Both come out of a two-stage scan: the winner of each input row's
    three taps (last NaN, else first maximum) and then, scanning the
    window's three row winners in order with the same rule, the row that
    holds the window's last NaN, else the first row reaching the maximum.
    Each input row's horizontal winner is computed once and shared by the
    two output rows whose windows overlap on it.

    Stage 1 runs over the whole plane as one flat loop: with ``W = 2*OW``,
    window column ``t`` of input row ``r`` is flat element ``k = r*OW + t``
    and reads input ``2k - 1, 2k, 2k + 1``; window column 0 (whose first
    tap is padding, which never wins) is redone per row.
    """
    cdef Py_ssize_t n_out = g.out_w, n = g.height * g.out_w
    cdef Py_ssize_t k, t, oh
    cdef floating* hv = <floating*>ws.flat
    cdef floating* ho = hv + n
    cdef floating best[BLOCK]
    cdef floating offset[BLOCK]
    cdef const floating* v0
    cdef const floating* v1
    cdef const floating* v2
    cdef const floating* f0
    cdef const floating* f1
    cdef const floating* f2
    cdef floating b, v, off, col, row
    cdef bint low, win
    for k in range(1, n):
        b = x[2 * k - 1]
        off = 0
        v = x[2 * k]
        if _wins(v, b):
            b = v
            off = 1
        v = x[2 * k + 1]
        if _wins(v, b):
            b = v
            off = 2
        hv[k] = b
        ho[k] = off
    # Window column 0 of each row: its left tap is padding (in C, branch-free).
    if floating is float:
        cnnpool_flat3_row_starts_f(x, hv, ho, g.height, n_out)
    else:
        cnnpool_flat3_row_starts_d(x, hv, ho, g.height, n_out)
    for oh in range(g.out_h):
        # Window rows 2oh-1 (padding for oh = 0), 2oh, 2oh+1: tap rows 0, 1, 2.
        v1 = hv + 2 * oh * n_out
        f1 = ho + 2 * oh * n_out
        v2 = v1 + n_out
        f2 = f1 + n_out
        # Selects of loaded values and constants only: an addition inside
        # them would stop gcc's if-conversion (and the vectorisation).
        if oh == 0:
            for t in range(n_out):
                b = v1[t]
                col = f1[t]
                row = 3
                v = v2[t]
                win = _wins(v, b)
                b = v if win else b
                col = f2[t] if win else col
                row = 6 if win else row
                best[t] = b
                offset[t] = row + col
        else:
            v0 = v1 - n_out
            f0 = f1 - n_out
            for t in range(n_out):
                b = v0[t]
                col = f0[t]
                row = 0
                v = v1[t]
                win = _wins(v, b)
                b = v if win else b
                col = f1[t] if win else col
                row = 3 if win else row
                v = v2[t]
                win = _wins(v, b)
                b = v if win else b
                col = f2[t] if win else col
                row = 6 if win else row
                best[t] = b
                offset[t] = row + col
        # Stack arrays, which alias nothing: gcc vectorises the loops above.
        low = False
        for t in range(n_out):
            out[t] = best[t]
            low |= best[t] == -INFINITY
        for t in range(n_out):
            ind[t] = <tap_t>offset[t]
        if low:
            for t in range(n_out):
                if out[t] == -INFINITY:
                    ind[t] = <tap_t>_first_tap(g, oh, t)  # all inside taps -inf (rare)
        out += n_out
        ind += n_out


cdef void _max_plane(const floating* x, floating* out, tap_t* ind, const Plan* g,
                     Work* ws) noexcept nogil:
    cdef Py_ssize_t oh, ow, n
    if g.flat3:
        _max_flat3(x, out, ind, g, ws)
        return
    if g.mode == PANELS:
        _start_panels(g, ws, <floating>-INFINITY)
    for oh in range(g.out_h):
        if g.mode == DIRECT_2X2:
            ow = 0
            while ow < g.out_w:
                n = min(g.out_w - ow, <Py_ssize_t>BLOCK)
                _max_2x2s2(x, g, oh, ow, n, out, ind)
                ow += n
        elif g.mode == PANELS:
            _panel_rows(x, g, ws, oh, <floating>-INFINITY)
            _max_panel_row(g, ws, oh, out, ind)
        else:
            for ow in range(g.out_w):
                _max_window(x, g, oh, ow, out, ind)
        out += g.out_w
        ind += g.out_w


cdef _check_taps(Py_ssize_t kernel_h, Py_ssize_t kernel_w, bint narrow):
    """uint8 tap numbers only for windows of at most 255 taps."""
    if narrow and kernel_h * kernel_w > 255:
        raise ValueError(
            f"uint8 tap numbers hold windows of at most 255 taps, got a "
            f"{kernel_h}x{kernel_w} kernel; pass int64 taps")


def max_forward(x, out, taps, windows, Py_ssize_t dil_h, Py_ssize_t dil_w,
                Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                Py_ssize_t stride_w, int n_threads):
    """Max over each window, and the winner's tap number ``i * kernel_w + j``.

    ``x`` is (P, H, W), ``out`` and ``taps`` are (P, OH, OW), C-contiguous;
    ``x`` and ``out`` float32 or float64 alike, ``taps`` uint8 (windows of
    at most 255 taps) or int64; ``windows`` is ``PoolGeometry.windows``.
    """
    cdef int typenum = float_type(x, "x")
    cdef int tap_typenum = _tap_type(taps)
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef cnp.ndarray ao = checked(out, "out", 3, typenum, True)
    cdef cnp.ndarray at = checked(taps, "taps", 3, tap_typenum, True)
    _same_planes(ax, ao, "x", "out")
    _same_shape(ao, at, "out", "taps")
    _check_taps(kernel_h, kernel_w, tap_typenum == cnp.NPY_UINT8)
    cdef Plan g
    if not _plan_call(&g, ax, ao, "x", "out", False, windows, kernel_h, kernel_w,
                      stride_h, stride_w, dil_h, dil_w):
        return
    cdef Py_ssize_t planes = ax.shape[0]
    cdef void* xp = cnp.PyArray_DATA(ax)
    cdef void* op = cnp.PyArray_DATA(ao)
    cdef void* tp = cnp.PyArray_DATA(at)
    if typenum == cnp.NPY_FLOAT32:
        if tap_typenum == cnp.NPY_UINT8:
            _max_forward(<const float*>xp, <float*>op, <uint8_t*>tp, &g, planes, n_threads)
        else:
            _max_forward(<const float*>xp, <float*>op, <int64_t*>tp, &g, planes, n_threads)
    elif tap_typenum == cnp.NPY_UINT8:
        _max_forward(<const double*>xp, <double*>op, <uint8_t*>tp, &g, planes, n_threads)
    else:
        _max_forward(<const double*>xp, <double*>op, <int64_t*>tp, &g, planes, n_threads)


cdef int _max_forward(const floating* x, floating* out, tap_t* ind, Plan* g,
                      Py_ssize_t planes, int n_threads) except -1:
    cdef int failed = 0
    cdef int* failed_p = &failed
    if g.mode == PANELS and not _plan_tables(g):
        raise MemoryError("no memory for the pooling plan")
    with nogil:
        if n_threads > 1:
            with parallel(num_threads=n_threads):
                _max_forward_share(x, out, ind, g, planes, failed_p)
        else:
            _max_forward_share(x, out, ind, g, planes, failed_p)
    _plan_free(g)
    if failed:
        raise MemoryError("max_forward: no memory for the row panels")
    return 0


cdef void _max_forward_share(const floating* x, floating* out, tap_t* ind, const Plan* g,
                             Py_ssize_t planes, int* failed) noexcept nogil:
    """This thread's share of the planes (all of them outside a parallel block)."""
    cdef Py_ssize_t p, lo, hi
    cdef Py_ssize_t plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    cnnpool_share(planes, &lo, &hi)
    cdef Work ws = _work_new(g, sizeof(floating), False)
    if g.mode == PANELS and not _work_ok(g, &ws, False):
        failed[0] = 1
    for p in range(lo, hi):
        if not failed[0]:
            _max_plane(x + p * plane_in, out + p * plane_out, ind + p * plane_out, g, &ws)
    _work_free(&ws)


cdef inline void _max_back_2x2(const floating* grad, const tap_t* taps, floating* gin,
                               Py_ssize_t n, Py_ssize_t w, bint stream) noexcept nogil:
    """One output row of non-overlapping 2x2 max backward: write all 4 taps.

    The tap numbers are first converted, BLOCK at a time, into a stack
    array of the gradient's own type: the four selects are then
    all-float, one vectorised pass (a uint8 pointer may alias the
    gradient, and gcc does not vectorise selects on mixed widths).  With
    ``stream`` (64-byte aligned rows) the same selects are written with
    streaming stores, in C.
    """
    cdef floating offset[BLOCK]
    cdef floating* r0
    cdef floating* r1
    cdef Py_ssize_t t, k, t0 = 0, m, done
    cdef floating v, off
    while t0 < n:
        m = min(n - t0, <Py_ssize_t>BLOCK)
        r0 = gin + 2 * t0
        r1 = r0 + w
        for t in range(m):
            offset[t] = <floating>taps[t0 + t]
        done = 0
        if stream:
            if floating is double:
                done = cnnpool_max_back_2x2_stream_d(grad + t0, offset, r0, r1, m)
            else:
                done = cnnpool_max_back_2x2_stream_f(grad + t0, offset, r0, r1, m)
        for t in range(done, m):
            k = 2 * t
            # 0 + v, as PyTorch accumulates into zeros (turns -0.0 into +0.0).
            v = grad[t0 + t] + 0
            off = offset[t]
            r0[k] = v if off == 0 else 0
            r0[k + 1] = v if off == 1 else 0
            r1[k] = v if off == 2 else 0
            r1[k + 1] = v if off == 3 else 0
        t0 += m


cdef void _max_back_tiled(const floating* grad, const tap_t* taps, floating* gin,
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
            _max_back_2x2(grad, taps, gin + base, g.out_w, w, g.stream)
        else:
            for i in range(kh):
                row = gin + base + i * w
                for ow in range(g.out_w):
                    v = grad[ow] + 0
                    win = <Py_ssize_t>taps[ow] - i * kw  # the winner's column if in row i
                    for j in range(kw):
                        row[ow * kw + j] = v if win == j else 0
        if covered_w < w:
            for i in range(kh):
                memset(gin + base + i * w + covered_w, 0, (w - covered_w) * sizeof(floating))
        grad += g.out_w
        taps += g.out_w
    if covered_h < g.height:
        memset(gin + covered_h * w, 0, (g.height - covered_h) * w * sizeof(floating))
    if g.stream:
        cnnpool_stream_fence()


cdef void _max_back_scatter(const floating* grad, const tap_t* taps, floating* gin,
                            const Plan* g, const Py_ssize_t* tap_offset) noexcept nogil:
    """Any geometry: add each gradient at its winner, in row-major window order.

    ``gin`` is zeroed.  The winner of window (oh, ow) is at the window's
    origin plus the offset of its tap, from the ``tap_offset`` table when
    there is one (one division pair per window otherwise).
    """
    cdef Py_ssize_t oh, ow, origin, tap
    for oh in range(g.out_h):
        origin = g.row_start[oh] * g.width
        for ow in range(g.out_w):
            tap = <Py_ssize_t>taps[ow]
            if tap_offset != NULL:
                gin[origin + g.col_start[ow] + tap_offset[tap]] += grad[ow]
            else:
                gin[origin + g.col_start[ow] + (tap // g.kw) * g.dh * g.width
                    + (tap % g.kw) * g.dw] += grad[ow]
        grad += g.out_w
        taps += g.out_w


def max_backward(grad_out, taps, grad_in, windows, Py_ssize_t dil_h, Py_ssize_t dil_w,
                 Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                 Py_ssize_t stride_w, int n_threads):
    """Route each output gradient to its window's winner.

    ``grad_out`` and ``taps`` (the forward's tap numbers) are (P, OH, OW),
    ``grad_in`` is (P, H, W) and need not be initialised: every element is
    written.  Overlapping windows can share a winner, which then receives
    the sum, added in row-major window order as in PyTorch.

    Trusted input: ``taps`` must be what :func:`max_forward` wrote for this
    very geometry (``MaxPool2d`` keeps them private and read-only).  They
    are not range-checked here: a tap number of ``kh*kw`` or more would
    address memory outside its window.
    """
    cdef int typenum = float_type(grad_out, "grad_out")
    cdef int tap_typenum = _tap_type(taps)
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 3, typenum, False)
    cdef cnp.ndarray at = checked(taps, "taps", 3, tap_typenum, False)
    cdef cnp.ndarray ai = checked(grad_in, "grad_in", 3, typenum, True)
    _same_shape(ag, at, "grad_out", "taps")
    _same_planes(ai, ag, "grad_in", "grad_out")
    _check_taps(kernel_h, kernel_w, tap_typenum == cnp.NPY_UINT8)
    cdef Plan g
    if not _plan_call(&g, ai, ag, "grad_in", "grad_out", True, windows, kernel_h, kernel_w,
                      stride_h, stride_w, dil_h, dil_w):
        return
    cdef Py_ssize_t planes = ai.shape[0]
    cdef void* gp = cnp.PyArray_DATA(ag)
    cdef void* tp = cnp.PyArray_DATA(at)
    cdef void* xp = cnp.PyArray_DATA(ai)
    if typenum == cnp.NPY_FLOAT32:
        if tap_typenum == cnp.NPY_UINT8:
            _max_backward(<const float*>gp, <const uint8_t*>tp, <float*>xp, &g, planes,
                          n_threads)
        else:
            _max_backward(<const float*>gp, <const int64_t*>tp, <float*>xp, &g, planes,
                          n_threads)
    elif tap_typenum == cnp.NPY_UINT8:
        _max_backward(<const double*>gp, <const uint8_t*>tp, <double*>xp, &g, planes,
                      n_threads)
    else:
        _max_backward(<const double*>gp, <const int64_t*>tp, <double*>xp, &g, planes,
                      n_threads)


cdef int _max_backward(const floating* grad, const tap_t* taps, floating* gin, Plan* g,
                       Py_ssize_t planes, int n_threads) except -1:
    cdef Py_ssize_t k, taps_n = g.kh * g.kw
    cdef Py_ssize_t* tap_offset = NULL
    g.stream = _streams(g, planes, gin, sizeof(floating))
    if not g.tiled and taps_n <= 65536:
        # Offset of each tap from its window's origin (integer divisions are slow).
        tap_offset = <Py_ssize_t*>malloc(taps_n * sizeof(Py_ssize_t))
        if tap_offset == NULL:
            raise MemoryError("max_backward: no memory for the tap offsets")
        for k in range(taps_n):
            tap_offset[k] = (k // g.kw) * g.dh * g.width + (k % g.kw) * g.dw
    with nogil:
        if n_threads > 1:
            with parallel(num_threads=n_threads):
                _max_backward_share(grad, taps, gin, g, tap_offset, planes)
        else:
            _max_backward_share(grad, taps, gin, g, tap_offset, planes)
    free(tap_offset)
    return 0


cdef void _max_backward_share(const floating* grad, const tap_t* taps, floating* gin,
                              const Plan* g, const Py_ssize_t* tap_offset,
                              Py_ssize_t planes) noexcept nogil:
    """This thread's share of the planes (all of them outside a parallel block)."""
    cdef Py_ssize_t p, lo, hi
    cdef Py_ssize_t plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    cnnpool_share(planes, &lo, &hi)
    for p in range(lo, hi):
        if g.tiled:
            _max_back_tiled(grad + p * plane_out, taps + p * plane_out, gin + p * plane_in, g)
        else:
            memset(gin + p * plane_in, 0, plane_in * sizeof(floating))
            _max_back_scatter(grad + p * plane_out, taps + p * plane_out, gin + p * plane_in,
                              g, tap_offset)
