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

from libc.math cimport pow, sqrt

from cnnpool.pooling.tiers._strategy cimport WindowStrategy


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
