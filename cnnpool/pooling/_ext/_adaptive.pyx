"""Compiled kernels of adaptive (and global) max and mean pooling.

PyTorch's adaptive windows: output row ``oh`` of ``OH`` covers input rows
``[row_start[oh], row_end[oh])`` with ``row_start = floor(oh * H / OH)``
and ``row_end = ceil((oh + 1) * H / OH)`` (likewise for columns), so
windows vary in size and may overlap.  Every window holds at least one
input element.  The ranges are computed and checked in Python
(``adaptive.py``); these loops run with bounds checks off, fused
float32/float64, GIL released, parallel over the N*C planes (a plane is
never split between threads, so overlapping windows accumulate without
races).
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.math cimport INFINITY


def max_forward(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                int64_t[:, :, ::1] indices,
                const Py_ssize_t[::1] row_start, const Py_ssize_t[::1] row_end,
                const Py_ssize_t[::1] col_start, const Py_ssize_t[::1] col_end,
                int n_threads):
    """Max of each window and the flat index ``ih * W + iw`` of its winner.

    PyTorch's rule: a tap replaces the best so far when it is greater or
    NaN, in row-major order (first of equal maxima, last of several NaNs;
    a window of -inf's reports its first tap).
    """
    cdef Py_ssize_t planes = x.shape[0], width = x.shape[2]
    cdef Py_ssize_t out_h = out.shape[1], out_w = out.shape[2]
    cdef Py_ssize_t p, oh, ow, ih, iw, best_index
    cdef floating v, best
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            for oh in range(out_h):
                for ow in range(out_w):
                    best = -INFINITY
                    best_index = row_start[oh] * width + col_start[ow]
                    for ih in range(row_start[oh], row_end[oh]):
                        for iw in range(col_start[ow], col_end[ow]):
                            v = x[p, ih, iw]
                            if v > best or v != v:
                                best = v
                                best_index = ih * width + iw
                    out[p, oh, ow] = best
                    indices[p, oh, ow] = best_index


def max_backward(const floating[:, ::1] grad_out, const int64_t[:, ::1] indices,
                 floating[:, ::1] grad_in, int n_threads):
    """``grad_in[p, indices[p, o]] += grad_out[p, o]``; ``grad_in`` zeroed by the caller."""
    cdef Py_ssize_t planes = grad_out.shape[0], n_out = grad_out.shape[1]
    cdef Py_ssize_t p, o
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            for o in range(n_out):
                grad_in[p, indices[p, o]] += grad_out[p, o]


def mean_forward(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                 const Py_ssize_t[::1] row_start, const Py_ssize_t[::1] row_end,
                 const Py_ssize_t[::1] col_start, const Py_ssize_t[::1] col_end,
                 int n_threads):
    """Sum of each window divided by its height, then by its width (PyTorch's order)."""
    cdef Py_ssize_t planes = x.shape[0]
    cdef Py_ssize_t out_h = out.shape[1], out_w = out.shape[2]
    cdef Py_ssize_t p, oh, ow, ih, iw
    cdef floating total
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            for oh in range(out_h):
                for ow in range(out_w):
                    total = 0
                    for ih in range(row_start[oh], row_end[oh]):
                        for iw in range(col_start[ow], col_end[ow]):
                            total = total + x[p, ih, iw]
                    out[p, oh, ow] = (total / (row_end[oh] - row_start[oh])
                                      / (col_end[ow] - col_start[ow]))


def mean_backward(const floating[:, :, ::1] grad_out, floating[:, :, ::1] grad_in,
                  const Py_ssize_t[::1] row_start, const Py_ssize_t[::1] row_end,
                  const Py_ssize_t[::1] col_start, const Py_ssize_t[::1] col_end,
                  int n_threads):
    """Spread ``grad_out / kh / kw`` over each window; ``grad_in`` zeroed by the caller."""
    cdef Py_ssize_t planes = grad_out.shape[0]
    cdef Py_ssize_t out_h = grad_out.shape[1], out_w = grad_out.shape[2]
    cdef Py_ssize_t p, oh, ow, ih, iw
    cdef floating share
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            for oh in range(out_h):
                for ow in range(out_w):
                    share = (grad_out[p, oh, ow] / (row_end[oh] - row_start[oh])
                             / (col_end[ow] - col_start[ow]))
                    for ih in range(row_start[oh], row_end[oh]):
                        for iw in range(col_start[ow], col_end[ow]):
                            grad_in[p, ih, iw] += share
