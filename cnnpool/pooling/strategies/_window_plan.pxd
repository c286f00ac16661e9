# The windows of one pooling call, for the kernels of the built-in strategies
# that pool through whole windows (stochastic, mixed, gated): the checked
# geometry, and inline helpers that walk one window's taps.
#
# The geometry comes from ``PoolGeometry.kernel_args`` (``windows``, the six
# window arrays end to end, then dilation, kernel size and stride): for
# output row ``oh`` the taps ``i`` in ``[row_lo[oh], row_hi[oh])`` land
# inside the input, at row ``row_start[oh] + i * dh`` (likewise for columns).
# Tap ``t = i * kw + j`` is the window's row-major tap number, the one the
# NumPy tier's windows array uses.
#
# Everything here is inline (a .pxd, no module of its own): the per-window
# helpers sit in the kernels' innermost loops.

from cython cimport floating
from libc.stdint cimport int64_t, uint8_t

cimport numpy as cnp

from cnnpool._arrays cimport checked, dims

# Selects without branches, written in C: gcc kept the if/else that Cython
# emits for ``0 if v < 0 else v`` (and even a C conditional expression) as a
# branch, mispredicted on about every other element of zero-centred data
# (eval forward 3 ms on positive inputs, 15 ms on normal ones).  maxss/maxsd
# compute ``a > b ? a : b`` exactly, NaN and signed zeros included; the other
# selects are bit masks.
cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #if defined(__SSE2__)
    #include <emmintrin.h>
    /* max(v, 0) with NaN and -0.0 kept: v unless 0 > v (maxsd's own rule). */
    static inline double cnnpool_keep_d(double v)
    { return _mm_cvtsd_f64(_mm_max_sd(_mm_setzero_pd(), _mm_set_sd(v))); }
    static inline float cnnpool_keep_f(float v)
    { return _mm_cvtss_f32(_mm_max_ss(_mm_setzero_ps(), _mm_set_ss(v))); }
    #else
    static inline double cnnpool_keep_d(double v) { return 0.0 > v ? 0.0 : v; }
    static inline float cnnpool_keep_f(float v) { return 0.0f > v ? 0.0f : v; }
    #endif
    /* c ? a : b (c is 0 or 1), as bit masks. */
    static inline Py_ssize_t cnnpool_pick_n(int c, Py_ssize_t a, Py_ssize_t b)
    { return b ^ ((a ^ b) & -(Py_ssize_t)(c != 0)); }
    static inline double cnnpool_pick_d(int c, double a, double b)
    {
        uint64_t ua, ub, m = -(uint64_t)(c != 0);
        memcpy(&ua, &a, 8); memcpy(&ub, &b, 8);
        ub ^= (ua ^ ub) & m;
        memcpy(&b, &ub, 8);
        return b;
    }
    static inline float cnnpool_pick_f(int c, float a, float b)
    {
        uint32_t ua, ub, m = -(uint32_t)(c != 0);
        memcpy(&ua, &a, 4); memcpy(&ub, &b, 4);
        ub ^= (ua ^ ub) & m;
        memcpy(&b, &ub, 4);
        return b;
    }
    /* max(v, 0) as a bit-mask select, for loops that vectorise: gcc cannot
       vectorise the intrinsic, and keeps a conditional expression a branch. */
    static inline double cnnpool_keep_v(double v) { return cnnpool_pick_d(v < 0, 0.0, v); }
    """
    double cnnpool_keep_d(double v) noexcept nogil
    float cnnpool_keep_f(float v) noexcept nogil
    Py_ssize_t cnnpool_pick_n(bint c, Py_ssize_t a, Py_ssize_t b) noexcept nogil
    double cnnpool_pick_d(bint c, double a, double b) noexcept nogil
    double cnnpool_keep_v(double v) noexcept nogil
    float cnnpool_pick_f(bint c, float a, float b) noexcept nogil


cdef inline floating relu(floating v) noexcept nogil:
    """``max(v, 0)`` keeping NaN and -0.0 (``0 if v < 0 else v``), without a branch."""
    if floating is float:
        return cnnpool_keep_f(v)
    else:
        return cnnpool_keep_d(v)


cdef inline floating pick(bint c, floating a, floating b) noexcept nogil:
    """``a if c else b`` without a branch."""
    if floating is float:
        return cnnpool_pick_f(c, a, b)
    else:
        return cnnpool_pick_d(c, a, b)


# Saved tap numbers: uint8 for windows of at most 255 taps (a byte per
# window for the backward to read), int64 beyond.
ctypedef fused tap_t:
    uint8_t
    int64_t


ctypedef struct WindowPlan:
    Py_ssize_t height, width, out_h, out_w
    Py_ssize_t kh, kw, dh, dw
    Py_ssize_t k  # taps per window, kh * kw
    # Windows never overlap: no input element is a tap of two windows.
    bint disjoint
    # 2x2 stride 2, no padding or dilation, every window inside the input
    # (the most common layer): window (oh, ow) reads rows 2oh, 2oh + 1 and
    # columns 2ow, 2ow + 1, and the kernels run an unrolled loop.
    bint direct2x2
    const Py_ssize_t* row_start
    const Py_ssize_t* row_lo
    const Py_ssize_t* row_hi
    const Py_ssize_t* col_start
    const Py_ssize_t* col_lo
    const Py_ssize_t* col_hi
    # Per tap number t: its row i = t // kw, column j = t % kw and offset
    # i * dh * W + j * dw from the window's origin (no division per window).
    const Py_ssize_t* tap_i
    const Py_ssize_t* tap_j
    const Py_ssize_t* tap_offset
    # Row-wise loops: window ow's column tap j is input column
    # col0 + ow * sw + j * dw, inside the input for ow in [ow_lo[j], ow_hi[j]).
    Py_ssize_t col0, sw
    const Py_ssize_t* ow_lo
    const Py_ssize_t* ow_hi


cdef inline Py_ssize_t _check_axis(const Py_ssize_t* start, const Py_ssize_t* lo,
                                   const Py_ssize_t* hi, Py_ssize_t n_out, Py_ssize_t kernel,
                                   Py_ssize_t dil, Py_ssize_t size, str axis) except -1:
    """Every window's input taps along one axis are a non-empty run inside ``[0, size)``."""
    cdef Py_ssize_t o
    for o in range(n_out):
        if not (0 <= lo[o] < hi[o] <= kernel and start[o] + lo[o] * dil >= 0
                and start[o] + (hi[o] - 1) * dil < size):
            raise ValueError(
                f"windows does not describe windows of input {axis} {size}: window "
                f"{o} has taps [{lo[o]}, {hi[o]}) from {start[o]} in steps of {dil} "
                f"(kernel {kernel}); pass PoolGeometry.windows of this input")
    return 0


