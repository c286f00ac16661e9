"""Lp pooling as a compiled :class:`WindowStrategy`: the library's own example.

The same arithmetic as ``torch.nn.functional.lp_pool2d``, per window::

    avg = sum(x_i ** p) / n          # avg_pool2d of x**p (n = taps in the input)
    s   = avg * window_size          # .mul(kw * kh)
    y   = s ** (1 / p)

and its derivative ``dy/dx_i = window_size / n * s**(1/p - 1) * x_i**(p - 1)``,
zero where ``avg == 0`` (PyTorch's convention: its ``relu(abs(.))`` stage
has zero slope there).  Negative inputs follow ``pow``: ``x**p`` is NaN
for a fractional ``p``, and a negative ``s`` (odd ``p``) gives ``y = NaN``.
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport pow, sqrt
from libc.string cimport memcpy, memset

from cnnpool._arrays cimport checked, float_type
from cnnpool.pooling.tiers._strategy cimport WindowStrategy

cnp.import_array()


cdef inline double _ipow(double v, int n) noexcept nogil:
    """``v ** n`` for a small integer ``n`` by repeated squaring (``pow`` is slow)."""
    cdef double result = 1.0
    cdef bint invert = n < 0
    if invert:
        n = -n
    while n:
        if n & 1:
            result = result * v
        v = v * v
        n >>= 1
    return 1.0 / result if invert else result


cdef inline double _power(double v, int whole, double p) noexcept nogil:
    """``v ** p``; ``whole`` is ``p`` as an int when it is one, else 0."""
    if whole == 2:
        return v * v
    if whole:
        return _ipow(v, whole)
    return pow(v, p)


cdef inline double _sum(const double* values, Py_ssize_t n, int whole, double p) noexcept nogil:
    cdef double total = 0
    cdef Py_ssize_t i
    if whole == 2:
        for i in range(n):
            total = total + values[i] * values[i]
    else:
        for i in range(n):
            total = total + _power(values[i], whole, p)
    return total


cdef inline double _reduce(const double* values, Py_ssize_t n, Py_ssize_t window_size,
                           int whole, double p, double inv) noexcept nogil:
    """The pooled value of one window (``reduce``), inlined in the block loops."""
    cdef double s = _sum(values, n, whole, p) / n * window_size
    if whole == 1:
        return s
    if whole == 2:
        return sqrt(s)
    return pow(s, inv)


cdef inline void _route(const double* values, Py_ssize_t n, Py_ssize_t window_size,
                        int whole, double p, double inv, double* local) noexcept nogil:
    """The local gradient of one window (``route``), inlined in the block loops."""
    cdef double avg = _sum(values, n, whole, p) / n, s, coef
    cdef Py_ssize_t i
    if avg == 0:
        coef = 0
    else:
        s = avg * window_size
        if whole == 1:
            coef = 1
        elif whole == 2:
            coef = 1 / sqrt(s)
        else:
            coef = pow(s, inv - 1)
        coef = coef * (<double>window_size / n)
    if whole == 1:
        for i in range(n):
            local[i] = coef
    elif whole == 2:
        for i in range(n):
            local[i] = coef * values[i]
    else:
        for i in range(n):
            local[i] = coef * _power(values[i], whole - 1 if whole else 0, p - 1)


cdef class LpWindow(WindowStrategy):
    """Compiled Lp reduction for a finite, non-zero ``norm_type``.

    Integer ``norm_type`` up to 16 in size uses multiplications instead of
    ``pow``, and ``p = 2`` a square root for the final root (PyTorch
    specialises the same exponents).  The block methods run the per-window
    arithmetic inlined, with ``p = 2`` as its own loop: the same numbers as
    ``reduce``/``route``, without a call per window.
    """

    cdef readonly double norm_type
    cdef double inv
    cdef int whole  # norm_type as an int when it is one (|p| <= 16), else 0

    def __init__(self, double norm_type):
        if norm_type == 0 or norm_type != norm_type or norm_type in (
            float("inf"), float("-inf")
        ):
            raise ValueError(f"LpWindow needs a finite non-zero norm_type, got {norm_type}")
        self.norm_type = norm_type
        self.inv = 1.0 / norm_type
        self.whole = <int>norm_type if abs(norm_type) <= 16 and norm_type == <int>norm_type else 0

    cdef double reduce(self, const double* values, Py_ssize_t n,
                       Py_ssize_t window_size) noexcept nogil:
        return _reduce(values, n, window_size, self.whole, self.norm_type, self.inv)

    cdef void route(self, const double* values, Py_ssize_t n, Py_ssize_t window_size,
                    double pooled, double* local) noexcept nogil:
        _route(values, n, window_size, self.whole, self.norm_type, self.inv, local)

    cdef void reduce_windows(self, const double* values, const Py_ssize_t* counts,
                             Py_ssize_t n_windows, Py_ssize_t stride,
                             Py_ssize_t window_size, double* out) noexcept nogil:
        cdef Py_ssize_t w
        if self.whole == 2:
            # The common kernels get a copy with a constant window (unrolled).
            if stride == 4 and _all(counts, n_windows, 4):
                _reduce_l2(values, counts, n_windows, 4, window_size, out, 4)
            elif stride == 9 and _all(counts, n_windows, 9):
                _reduce_l2(values, counts, n_windows, 9, window_size, out, 9)
            else:
                _reduce_l2(values, counts, n_windows, stride, window_size, out, 0)
        else:
            for w in range(n_windows):
                out[w] = _reduce(values + w * stride, counts[w], window_size, self.whole,
                                 self.norm_type, self.inv)

    cdef void route_windows(self, const double* values, const Py_ssize_t* counts,
                            Py_ssize_t n_windows, Py_ssize_t stride,
                            Py_ssize_t window_size, const double* pooled,
                            double* local) noexcept nogil:
        cdef Py_ssize_t w
        if self.whole == 2:
            if stride == 4 and _all(counts, n_windows, 4):
                _route_l2(values, counts, n_windows, 4, window_size, local, 4)
            elif stride == 9 and _all(counts, n_windows, 9):
                _route_l2(values, counts, n_windows, 9, window_size, local, 9)
            else:
                _route_l2(values, counts, n_windows, stride, window_size, local, 0)
        else:
            for w in range(n_windows):
                _route(values + w * stride, counts[w], window_size, self.whole,
                       self.norm_type, self.inv, local + w * stride)


# ------------------------------------------------------------------ p = 2 blocks
# The same arithmetic as _reduce/_route with p = 2, in passes over many
# windows: the sums, then one loop of square roots and divisions the
# compiler turns into vector instructions.  ``fixed`` > 0 (a literal at the
# call) says every window has that many taps, so the inlined copy has
# constant inner loops.

cdef enum:
    CHUNK = 64  # windows per pass of _route_l2 (its coefficients live on the stack)


cdef inline bint _all(const Py_ssize_t* counts, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t w
    for w in range(n):
        if counts[w] != k:
            return False
    return True


cdef inline void _reduce_l2(const double* values, const Py_ssize_t* counts,
                            Py_ssize_t n_windows, Py_ssize_t stride, Py_ssize_t window_size,
                            double* out, Py_ssize_t fixed) noexcept nogil:
    cdef Py_ssize_t w, n
    for w in range(n_windows):
        n = fixed if fixed else counts[w]
        out[w] = _sum(values + w * stride, n, 2, 2.0) / n * window_size
    for w in range(n_windows):
        out[w] = sqrt(out[w])


cdef inline void _route_l2(const double* values, const Py_ssize_t* counts,
                           Py_ssize_t n_windows, Py_ssize_t stride, Py_ssize_t window_size,
                           double* local, Py_ssize_t fixed) noexcept nogil:
    cdef double coef[CHUNK]
    cdef double avg, ws = <double>window_size
    cdef Py_ssize_t start = 0, size, w, i, n
    cdef const double* v
    while start < n_windows:
        size = min(<Py_ssize_t>CHUNK, n_windows - start)
        for w in range(size):
            n = fixed if fixed else counts[start + w]
            coef[w] = _sum(values + (start + w) * stride, n, 2, 2.0)
        for w in range(size):
            n = fixed if fixed else counts[start + w]
            avg = coef[w] / n
            coef[w] = 0 if avg == 0 else 1 / sqrt(avg * ws) * (ws / n)
        for w in range(size):
            n = fixed if fixed else counts[start + w]
            v = values + (start + w) * stride
            for i in range(n):
                local[(start + w) * stride + i] = coef[w] * v[i]
        start += size


# ------------------------------------------------------- the direct layer path
# LpPool2d's own kernel tier (no padding, no dilation: PyTorch's LPPool2d has
# neither), reading the planes in place instead of through the window
# driver's tap table: the same per-window arithmetic as ``_reduce``/``_route``
# (taps summed in row-major window order, then the same divisions and root),
# hence the same numbers, without the gather into a scratch block, the
# scatter out of it, or the table itself.  Forward copies each plane, while
# it is in the cache, into the private copy that backward reads; backward
# recomputes each window's sum from it (cheaper than saving anything more).
# Windows wholly inside the plane run a copy of the loops with the window
# and stride as constants (2x2 and 3x3 windows), which the C compiler
# unrolls and vectorises across the windows of a row.

cdef inline double _finish(double total, Py_ssize_t n, Py_ssize_t window_size,
                           int whole, double inv) noexcept nogil:
    """``_reduce`` after its sum."""
    cdef double s = total / n * window_size
    if whole == 1:
        return s
    if whole == 2:
        return sqrt(s)
    return pow(s, inv)


cdef inline double _coef(double total, Py_ssize_t n, Py_ssize_t window_size,
                         int whole, double inv) noexcept nogil:
    """``_route``'s coefficient after its sum."""
    cdef double avg = total / n, coef
    if avg == 0:
        return 0
    if whole == 1:
        coef = 1
    elif whole == 2:
        coef = 1 / sqrt(avg * window_size)
    else:
        coef = pow(avg * window_size, inv - 1)
    return coef * (<double>window_size / n)


