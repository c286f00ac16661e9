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

from libc.math cimport pow

from cnnpool.pooling._strategy cimport WindowStrategy


cdef class LpWindow(WindowStrategy):
    """Compiled Lp reduction for a finite, non-zero ``norm_type``."""

    cdef readonly double norm_type
    cdef double inv

    def __init__(self, double norm_type):
        if norm_type == 0 or norm_type != norm_type or norm_type in (
            float("inf"), float("-inf")
        ):
            raise ValueError(f"LpWindow needs a finite non-zero norm_type, got {norm_type}")
        self.norm_type = norm_type
        self.inv = 1.0 / norm_type

    cdef double reduce(self, const double* values, Py_ssize_t n,
                       Py_ssize_t window_size) noexcept nogil:
        cdef double total = 0
        cdef Py_ssize_t i
        for i in range(n):
            total = total + pow(values[i], self.norm_type)
        return pow(total / n * window_size, self.inv)

    cdef void route(self, const double* values, Py_ssize_t n, Py_ssize_t window_size,
                    double pooled, double* local) noexcept nogil:
        cdef double total = 0, avg, coef
        cdef Py_ssize_t i
        for i in range(n):
            total = total + pow(values[i], self.norm_type)
        avg = total / n
        if avg == 0:
            coef = 0
        else:
            coef = <double>window_size / n * pow(avg * window_size, self.inv - 1)
        for i in range(n):
            local[i] = coef * pow(values[i], self.norm_type - 1)