cdef inline object plan_windows(WindowPlan* g, object windows, Py_ssize_t height,
                                Py_ssize_t width, Py_ssize_t out_h, Py_ssize_t out_w,
                                Py_ssize_t dil_h, Py_ssize_t dil_w, Py_ssize_t kernel_h,
                                Py_ssize_t kernel_w, Py_ssize_t stride_h,
                                Py_ssize_t stride_w):
    """Fill ``g`` after checking the window table against the plane sizes.

    Unlike the max/mean kernels these loops index the input through the
    table itself, so every entry is checked (O(OH + OW)): a table of
    another geometry is refused, never read past the plane.  Returns the
    array that holds ``g``'s tap tables: keep it while ``g`` is in use.
    """
    if min(kernel_h, kernel_w, dil_h, dil_w, stride_h, stride_w) < 1:
        raise ValueError(
            f"kernel size, dilation and stride must be >= 1, got kernel ({kernel_h}, "
            f"{kernel_w}), dilation ({dil_h}, {dil_w}), stride ({stride_h}, {stride_w})")
    if out_h < 1 or out_w < 1:
        raise ValueError(f"the output must have at least one window, got (OH, OW) = "
                         f"({out_h}, {out_w})")
    if height < 1 or width < 1:
        raise ValueError(f"the input has empty planes, (H, W) = ({height}, {width}), but "
                         f"the output (OH, OW) = ({out_h}, {out_w}) has windows")
    cdef cnp.ndarray a = checked(windows, "windows", 1, cnp.NPY_INTP, False)
    if a.shape[0] != 3 * (out_h + out_w):
        raise ValueError(
            f"windows has {a.shape[0]} entries, but an output of (OH, OW) = "
            f"({out_h}, {out_w}) needs 3 * (OH + OW) = {3 * (out_h + out_w)}")
    cdef const Py_ssize_t* w = <const Py_ssize_t*>cnp.PyArray_DATA(a)
    g.height, g.width, g.out_h, g.out_w = height, width, out_h, out_w
    g.kh, g.kw, g.dh, g.dw = kernel_h, kernel_w, dil_h, dil_w
    g.k = kernel_h * kernel_w
    g.row_start, g.row_lo, g.row_hi = w, w + out_h, w + 2 * out_h
    g.col_start = w + 3 * out_h
    g.col_lo = g.col_start + out_w
    g.col_hi = g.col_start + 2 * out_w
    _check_axis(g.row_start, g.row_lo, g.row_hi, out_h, kernel_h, dil_h, height, "height")
    _check_axis(g.col_start, g.col_lo, g.col_hi, out_w, kernel_w, dil_w, width, "width")
    # Window starts increase by the stride, so consecutive windows share no
    # input element when one's last tap comes before the next one's first.
    g.disjoint = (stride_h > (kernel_h - 1) * dil_h and stride_w > (kernel_w - 1) * dil_w)
    g.col0, g.sw = g.col_start[0], stride_w
    cdef Py_ssize_t o, j, tap
    g.direct2x2 = (kernel_h == 2 and kernel_w == 2 and stride_h == 2 and stride_w == 2
                   and dil_h == 1 and dil_w == 1 and g.col0 == 0)
    for o in range(out_h):
        g.direct2x2 = g.direct2x2 and g.row_start[o] == 2 * o and g.row_hi[o] - g.row_lo[o] == 2
    for o in range(out_w):
        g.direct2x2 = g.direct2x2 and g.col_hi[o] - g.col_lo[o] == 2
    for o in range(out_w):
        if g.col_start[o] != g.col0 + o * stride_w:
            raise ValueError(
                f"windows does not describe windows {stride_w} columns apart: window "
                f"{o} starts at column {g.col_start[o]}, window 0 at {g.col0}")
    cdef cnp.ndarray tables = cnp.PyArray_EMPTY(1, [3 * g.k + 2 * kernel_w], cnp.NPY_INTP, 0)
    cdef Py_ssize_t* t = <Py_ssize_t*>cnp.PyArray_DATA(tables)
    for tap in range(g.k):
        t[tap] = tap // kernel_w
        t[g.k + tap] = tap % kernel_w
        t[2 * g.k + tap] = (tap // kernel_w) * dil_h * width + (tap % kernel_w) * dil_w
    g.tap_i, g.tap_j, g.tap_offset = t, t + g.k, t + 2 * g.k
    cdef Py_ssize_t* lo = t + 3 * g.k
    cdef Py_ssize_t* hi = lo + kernel_w
    for j in range(kernel_w):
        # The windows whose column tap j is inside: one run (window starts increase).
        lo[j] = hi[j] = 0
        for o in range(out_w):
            if g.col_lo[o] <= j < g.col_hi[o]:
                if hi[j] == 0:
                    lo[j] = o
                hi[j] = o + 1
    g.ow_lo, g.ow_hi = lo, hi
    return tables


cdef inline Py_ssize_t check_planes(cnp.ndarray a, Py_ssize_t planes, Py_ssize_t rows,
                                    Py_ssize_t cols, str name, str what) except -1:
    """``a`` must have shape (planes, rows, cols) (``what`` names that shape)."""
    if a.shape[0] != planes or a.shape[1] != rows or a.shape[2] != cols:
        raise ValueError(f"{name} must have shape {what} = ({planes}, {rows}, {cols}), "
                         f"got {dims(a)}")
    return 0


cdef inline Py_ssize_t check_divisor(object divisor, Py_ssize_t out_h, Py_ssize_t out_w) except -1:
    """The (OH, OW) float64 divisors of the mean, shape-checked."""
    cdef cnp.ndarray d = checked(divisor, "divisor", 2, cnp.NPY_FLOAT64, False)
    if d.shape[0] != out_h or d.shape[1] != out_w:
        raise ValueError(f"divisor must have shape (OH, OW) = ({out_h}, {out_w}), "
                         f"got {dims(d)}")
    return 0


cdef inline Py_ssize_t tap_type(object taps, Py_ssize_t k) except -1:
    """The NumPy type number of ``taps``: uint8 (windows of <= 255 taps) or int64."""
    if not cnp.PyArray_Check(taps):
        raise TypeError(f"taps must be a NumPy array, got {type(taps).__name__}")
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>taps)
    if typenum != cnp.NPY_UINT8 and typenum != cnp.NPY_INT64:
        raise TypeError(f"taps must be uint8 or int64, got {taps.dtype}")
    if typenum == cnp.NPY_UINT8 and k > 255:
        raise ValueError(f"uint8 tap numbers hold windows of at most 255 taps, got {k} "
                         f"taps; pass int64 taps")
    return typenum


