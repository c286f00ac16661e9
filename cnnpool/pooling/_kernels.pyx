"""Compiled kernels of the built-in max and mean strategies.

Fused float32/float64, GIL released, parallel over the N*C planes.  The
thin Python layer (``max.py``, ``mean.py``, through ``base.py``) checks
every shape, dtype and contiguity and builds the window ranges; these
loops then run with bounds checks off.

Window ranges: for output row ``oh`` the taps ``i`` in
``[row_lo[oh], row_hi[oh])`` land inside the input, at input row
``row_start[oh] + i * dil_h`` (likewise for columns).  Taps outside those
ranges lie in the padding and are skipped: padding never wins a max and
adds nothing to a sum, so a padded input is never materialised.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.math cimport INFINITY


def max_forward(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                int64_t[:, :, ::1] indices,
                const Py_ssize_t[::1] row_start, const Py_ssize_t[::1] row_lo,
                const Py_ssize_t[::1] row_hi, const Py_ssize_t[::1] col_start,
                const Py_ssize_t[::1] col_lo, const Py_ssize_t[::1] col_hi,
                Py_ssize_t dil_h, Py_ssize_t dil_w, int n_threads):
    """Max over each window, and the flat index (``ih * W + iw``) of the winner.

    PyTorch's rule, tap by tap in row-major window order: a tap replaces the
    current best when it is greater, or when it is NaN.  So the first of
    equal maxima wins, the last of several NaNs wins, and a window of
    -inf's reports its first input tap (never -1).
    """
    cdef Py_ssize_t planes = x.shape[0], width = x.shape[2]
    cdef Py_ssize_t out_h = out.shape[1], out_w = out.shape[2]
    cdef Py_ssize_t p, oh, ow, i, j, ih, iw, best_index
    cdef floating v, best
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            for oh in range(out_h):
                for ow in range(out_w):
                    ih = row_start[oh] + row_lo[oh] * dil_h
                    iw = col_start[ow] + col_lo[ow] * dil_w
                    best_index = ih * width + iw
                    best = -INFINITY
                    for i in range(row_lo[oh], row_hi[oh]):
                        ih = row_start[oh] + i * dil_h
                        for j in range(col_lo[ow], col_hi[ow]):
                            iw = col_start[ow] + j * dil_w
                            v = x[p, ih, iw]
                            if v > best or v != v:
                                best = v
                                best_index = ih * width + iw
                    out[p, oh, ow] = best
                    indices[p, oh, ow] = best_index


def max_backward(const floating[:, ::1] grad_out, const int64_t[:, ::1] indices,
                 floating[:, ::1] grad_in, int n_threads):
    """Route each output gradient to its window's winner, accumulating.

    ``grad_out`` and ``indices`` are (P, OH*OW), ``grad_in`` is (P, H*W) and
    zeroed by the caller.  Overlapping windows can share a winner, hence +=.
    """
    cdef Py_ssize_t planes = grad_out.shape[0], n_out = grad_out.shape[1]
    cdef Py_ssize_t p, o
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            for o in range(n_out):
                grad_in[p, indices[p, o]] += grad_out[p, o]


def mean_forward(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                 const double[:, ::1] divisor,
                 const Py_ssize_t[::1] row_start, const Py_ssize_t[::1] row_lo,
                 const Py_ssize_t[::1] row_hi, const Py_ssize_t[::1] col_start,
                 const Py_ssize_t[::1] col_lo, const Py_ssize_t[::1] col_hi,
                 Py_ssize_t dil_h, Py_ssize_t dil_w, int n_threads):
    """Sum of each window's input taps divided by ``divisor[oh, ow]``."""
    cdef Py_ssize_t planes = x.shape[0]
    cdef Py_ssize_t out_h = out.shape[1], out_w = out.shape[2]
    cdef Py_ssize_t p, oh, ow, i, j, ih
    cdef floating total
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            for oh in range(out_h):
                for ow in range(out_w):
                    total = 0
                    for i in range(row_lo[oh], row_hi[oh]):
                        ih = row_start[oh] + i * dil_h
                        for j in range(col_lo[ow], col_hi[ow]):
                            total = total + x[p, ih, col_start[ow] + j * dil_w]
                    out[p, oh, ow] = <floating>(total / divisor[oh, ow])


def mean_backward(const floating[:, :, ::1] grad_out, floating[:, :, ::1] grad_in,
                  const double[:, ::1] divisor,
                  const Py_ssize_t[::1] row_start, const Py_ssize_t[::1] row_lo,
                  const Py_ssize_t[::1] row_hi, const Py_ssize_t[::1] col_start,
                  const Py_ssize_t[::1] col_lo, const Py_ssize_t[::1] col_hi,
                  Py_ssize_t dil_h, Py_ssize_t dil_w, int n_threads):
    """Spread ``grad_out[oh, ow] / divisor[oh, ow]`` over the window's input taps.

    The same ``divisor`` array as the forward, so the two can never disagree.
    ``grad_in`` is zeroed by the caller; overlapping windows accumulate.
    """
    cdef Py_ssize_t planes = grad_out.shape[0]
    cdef Py_ssize_t out_h = grad_out.shape[1], out_w = grad_out.shape[2]
    cdef Py_ssize_t p, oh, ow, i, j, ih
    cdef floating share
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            for oh in range(out_h):
                for ow in range(out_w):
                    share = <floating>(grad_out[p, oh, ow] / divisor[oh, ow])
                    for i in range(row_lo[oh], row_hi[oh]):
                        ih = row_start[oh] + i * dil_h
                        for j in range(col_lo[ow], col_hi[ow]):
                            grad_in[p, ih, col_start[ow] + j * dil_w] += share
