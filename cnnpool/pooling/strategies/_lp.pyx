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


cdef class LpWindow(WindowStrategy):
    """Compiled Lp reduction for a finite, non-zero ``norm_type``.

    Integer ``norm_type`` up to 16 in size uses multiplications instead of
    ``pow``, and ``p = 2`` a square root for the final root (PyTorch
    specialises the same exponents).
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
        cdef double s = _sum(values, n, self.whole, self.norm_type) / n * window_size
        if self.whole == 1:
            return s
        if self.whole == 2:
            return sqrt(s)
        return pow(s, self.inv)

    cdef void route(self, const double* values, Py_ssize_t n, Py_ssize_t window_size,
                    double pooled, double* local) noexcept nogil:
        cdef double avg = _sum(values, n, self.whole, self.norm_type) / n, s, coef
        cdef Py_ssize_t i
        if avg == 0:
            coef = 0
        else:
            s = avg * window_size
            if self.whole == 1:
                coef = 1
            elif self.whole == 2:
                coef = 1 / sqrt(s)
            else:
                coef = pow(s, self.inv - 1)
            coef = coef * (<double>window_size / n)
        if self.whole == 1:
            for i in range(n):
                local[i] = coef
        elif self.whole == 2:
            for i in range(n):
                local[i] = coef * values[i]
        else:
            for i in range(n):
                local[i] = coef * _power(values[i], self.whole - 1 if self.whole else 0,
                                         self.norm_type - 1)
