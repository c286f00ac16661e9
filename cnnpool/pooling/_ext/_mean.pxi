# Mean pooling: forward (direct 2x2, panels, flat 3x3, scalar) and backward.
# Included by _kernels.pyx (see its docstring); not a module of its own.


# --------------------------------------------------------------------------- mean
#
# PyTorch's arithmetic: the sum starts at 0 and adds the input taps in
# row-major window order, in the input's own precision, then is divided by
# the divisor (a small integer, exact in float32).  Dividing in float32 by
# float32(divisor) gives the same bits as dividing in float64 and rounding.

cdef void _mean_window(const floating* x, const Plan* g, const double* div,
                       Py_ssize_t oh, Py_ssize_t ow, floating* out) noexcept nogil:
    """One window with range lookups (the scalar mode)."""
    cdef Py_ssize_t i, j, ih
    cdef floating total = 0
    for i in range(g.row_lo[oh], g.row_hi[oh]):
        ih = g.row_start[oh] + i * g.dh
        for j in range(g.col_lo[ow], g.col_hi[ow]):
            total = total + x[ih * g.width + g.col_start[ow] + j * g.dw]
    out[ow] = total / <floating>div[ow]


cdef inline void _mean_2x2s2(const floating* x, const Plan* g, const double* div,
                             Py_ssize_t oh, floating* o) noexcept nogil:
    """Row ``oh`` of 2x2 stride-2 mean, in place."""
    cdef const floating* r0 = x + g.row_start[oh] * g.width
    if floating is double:
        cnnpool_mean_2x2_row_d(r0, r0 + g.width, div, o, g.out_w)
    else:
        cnnpool_mean_2x2_row_f(r0, r0 + g.width, div, o, g.out_w)


cdef void _mean_panel_taps(const Plan* g, Work* ws, Py_ssize_t t0, Py_ssize_t n,
                           floating* total) noexcept nogil:
    """Sums of windows ``[t0, t0 + n)`` of one output row, tap by tap."""
    cdef Py_ssize_t i, j, t
    cdef const floating* r
    for t in range(n):
        total[t] = 0
    for i in range(g.kh):
        for j in range(g.kw):
            r = <floating*>ws.rows[i] + g.tap_col[j] + t0
            for t in range(n):
                total[t] = total[t] + r[t]


cdef void _mean_panel_3x3s2(const Plan* g, Work* ws, Py_ssize_t t0, Py_ssize_t n,
                            floating* total) noexcept nogil:
    """Sums of windows ``[t0, t0 + n)`` of one output row, 3x3 stride 2, fused."""
    cdef Py_ssize_t span = g.span, t
    cdef const floating* e0 = <floating*>ws.rows[0] + t0
    cdef const floating* e1 = <floating*>ws.rows[1] + t0
    cdef const floating* e2 = <floating*>ws.rows[2] + t0
    cdef const floating* o0 = e0 + span
    cdef const floating* o1 = e1 + span
    cdef const floating* o2 = e2 + span
    cdef floating s
    for t in range(n):
        s = 0
        s = s + e0[t]
        s = s + o0[t]
        s = s + e0[t + 1]
        s = s + e1[t]
        s = s + o1[t]
        s = s + e1[t + 1]
        s = s + e2[t]
        s = s + o2[t]
        s = s + e2[t + 1]
        total[t] = s


cdef void _mean_panel_row(const Plan* g, Work* ws, const double* div,
                          floating* out) noexcept nogil:
    """One output row from its panels, BLOCK windows at a time."""
    cdef floating total[BLOCK]
    cdef Py_ssize_t t0 = 0, t, n
    while t0 < g.out_w:
        n = min(g.n8 - t0, <Py_ssize_t>BLOCK)
        if g.fused3:
            _mean_panel_3x3s2(g, ws, t0, n, total)
        else:
            _mean_panel_taps(g, ws, t0, n, total)
        for t in range(min(n, g.out_w - t0)):
            out[t0 + t] = total[t] / <floating>div[t0 + t]
        t0 += n