cdef inline double _local(double coef, double v, int whole, double p) noexcept nogil:
    """``_route``'s local gradient of a tap of value ``v``."""
    if whole == 1:
        return coef
    if whole == 2:
        return coef * v
    return coef * _power(v, whole - 1 if whole else 0, p - 1)


cdef inline void _forward_rows(const floating* x, floating* out, Py_ssize_t W,
                               Py_ssize_t OW, Py_ssize_t oy0, Py_ssize_t oy1,
                               Py_ssize_t ox1, Py_ssize_t sh, Py_ssize_t KH, Py_ssize_t KW,
                               Py_ssize_t SW, int whole, double p, double inv) noexcept nogil:
    """Full windows ``[oy0, oy1) x [0, ox1)``; inlined with literal KH, KW, SW."""
    cdef Py_ssize_t oy, ox, i, j
    cdef double total
    cdef const floating* row
    for oy in range(oy0, oy1):
        for ox in range(ox1):
            total = 0
            for i in range(KH):
                row = x + (oy * sh + i) * W + ox * SW
                for j in range(KW):
                    total = total + _power(row[j], whole, p)
            out[oy * OW + ox] = <floating>_finish(total, KH * KW, KH * KW, whole, inv)


cdef inline void _backward_rows(const floating* x, const floating* grad_out, floating* grad_x,
                                Py_ssize_t W, Py_ssize_t OW, Py_ssize_t oy0, Py_ssize_t oy1,
                                Py_ssize_t ox1, Py_ssize_t sh, Py_ssize_t KH, Py_ssize_t KW,
                                Py_ssize_t SW, bint disjoint, int whole, double p,
                                double inv) noexcept nogil:
    """The backward of :func:`_forward_rows`, windows in order, taps in order."""
    cdef Py_ssize_t oy, ox, i, j, at
    cdef double total, coef, g
    cdef const floating* row
    for oy in range(oy0, oy1):
        for ox in range(ox1):
            total = 0
            for i in range(KH):
                row = x + (oy * sh + i) * W + ox * SW
                for j in range(KW):
                    total = total + _power(row[j], whole, p)
            coef = _coef(total, KH * KW, KH * KW, whole, inv)
            g = grad_out[oy * OW + ox]
            for i in range(KH):
                at = (oy * sh + i) * W + ox * SW
                for j in range(KW):
                    # As the driver's scatter: the product rounded to the
                    # dtype, stored (``0 +`` keeps a zero's sign as adding
                    # into zeros would) or added where windows overlap.
                    if disjoint:
                        grad_x[at + j] = <floating>0 + <floating>(
                            _local(coef, x[at + j], whole, p) * g)
                    else:
                        grad_x[at + j] += <floating>(_local(coef, x[at + j], whole, p) * g)


