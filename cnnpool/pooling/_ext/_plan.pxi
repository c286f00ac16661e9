# The planner: checks of the entry points, the Plan of a call, per-thread work space and the panels.
# Included by _kernels.pyx (see its docstring); not a module of its own.


cdef const Py_ssize_t* _windows_of(object windows, Py_ssize_t out_h,
                                   Py_ssize_t out_w) except NULL:
    """The window table of ``PoolGeometry.windows``, after checking it.

    One intp array, ``row_start, row_lo, row_hi`` (``out_h`` each) then
    ``col_start, col_lo, col_hi`` (``out_w`` each): one buffer per call
    instead of six.
    """
    cdef cnp.ndarray a = checked(windows, "windows", 1, cnp.NPY_INTP, False)
    if a.shape[0] != 3 * (out_h + out_w):
        raise ValueError(
            f"windows has {a.shape[0]} entries, but an output of (OH, OW) = "
            f"({out_h}, {out_w}) needs 3 * (OH + OW) = {3 * (out_h + out_w)}")
    return <const Py_ssize_t*>cnp.PyArray_DATA(a)


cdef int _tap_type(object taps) except -1:
    """The NumPy type number of ``taps``: uint8 or int64 tap numbers."""
    if not cnp.PyArray_Check(taps):
        raise TypeError(f"taps must be a NumPy array, got {type(taps).__name__}")
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>taps)
    if typenum != cnp.NPY_UINT8 and typenum != cnp.NPY_INT64:
        raise TypeError(f"taps must be uint8 or int64, got {taps.dtype}")
    return typenum