cdef void _mean_flat3(const floating* x, floating* out, const double* div, const Plan* g,
                      Work* ws) noexcept nogil:
    """3x3 stride 2 padding 1 on an even plane (``W = 2*OW``, ``H = 2*OH``).

    One flat pass splits the plane into its three tap columns: for flat
    window column ``k = r*OW + t`` of input row ``r``, ``left[k]`` is
    input column ``2t - 1`` (0 for the padding at ``t = 0``), ``mid[k]``
    column ``2t`` and ``right[k]`` column ``2t + 1``.  Each output row then
    sums its 9 taps in row-major order with unit-stride loads; the padding
    row above the first window adds nothing (PyTorch skips padded taps;
    adding +0.0 to a sum that started at +0.0 changes no bits).
    """
    cdef Py_ssize_t n_out = g.out_w, n = g.height * g.out_w, k, r, oh, t
    cdef floating* left = <floating*>ws.flat
    cdef floating* mid = left + n
    cdef floating* right = mid + n
    cdef floating total
    for k in range(n):
        mid[k] = x[2 * k]
        right[k] = x[2 * k + 1]
    for k in range(1, n):
        left[k] = right[k - 1]
    for r in range(g.height):
        left[r * n_out] = 0
    for oh in range(g.out_h):
        k = 2 * oh * n_out
        if oh > 0:
            k -= n_out
            for t in range(n_out):
                total = 0
                total = total + left[k + t]
                total = total + mid[k + t]
                total = total + right[k + t]
                total = total + left[k + n_out + t]
                total = total + mid[k + n_out + t]
                total = total + right[k + n_out + t]
                total = total + left[k + 2 * n_out + t]
                total = total + mid[k + 2 * n_out + t]
                total = total + right[k + 2 * n_out + t]
                out[t] = total / <floating>div[t]
        else:
            for t in range(n_out):
                total = 0
                total = total + left[k + t]
                total = total + mid[k + t]
                total = total + right[k + t]
                total = total + left[k + n_out + t]
                total = total + mid[k + n_out + t]
                total = total + right[k + n_out + t]
                out[t] = total / <floating>div[t]
        out += n_out
        div += n_out


cdef void _mean_plane(const floating* x, floating* out, const double* div, const Plan* g,
                      Work* ws) noexcept nogil:
    cdef Py_ssize_t oh, ow
    if g.flat3:
        _mean_flat3(x, out, div, g, ws)
        return
    if g.mode == PANELS:
        _start_panels(g, ws, <floating>0)
    for oh in range(g.out_h):
        if g.mode == DIRECT_2X2:
            _mean_2x2s2(x, g, div, oh, out)
        elif g.mode == PANELS:
            _panel_rows(x, g, ws, oh, <floating>0)
            _mean_panel_row(g, ws, div, out)
        else:
            for ow in range(g.out_w):
                _mean_window(x, g, div, oh, ow, out)
        out += g.out_w
        div += g.out_w


def mean_forward(x, out, divisor, windows, Py_ssize_t dil_h, Py_ssize_t dil_w,
                 Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                 Py_ssize_t stride_w, int n_threads):
    """Sum of each window's input taps divided by ``divisor[oh, ow]``.

    ``x`` is (P, H, W) and ``out`` (P, OH, OW), float32 or float64 alike;
    ``divisor`` is float64 (OH, OW); ``windows`` is ``PoolGeometry.windows``.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef cnp.ndarray ao = checked(out, "out", 3, typenum, True)
    _same_planes(ax, ao, "x", "out")
    cdef cnp.ndarray ad = _divisor(divisor, ao)
    cdef Plan g
    if not _plan_call(&g, ax, ao, "x", "out", False, windows, kernel_h, kernel_w,
                      stride_h, stride_w, dil_h, dil_w):
        return
    cdef Py_ssize_t planes = ax.shape[0]
    cdef const double* dp = <const double*>cnp.PyArray_DATA(ad)
    if typenum == cnp.NPY_FLOAT32:
        _mean_forward(<const float*>cnp.PyArray_DATA(ax), <float*>cnp.PyArray_DATA(ao), dp,
                      &g, planes, n_threads)
    else:
        _mean_forward(<const double*>cnp.PyArray_DATA(ax), <double*>cnp.PyArray_DATA(ao), dp,
                      &g, planes, n_threads)


cdef int _mean_forward(const floating* x, floating* out, const double* div, Plan* g,
                       Py_ssize_t planes, int n_threads) except -1:
    cdef int failed = 0
    cdef int* failed_p = &failed
    if g.mode == PANELS and not _plan_tables(g):
        raise MemoryError("no memory for the pooling plan")
    with nogil:
        if n_threads > 1:
            with parallel(num_threads=n_threads):
                _mean_forward_share(x, out, div, g, planes, failed_p)
        else:
            _mean_forward_share(x, out, div, g, planes, failed_p)
    _plan_free(g)
    if failed:
        raise MemoryError("mean_forward: no memory for the row panels")
    return 0


cdef void _mean_forward_share(const floating* x, floating* out, const double* div,
                              const Plan* g, Py_ssize_t planes, int* failed) noexcept nogil:
    """This thread's share of the planes (all of them outside a parallel block)."""
    cdef Py_ssize_t p, lo, hi
    cdef Py_ssize_t plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    cnnpool_share(planes, &lo, &hi)
    cdef Work ws = _work_new(g, sizeof(floating), False)
    if g.mode == PANELS and not _work_ok(g, &ws, False):
        failed[0] = 1
    for p in range(lo, hi):
        if not failed[0]:
            _mean_plane(x + p * plane_in, out + p * plane_out, div, g, &ws)
    _work_free(&ws)