cdef inline void _backward_l2_2x2(const floating* x, const floating* grad_out,
                                  floating* grad_x, Py_ssize_t W, Py_ssize_t OW, Py_ssize_t oy,
                                  Py_ssize_t full_w, Py_ssize_t sh) noexcept nogil:
    """:func:`_backward_rows` for p = 2, 2x2 windows, stride 2 across: the same
    operations written out, with no inner loops, which GCC vectorises only
    this way (it does not unroll the two tap loops of the general form first)."""
    cdef const floating* r0 = x + oy * sh * W
    cdef const floating* r1 = r0 + W
    cdef floating* g0 = grad_x + oy * sh * W
    cdef floating* g1 = g0 + W
    cdef const floating* go = grad_out + oy * OW
    cdef double a, b, c, d, avg, coef, g
    cdef Py_ssize_t ox
    for ox in range(full_w):
        a = r0[2 * ox]
        b = r0[2 * ox + 1]
        c = r1[2 * ox]
        d = r1[2 * ox + 1]
        avg = (((a * a + b * b) + c * c) + d * d) / 4  # _sum's order (0 + a*a is a*a)
        coef = 0 if avg == 0 else 1 / sqrt(avg * 4) * (4.0 / 4)
        g = go[ox]
        g0[2 * ox] = <floating>0 + <floating>(coef * a * g)
        g0[2 * ox + 1] = <floating>0 + <floating>(coef * b * g)
        g1[2 * ox] = <floating>0 + <floating>(coef * c * g)
        g1[2 * ox + 1] = <floating>0 + <floating>(coef * d * g)