cdef int _same_planes(cnp.ndarray a, cnp.ndarray b, str name_a, str name_b) except -1:
    """``a`` and ``b`` (P, ., .) must hold the same number of planes."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of planes (first axis), "
            f"got shapes {dims(a)} and {dims(b)}")
    return 0


cdef int _same_shape(cnp.ndarray a, cnp.ndarray b, str name_a, str name_b) except -1:
    if dims(a) != dims(b):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {dims(a)} and {dims(b)}")
    return 0


cdef cnp.ndarray _divisor(object divisor, cnp.ndarray out):
    """The (OH, OW) float64 divisors of mean pooling, shape-checked against ``out``."""
    cdef cnp.ndarray d = checked(divisor, "divisor", 2, cnp.NPY_FLOAT64, False)
    if d.shape[0] != out.shape[1] or d.shape[1] != out.shape[2]:
        raise ValueError(
            f"divisor must have shape (OH, OW) = ({out.shape[1]}, {out.shape[2]}), "
            f"got {dims(d)}")
    return d


cdef bint _plan_call(Plan* g, cnp.ndarray planes_in, cnp.ndarray planes_out, str in_name,
                     str out_name, bint writes_input, object windows, Py_ssize_t kernel_h,
                     Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                     Py_ssize_t dil_h, Py_ssize_t dil_w) except -1:
    """Fill ``g`` for one call on (P, H, W) and (P, OH, OW) arrays whose
    planes were checked to match; False when there is nothing to write.

    ``writes_input``: the call writes the (P, H, W) side (a backward), else
    the (P, OH, OW) side (a forward).  An empty written side means nothing
    to do; an empty side that the windows would read is refused.
    """
    cdef cnp.ndarray written = planes_in if writes_input else planes_out
    if planes_in.shape[0] == 0 or written.shape[1] * written.shape[2] == 0:
        return False
    if writes_input and (planes_out.shape[1] < 1 or planes_out.shape[2] < 1):
        raise ValueError(
            f"{out_name} must have at least one window, got shape {dims(planes_out)}")
    if not writes_input and (planes_in.shape[1] < 1 or planes_in.shape[2] < 1):
        raise ValueError(
            f"{in_name} has empty planes, shape {dims(planes_in)}, but the output "
            f"{dims(planes_out)} has windows")
    g[0] = _plan(planes_in.shape[1], planes_in.shape[2], planes_out.shape[1],
                 planes_out.shape[2],
                 _windows_of(windows, planes_out.shape[1], planes_out.shape[2]),
                 kernel_h, kernel_w, stride_h, stride_w, dil_h, dil_w)
    return True


cdef bint _streams(const Plan* g, Py_ssize_t planes, const void* gin,
                   size_t itemsize) noexcept:
    """Whether a tiled backward writes its (P, H, W) output with streaming stores."""
    global streamed_calls
    cdef bint stream = (g.tiled
                        and planes * g.height * g.width * <Py_ssize_t>itemsize >= stream_min_bytes
                        and cnnpool_can_stream(gin, g.width * itemsize))
    streamed_calls += stream
    return stream


cdef Plan _plan(Py_ssize_t height, Py_ssize_t width, Py_ssize_t out_h, Py_ssize_t out_w,
                const Py_ssize_t* windows, Py_ssize_t kh, Py_ssize_t kw,
                Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw) noexcept:
    """Describe one call; the caller guarantees out_h, out_w >= 1 and that
    ``windows`` holds 3 * (out_h + out_w) entries (see _windows_of)."""
    cdef Plan g
    g.height, g.width, g.out_h, g.out_w = height, width, out_h, out_w
    g.kh, g.kw, g.sh, g.sw, g.dh, g.dw = kh, kw, sh, sw, dh, dw
    g.row_start = windows
    g.row_lo = windows + out_h
    g.row_hi = windows + 2 * out_h
    g.col_start = windows + 3 * out_h
    g.col_lo = windows + 3 * out_h + out_w
    g.col_hi = windows + 3 * out_h + 2 * out_w
    g.row0 = g.row_start[0]
    g.col0 = g.col_start[0]
    # Window starts increase, so the first and last windows show any padding.
    cdef bint inside = (g.row_lo[0] == 0 and g.row_hi[out_h - 1] == kh
                        and g.col_lo[0] == 0 and g.col_hi[out_w - 1] == kw)
    if kh == 2 and kw == 2 and sh == 2 and sw == 2 and dh == 1 and dw == 1 and inside:
        g.mode = DIRECT_2X2
    elif (kh - 1) * dh * width + (kw - 1) * dw >= (1 << 24) or kh * kw > (1 << 24) or sw > 64:
        # Windows that span that much of the plane (the panels cache every
        # row a window spans), tap numbers not exact in float32, or panels
        # of that many stride phases that would be mostly waste.
        g.mode = SCALAR
    else:
        g.mode = PANELS
    g.fused3 = kh == 3 and kw == 3 and sh == 2 and sw == 2 and dh == 1 and dw == 1
    g.flat3 = (g.fused3 and g.mode == PANELS and g.row0 == -1 and g.col0 == -1
               and height == 2 * out_h and width == 2 * out_w and out_w <= BLOCK)
    g.tiled = (sh == kh and sw == kw and dh == 1 and dw == 1 and g.row0 == 0
               and g.col0 == 0 and out_h * kh <= height and out_w * kw <= width)
    g.stream = False  # set by the callers that stream
    g.n8 = (out_w + 7) // 8 * 8
    g.span = g.n8 + (kw - 1) * dw // sw
    g.slots = (kh - 1) * dh + 1
    g.acc_rows = (out_h - 1) * sh + (kh - 1) * dh + 1
    g.phase_lo = g.phase_hi = g.tap_col = g.row_slot = NULL
    return g


cdef bint _plan_tables(Plan* g) noexcept nogil:
    """Fill the plan's tables (one allocation, freed by _plan_free); False if no memory."""
    cdef Py_ssize_t q, j, c, a, b, lo, hi, ih, sw = g.sw
    g.phase_lo = <Py_ssize_t*>malloc((2 * sw + g.kw + g.height) * sizeof(Py_ssize_t))
    if g.phase_lo == NULL:
        return False
    g.phase_hi = g.phase_lo + sw
    g.tap_col = g.phase_hi + sw
    g.row_slot = g.tap_col + g.kw
    for q in range(sw):
        # Element t of phase q is input column col0 + q + t*sw.
        a = -g.col0 - q
        b = g.width - g.col0 - q
        lo = 0 if a <= 0 else (a + sw - 1) // sw
        hi = 0 if b <= 0 else (b + sw - 1) // sw
        hi = min(hi, g.span)
        g.phase_lo[q] = min(lo, hi)
        g.phase_hi[q] = hi
    for j in range(g.kw):
        c = j * g.dw
        g.tap_col[j] = (c % sw) * g.span + c // sw
    for ih in range(g.height):
        g.row_slot[ih] = ih % g.slots
    return True


cdef void _plan_free(Plan* g) noexcept nogil:
    free(g.phase_lo)
    g.phase_lo = NULL