cdef inline Py_ssize_t tap_position(const WindowPlan* g, Py_ssize_t oh, Py_ssize_t ow,
                                    Py_ssize_t t) noexcept nogil:
    """Flat index ``ih * W + iw`` in its plane of tap ``t`` of window (oh, ow), or
    -1 when ``t`` is not one of the window's input taps.

    The backward kernels read tap numbers that a forward saved; checking
    them here costs a few comparisons (predictable: they always pass for
    the forward's own taps) and turns a stranger's array into an error,
    not a stray write.
    """
    if <size_t>t >= <size_t>g.k:
        return -1
    cdef Py_ssize_t i = g.tap_i[t], j = g.tap_j[t]
    if not (g.row_lo[oh] <= i < g.row_hi[oh] and g.col_lo[ow] <= j < g.col_hi[ow]):
        return -1
    return g.row_start[oh] * g.width + g.col_start[ow] + g.tap_offset[t]


cdef inline Py_ssize_t first_inside(const WindowPlan* g, Py_ssize_t oh,
                                    Py_ssize_t ow) noexcept nogil:
    """Tap number of the first input tap of window (oh, ow), in row-major order."""
    return g.row_lo[oh] * g.kw + g.col_lo[ow]


cdef inline void gather(const floating* x, const WindowPlan* g, Py_ssize_t oh, Py_ssize_t ow,
                        floating* values) noexcept nogil:
    """All ``k`` taps of window (oh, ow) of plane ``x`` into ``values``, 0 where padded."""
    cdef Py_ssize_t i, j, t
    cdef Py_ssize_t rlo = g.row_lo[oh], rhi = g.row_hi[oh]
    cdef Py_ssize_t clo = g.col_lo[ow], chi = g.col_hi[ow]
    cdef const floating* row
    if rlo != 0 or rhi != g.kh or clo != 0 or chi != g.kw:
        for t in range(g.k):
            values[t] = 0
    for i in range(rlo, rhi):
        row = x + (g.row_start[oh] + i * g.dh) * g.width + g.col_start[ow]
        for j in range(clo, chi):
            values[i * g.kw + j] = row[j * g.dw]


cdef inline bint wins(floating v, floating best) noexcept nogil:
    """MaxPool2d's rule: a larger value or a NaN beats the best so far (so the
    first of equal maxima wins, and the last of several NaNs)."""
    return (v > best) | (v != v)


cdef inline Py_ssize_t winner(const floating* values, const WindowPlan* g, Py_ssize_t oh,
                              Py_ssize_t ow) noexcept nogil:
    """Tap number of the max of a gathered window (padded taps never win)."""
    cdef Py_ssize_t i, j, t, best_t = first_inside(g, oh, ow)
    cdef floating best = values[best_t]
    cdef bint w
    for i in range(g.row_lo[oh], g.row_hi[oh]):
        for j in range(g.col_lo[ow], g.col_hi[ow]):
            t = i * g.kw + j
            w = wins(values[t], best)
            best = pick(w, values[t], best)
            best_t = cnnpool_pick_n(w, t, best_t)
    return best_t