cdef inline void _forward_row(const floating* x, floating* out, Py_ssize_t W, Py_ssize_t OW,
                              Py_ssize_t oy, Py_ssize_t full_w, Py_ssize_t sh, Py_ssize_t kh,
                              Py_ssize_t kw, Py_ssize_t sw, int whole, double p,
                              double inv) noexcept nogil:
    """The full windows of row ``oy``: literal constants where they are common."""
    if whole == 2:
        if kh == 2 and kw == 2 and sw == 2:
            _forward_rows(x, out, W, OW, oy, oy + 1, full_w, sh, 2, 2, 2, 2, 2.0, 0.5)
        elif kh == 3 and kw == 3 and sw == 2:
            _forward_rows(x, out, W, OW, oy, oy + 1, full_w, sh, 3, 3, 2, 2, 2.0, 0.5)
        elif kh == 3 and kw == 3 and sw == 1:
            _forward_rows(x, out, W, OW, oy, oy + 1, full_w, sh, 3, 3, 1, 2, 2.0, 0.5)
        else:
            _forward_rows(x, out, W, OW, oy, oy + 1, full_w, sh, kh, kw, sw, 2, 2.0, 0.5)
    else:
        _forward_rows(x, out, W, OW, oy, oy + 1, full_w, sh, kh, kw, sw, whole, p, inv)


cdef inline void _backward_row(const floating* x, const floating* grad_out, floating* grad_x,
                               Py_ssize_t W, Py_ssize_t OW, Py_ssize_t oy, Py_ssize_t full_w,
                               Py_ssize_t sh, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sw,
                               bint disjoint, int whole, double p, double inv) noexcept nogil:
    if whole == 2 and disjoint:
        if kh == 2 and kw == 2 and sw == 2:
            _backward_l2_2x2(x, grad_out, grad_x, W, OW, oy, full_w, sh)
        elif kh == 3 and kw == 3 and sw == 3:
            _backward_rows(x, grad_out, grad_x, W, OW, oy, oy + 1, full_w, sh, 3, 3, 3, True,
                           2, 2.0, 0.5)
        else:
            _backward_rows(x, grad_out, grad_x, W, OW, oy, oy + 1, full_w, sh, kh, kw, sw, True,
                           2, 2.0, 0.5)
    elif whole == 2:
        _backward_rows(x, grad_out, grad_x, W, OW, oy, oy + 1, full_w, sh, kh, kw, sw, False,
                       2, 2.0, 0.5)
    else:
        _backward_rows(x, grad_out, grad_x, W, OW, oy, oy + 1, full_w, sh, kh, kw, sw,
                       disjoint, whole, p, inv)