cdef void _mean_back_tiled(const floating* grad, const double* div, floating* gin,
                           const Plan* g) noexcept nogil:
    """Non-overlapping windows: write every input gradient once, no zero-fill."""
    cdef Py_ssize_t w = g.width, kh = g.kh, kw = g.kw
    cdef Py_ssize_t oh, ow, i, j, t, k, done
    cdef Py_ssize_t covered_w = g.out_w * kw, covered_h = g.out_h * kh
    cdef floating v
    cdef floating* r0
    cdef floating* r1
    for oh in range(g.out_h):
        r0 = gin + oh * kh * w
        if kh == 2 and kw == 2:
            r1 = r0 + w
            done = 0
            if g.stream:  # 64-byte aligned rows: streaming stores, in C
                if floating is double:
                    done = cnnpool_mean_back_2x2_stream_d(grad, div, r0, r1, g.out_w)
                else:
                    done = cnnpool_mean_back_2x2_stream_f(grad, div, r0, r1, g.out_w)
            for t in range(done, g.out_w):
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
    if g.stream:
        cnnpool_stream_fence()


cdef void _mean_back_panels(const floating* grad, const double* div, floating* gin,
                            const Plan* g, Work* ws) noexcept nogil:
    """Any geometry: accumulate into zeroed panels of the whole plane, copy out once.

    Accumulator row ``ih - row0`` is a panel (padded, split into stride
    phases) of input row ``ih``, so every tap of a row of windows is one
    unit-stride pass.  Shares past the last window are 0 and land on
    columns no window covers, or in the padding, which is dropped.
    """
    cdef Py_ssize_t oh, i, j, t, c, q, ih
    cdef Py_ssize_t n = g.n8, span = g.span, sw = g.sw, size = g.sw * g.span
    cdef floating* acc = <floating*>ws.acc
    cdef floating* share = <floating*>ws.best
    cdef floating* arow
    cdef floating* r
    cdef floating* dst
    memset(acc, 0, g.acc_rows * size * sizeof(floating))
    for t in range(g.out_w, n):
        share[t] = 0
    for oh in range(g.out_h):
        for t in range(g.out_w):
            share[t] = grad[t] / <floating>div[t]
        for i in range(g.kh):
            arow = acc + (g.row_start[oh] + i * g.dh - g.row0) * size
            for j in range(g.kw - 1, -1, -1):
                r = arow + g.tap_col[j]
                for t in range(n):
                    r[t] += share[t]
        grad += g.out_w
        div += g.out_w
    for ih in range(g.height):
        dst = gin + ih * g.width
        if ih - g.row0 >= g.acc_rows:
            memset(dst, 0, g.width * sizeof(floating))
            continue
        arow = acc + (ih - g.row0) * size
        if g.col0 + span * sw < g.width:  # columns right of every window
            memset(dst + g.col0 + span * sw, 0,
                   (g.width - g.col0 - span * sw) * sizeof(floating))
        for q in range(sw):
            r = arow + q * span
            c = g.col0 + q
            for t in range(g.phase_lo[q], g.phase_hi[q]):
                dst[c + t * sw] = r[t]


cdef void _mean_back_flat3(const floating* grad, const double* div, floating* gin,
                           const Plan* g, Work* ws) noexcept nogil:
    """3x3 stride 2 padding 1 on an even plane: every input gradient written once.

    Input row ``2m`` lies in window row ``m`` only, row ``2m + 1`` in
    window rows ``m`` and ``m + 1`` (likewise for columns), so each input
    element sums 1, 2 or 4 shares, and does so here in row-major window
    order from 0, as PyTorch's accumulation into zeros.  The shares have a
    row and a column of zeros past the last window: adding +0.0 to a sum
    that started at +0.0 changes no bits.  No zero-fill, no accumulator.
    """
    cdef Py_ssize_t n_out = g.out_w, st = g.out_w + 1, w = g.width, oh, t, m
    cdef floating* share = <floating*>ws.flat
    cdef const floating* s0
    cdef const floating* s1
    cdef floating* r0
    cdef floating* r1
    cdef floating a
    for oh in range(g.out_h):
        for t in range(n_out):
            share[oh * st + t] = grad[t] / <floating>div[t]
        share[oh * st + n_out] = 0
        grad += n_out
        div += n_out
    for t in range(st):
        share[g.out_h * st + t] = 0
    for m in range(g.out_h):
        s0 = share + m * st
        s1 = s0 + st
        r0 = gin + 2 * m * w
        r1 = r0 + w
        for t in range(n_out):
            a = 0
            a = a + s0[t]
            r0[2 * t] = a
            r0[2 * t + 1] = a + s0[t + 1]
        for t in range(n_out):
            a = 0
            a = a + s0[t]
            r1[2 * t] = a + s1[t]
            a = a + s0[t + 1]
            a = a + s1[t]
            r1[2 * t + 1] = a + s1[t + 1]