cdef Work _work_new(const Plan* g, size_t item, bint accumulator) noexcept nogil:
    """One thread's scratch (check it with ``_work_ok``).

    Returned by value: inside a ``parallel()`` block, assigning it makes
    the struct private to each thread.
    """
    cdef Work ws
    cdef size_t panel = g.sw * g.span * item
    ws.flat = NULL
    if g.flat3:
        ws.flat = malloc((3 * g.height * g.out_w + (g.out_h + 1) * (g.out_w + 1)) * item)
    if g.mode != PANELS:  # the other modes need no scratch
        ws.panels = ws.fill = ws.best = ws.acc = NULL
        ws.tags = NULL
        ws.rows = NULL
        return ws
    ws.panels = malloc(g.slots * panel)
    ws.fill = malloc(panel)
    ws.tags = <Py_ssize_t*>malloc(g.slots * sizeof(Py_ssize_t))
    ws.rows = <void**>malloc(g.kh * sizeof(void*))
    ws.best = malloc(g.n8 * item)
    ws.acc = malloc(g.acc_rows * panel) if accumulator else NULL
    return ws


cdef bint _work_ok(const Plan* g, const Work* ws, bint accumulator) noexcept nogil:
    return not (ws.panels == NULL or ws.fill == NULL or ws.tags == NULL
                or ws.rows == NULL or ws.best == NULL
                or (accumulator and ws.acc == NULL) or (g.flat3 and ws.flat == NULL))


cdef void _work_free(Work* ws) noexcept nogil:
    free(ws.panels)
    free(ws.fill)
    free(ws.tags)
    free(ws.rows)
    free(ws.best)
    free(ws.acc)
    free(ws.flat)


# ------------------------------------------------------------------- panels

cdef void _build_panel(const floating* src, const Plan* g, floating* panel,
                       floating pad) noexcept nogil:
    """Copy input row ``src`` into ``panel``: padded, split into stride phases."""
    cdef Py_ssize_t q, t, lo, hi, sw = g.sw, span = g.span
    cdef floating* dst
    cdef floating* odd
    cdef const floating* s
    if sw == 2 and g.phase_lo[0] == g.phase_lo[1] and g.phase_hi[0] == g.phase_hi[1]:
        # Both phases in one pass (the common stride 2 with even padding).
        lo = g.phase_lo[0]
        hi = g.phase_hi[0]
        odd = panel + span
        for t in range(lo):
            panel[t] = pad
            odd[t] = pad
        s = src + (g.col0 + lo * 2)
        for t in range(hi - lo):
            panel[lo + t] = s[2 * t]
            odd[lo + t] = s[2 * t + 1]
        for t in range(hi, span):
            panel[t] = pad
            odd[t] = pad
        return
    for q in range(sw):
        lo = g.phase_lo[q]
        hi = g.phase_hi[q]
        dst = panel + q * span
        for t in range(lo):
            dst[t] = pad
        s = src + (g.col0 + q + lo * sw)
        if sw == 1:
            for t in range(hi - lo):
                dst[lo + t] = s[t]
        else:
            for t in range(hi - lo):
                dst[lo + t] = s[t * sw]
        for t in range(hi, span):
            dst[t] = pad


cdef void _start_panels(const Plan* g, Work* ws, floating pad) noexcept nogil:
    """Fill the all-padding panel; forget cached rows (a new plane starts)."""
    cdef Py_ssize_t t
    cdef floating* fill = <floating*>ws.fill
    for t in range(g.sw * g.span):
        fill[t] = pad
    for t in range(g.slots):
        ws.tags[t] = -1


cdef void _panel_rows(const floating* x, const Plan* g, Work* ws, Py_ssize_t oh,
                      floating pad) noexcept nogil:
    """Point ``ws.rows[i]`` at the panel of window row ``i`` of output row ``oh``.

    A row already built for an earlier output row of this plane is reused:
    panel slot ``ih % slots`` holds row ``ih`` (the rows of one window are
    fewer than ``slots`` apart, so they never share a slot).
    """
    cdef Py_ssize_t i, ih, slot, size = g.sw * g.span
    cdef floating* panel
    for i in range(g.kh):
        ih = g.row_start[oh] + i * g.dh
        if ih < 0 or ih >= g.height:
            ws.rows[i] = ws.fill
            continue
        slot = g.row_slot[ih]
        panel = <floating*>ws.panels + slot * size
        if ws.tags[slot] != ih:
            _build_panel(x + ih * g.width, g, panel, pad)
            ws.tags[slot] = ih
        ws.rows[i] = panel