cdef void _lp_plane(const floating* x, floating* out, floating* copy, const floating* grad_out,
                    floating* grad_x, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH,
                    Py_ssize_t OW, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                    bint disjoint, bint covers, int whole, double p,
                    double inv) noexcept nogil:
    """One plane: forward when ``out`` is set, else backward into ``grad_x``."""
    cdef Py_ssize_t oy, ox, i, j, nh, nw, at, first, ws = kh * kw
    cdef double total, coef, g
    # Windows wholly inside: oy < full_h, ox < full_w.
    cdef Py_ssize_t full_h = min(OH, (H - kh) // sh + 1) if H >= kh else 0
    cdef Py_ssize_t full_w = min(OW, (W - kw) // sw + 1) if W >= kw else 0
    if grad_x != NULL and not (disjoint and covers):
        memset(grad_x, 0, H * W * sizeof(floating))
    # Row by row, windows in order (the order in which overlapping windows
    # add into grad_x is the driver's): a row's full windows by a copy of the
    # loops with constant window and stride, then the windows a ceil_mode
    # border cuts.
    for oy in range(OH):
        first = 0
        if oy < full_h and full_w > 0:
            first = full_w
            if out != NULL:
                _forward_row(x, out, W, OW, oy, full_w, sh, kh, kw, sw, whole, p, inv)
            else:
                _backward_row(x, grad_out, grad_x, W, OW, oy, full_w, sh, kh, kw, sw, disjoint,
                              whole, p, inv)
        for ox in range(first, OW):
            nh = min(kh, H - oy * sh)
            nw = min(kw, W - ox * sw)
            total = 0
            for i in range(nh):
                for j in range(nw):
                    total = total + _power(x[(oy * sh + i) * W + ox * sw + j], whole, p)
            if out != NULL:
                out[oy * OW + ox] = <floating>_finish(total, nh * nw, ws, whole, inv)
                continue
            coef = _coef(total, nh * nw, ws, whole, inv)
            g = grad_out[oy * OW + ox]
            for i in range(nh):
                for j in range(nw):
                    at = (oy * sh + i) * W + ox * sw + j
                    if disjoint:
                        grad_x[at] = <floating>0 + <floating>(_local(coef, x[at], whole, p) * g)
                    else:
                        grad_x[at] += <floating>(_local(coef, x[at], whole, p) * g)
    if copy != NULL:
        memcpy(copy, x, H * W * sizeof(floating))


cdef void _lp_planes(const floating* x, floating* out, floating* copy,
                     const floating* grad_out, floating* grad_x, Py_ssize_t planes,
                     Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t kh,
                     Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, bint disjoint, bint covers,
                     int whole, double p, double inv, int n_threads) noexcept nogil:
    # Whole planes per thread: the result does not depend on the thread count.
    cdef Py_ssize_t q, size = H * W, n_out = OH * OW
    for q in prange(planes, num_threads=n_threads, schedule="static"):
        _lp_plane(x + q * size,
                  out + q * n_out if out != NULL else NULL,
                  copy + q * size if copy != NULL else NULL,
                  grad_out + q * n_out if grad_out != NULL else NULL,
                  grad_x + q * size if grad_x != NULL else NULL,
                  H, W, OH, OW, kh, kw, sh, sw, disjoint, covers, whole, p, inv)


def _geometry(x, y, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw):
    """Check the shapes of the direct path; ``(disjoint, covers)``."""
    planes, h, w = x.shape
    if y.shape[0] != planes or min(kh, kw, sh, sw) < 1:
        raise ValueError(f"shapes disagree: {x.shape} and {y.shape}, window {kh}x{kw}")
    oh, ow = y.shape[1:]
    # Every window starts inside the plane (no padding; ceil_mode may cut the last).
    if oh < 1 or ow < 1 or (oh - 1) * sh >= h or (ow - 1) * sw >= w:
        raise ValueError(
            f"output {y.shape} does not fit planes {x.shape} with {kh}x{kw} windows, "
            f"stride {sh}x{sw}"
        )
    disjoint = sh >= kh and sw >= kw
    covers = sh == kh and sw == kw and oh * sh >= h and ow * sw >= w
    return disjoint, covers


def lp_forward(LpWindow strategy not None, x, out, copy, Py_ssize_t kh, Py_ssize_t kw,
               Py_ssize_t sh, Py_ssize_t sw, int n_threads):
    """Lp pooling of planes ``x`` (P, H, W) into ``out`` (P, OH, OW), no padding.

    Windows ``kh x kw`` with stride ``sh x sw``, the last ones cut by the
    plane's edge where ``ceil_mode`` made them (they start inside).  Also
    copies ``x`` into ``copy`` (same shape), the input backward reads.
    Float32 or float64, all three C-contiguous and of one dtype.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef cnp.ndarray ao = checked(out, "out", 3, typenum, True)
    cdef cnp.ndarray ac = checked(copy, "copy", 3, typenum, True)
    if copy.shape != x.shape:
        raise ValueError(f"copy {copy.shape} must have the shape of x {x.shape}")
    cdef bint disjoint, covers
    disjoint, covers = _geometry(x, out, kh, kw, sh, sw)
    cdef Py_ssize_t planes = x.shape[0], h = x.shape[1], w = x.shape[2]
    cdef Py_ssize_t oh = out.shape[1], ow = out.shape[2]
    cdef void* px = cnp.PyArray_DATA(ax)
    cdef void* po = cnp.PyArray_DATA(ao)
    cdef void* pc = cnp.PyArray_DATA(ac)
    n_threads = max(1, n_threads)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _lp_planes[float](
                <const float*>px, <float*>po, <float*>pc, <const float*>NULL, <float*>NULL, planes,
                h, w, oh, ow, kh, kw, sh, sw, disjoint, covers, strategy.whole, strategy.norm_type,
                strategy.inv, n_threads)
        else:
            _lp_planes[double](
                <const double*>px, <double*>po, <double*>pc, <const double*>NULL, <double*>NULL,
                planes, h, w, oh, ow, kh, kw, sh, sw, disjoint, covers, strategy.whole,
                strategy.norm_type, strategy.inv, n_threads)


def lp_backward(LpWindow strategy not None, x, grad_out, grad_x, Py_ssize_t kh, Py_ssize_t kw,
                Py_ssize_t sh, Py_ssize_t sw, int n_threads):
    """Input gradient of :func:`lp_forward`: ``grad_x`` (P, H, W), written whole,
    from the planes ``x`` it pooled (its ``copy``) and ``grad_out`` (P, OH, OW)."""
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 3, typenum, False)
    cdef cnp.ndarray ai = checked(grad_x, "grad_x", 3, typenum, True)
    if grad_x.shape != x.shape:
        raise ValueError(f"grad_x {grad_x.shape} must have the shape of x {x.shape}")
    cdef bint disjoint, covers
    disjoint, covers = _geometry(x, grad_out, kh, kw, sh, sw)
    cdef Py_ssize_t planes = x.shape[0], h = x.shape[1], w = x.shape[2]
    cdef Py_ssize_t oh = grad_out.shape[1], ow = grad_out.shape[2]
    cdef void* px = cnp.PyArray_DATA(ax)
    cdef void* pg = cnp.PyArray_DATA(ag)
    cdef void* pi = cnp.PyArray_DATA(ai)
    n_threads = max(1, n_threads)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _lp_planes[float](
                <const float*>px, <float*>NULL, <float*>NULL, <const float*>pg, <float*>pi, planes,
                h, w, oh, ow, kh, kw, sh, sw, disjoint, covers, strategy.whole, strategy.norm_type,
                strategy.inv, n_threads)
        else:
            _lp_planes[double](
                <const double*>px, <double*>NULL, <double*>NULL, <const double*>pg, <double*>pi,
                planes, h, w, oh, ow, kh, kw, sh, sw, disjoint, covers, strategy.whole,
                strategy.norm_type, strategy.inv, n_threads)