cdef void _mean_back_scalar(const floating* grad, const double* div, floating* gin,
                            const Plan* g) noexcept nogil:
    """Any geometry, window by window with range lookups (the scalar mode)."""
    cdef Py_ssize_t oh, ow, i, j, ih
    cdef floating share
    memset(gin, 0, g.height * g.width * sizeof(floating))
    for oh in range(g.out_h):
        for ow in range(g.out_w):
            share = grad[ow] / <floating>div[ow]
            for i in range(g.row_lo[oh], g.row_hi[oh]):
                ih = g.row_start[oh] + i * g.dh
                for j in range(g.col_lo[ow], g.col_hi[ow]):
                    gin[ih * g.width + g.col_start[ow] + j * g.dw] += share
        grad += g.out_w
        div += g.out_w


def mean_backward(grad_out, grad_in, divisor, windows, Py_ssize_t dil_h, Py_ssize_t dil_w,
                  Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                  Py_ssize_t stride_w, int n_threads):
    """Spread ``grad_out[oh, ow] / divisor[oh, ow]`` over the window's input taps.

    The same ``divisor`` array as the forward, so the two can never disagree.
    ``grad_out`` is (P, OH, OW), ``grad_in`` (P, H, W), float32 or float64
    alike; ``grad_in`` need not be initialised: every element is written.
    """
    cdef int typenum = float_type(grad_out, "grad_out")
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 3, typenum, False)
    cdef cnp.ndarray ai = checked(grad_in, "grad_in", 3, typenum, True)
    _same_planes(ai, ag, "grad_in", "grad_out")
    cdef cnp.ndarray ad = _divisor(divisor, ag)
    cdef Plan g
    if not _plan_call(&g, ai, ag, "grad_in", "grad_out", True, windows, kernel_h, kernel_w,
                      stride_h, stride_w, dil_h, dil_w):
        return
    cdef Py_ssize_t planes = ai.shape[0]
    cdef const double* dp = <const double*>cnp.PyArray_DATA(ad)
    if typenum == cnp.NPY_FLOAT32:
        _mean_backward(<const float*>cnp.PyArray_DATA(ag), dp, <float*>cnp.PyArray_DATA(ai),
                       &g, planes, n_threads)
    else:
        _mean_backward(<const double*>cnp.PyArray_DATA(ag), dp, <double*>cnp.PyArray_DATA(ai),
                       &g, planes, n_threads)


cdef int _mean_backward(const floating* grad, const double* div, floating* gin, Plan* g,
                        Py_ssize_t planes, int n_threads) except -1:
    cdef int failed = 0
    cdef int* failed_p = &failed
    g.stream = _streams(g, planes, gin, sizeof(floating))
    if not g.tiled and g.mode == PANELS and not _plan_tables(g):
        raise MemoryError("no memory for the pooling plan")
    with nogil:
        if n_threads > 1:
            with parallel(num_threads=n_threads):
                _mean_backward_share(grad, div, gin, g, planes, failed_p)
        else:
            _mean_backward_share(grad, div, gin, g, planes, failed_p)
    _plan_free(g)
    if failed:
        raise MemoryError("mean_backward: no memory for the accumulator")
    return 0


cdef void _mean_backward_share(const floating* grad, const double* div, floating* gin,
                               const Plan* g, Py_ssize_t planes, int* failed) noexcept nogil:
    """This thread's share of the planes (all of them outside a parallel block)."""
    cdef Py_ssize_t p, lo, hi
    cdef Py_ssize_t plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    cdef Work ws
    cnnpool_share(planes, &lo, &hi)
    if g.tiled:  # no scratch
        for p in range(lo, hi):
            _mean_back_tiled(grad + p * plane_out, div, gin + p * plane_in, g)
        return
    ws = _work_new(g, sizeof(floating), True)
    if g.mode == PANELS and not _work_ok(g, &ws, True):
        failed[0] = 1
    for p in range(lo, hi):
        if failed[0]:
            break
        elif g.flat3:
            _mean_back_flat3(grad + p * plane_out, div, gin + p * plane_in, g, &ws)
        elif g.mode == PANELS:
            _mean_back_panels(grad + p * plane_out, div, gin + p * plane_in, g, &ws)
        else:
            _mean_back_scalar(grad + p * plane_out, div, gin + p * plane_in, g)
    _work_free(&ws)
