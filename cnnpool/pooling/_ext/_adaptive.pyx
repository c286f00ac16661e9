"""Compiled kernels of adaptive (and global) max and mean pooling.

PyTorch's adaptive windows: output row ``oh`` of ``OH`` covers input rows
``[row_start[oh], row_end[oh])`` with ``row_start = floor(oh * H / OH)``
and ``row_end = ceil((oh + 1) * H / OH)`` (likewise for columns), so
windows vary in size and may overlap.  Every window holds at least one
input element.  The ranges are computed and checked in Python
(``adaptive.py``); the entry points check each array with the NumPy C API
(``cnnpool._arrays``) and that the shapes agree; these loops run with
bounds checks off, fused
float32/float64, GIL released, parallel over the N*C planes (a plane is
never split between threads, so overlapping windows accumulate without
races).
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.stdint cimport int64_t

from cnnpool._arrays cimport checked, dims, float_type

cnp.import_array()


ctypedef struct Ranges:
    # Output size, input width, and the window rows/columns of each output.
    Py_ssize_t out_h, out_w, height, width
    const Py_ssize_t* row_start
    const Py_ssize_t* row_end
    const Py_ssize_t* col_start
    const Py_ssize_t* col_end


cdef Ranges _ranges(cnp.ndarray x, cnp.ndarray out, row_start, row_end, col_start,
                    col_end) except *:
    """Check the window ranges against the planes of ``x`` (P, H, W) and ``out`` (P, OH, OW)."""
    cdef Ranges r
    cdef cnp.ndarray a
    r.height, r.width = cnp.PyArray_DIM(x, 1), cnp.PyArray_DIM(x, 2)
    r.out_h, r.out_w = cnp.PyArray_DIM(out, 1), cnp.PyArray_DIM(out, 2)
    if cnp.PyArray_DIM(out, 0) != cnp.PyArray_DIM(x, 0):
        raise ValueError(f"the planes of {dims(x)} and {dims(out)} disagree")
    for name, value, n in (("row_start", row_start, r.out_h), ("row_end", row_end, r.out_h),
                           ("col_start", col_start, r.out_w), ("col_end", col_end, r.out_w)):
        a = checked(value, name, 1, cnp.NPY_INTP, False)
        if cnp.PyArray_DIM(a, 0) != n:
            raise ValueError(f"{name} must have {n} entries, got {dims(a)}")
    r.row_start = <const Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>row_start)
    r.row_end = <const Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>row_end)
    r.col_start = <const Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>col_start)
    r.col_end = <const Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>col_end)
    return r


cdef void _max_forward(const floating* x, floating* out, int64_t* indices, Py_ssize_t planes,
                       const Ranges* r, int n_threads) noexcept nogil:
    cdef Py_ssize_t p, oh, ow, ih, iw, best_index, plane = r.height * r.width
    cdef Py_ssize_t n_out = r.out_h * r.out_w
    cdef floating v, best
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        for oh in range(r.out_h):
            for ow in range(r.out_w):
                best = -INFINITY
                best_index = r.row_start[oh] * r.width + r.col_start[ow]
                for ih in range(r.row_start[oh], r.row_end[oh]):
                    for iw in range(r.col_start[ow], r.col_end[ow]):
                        v = x[p * plane + ih * r.width + iw]
                        if v > best or v != v:
                            best = v
                            best_index = ih * r.width + iw
                out[p * n_out + oh * r.out_w + ow] = best
                indices[p * n_out + oh * r.out_w + ow] = best_index


def max_forward(x, out, indices, row_start, row_end, col_start, col_end, int n_threads):
    """Max of each window and the flat index ``ih * W + iw`` of its winner.

    ``x`` (P, H, W), ``out`` and ``indices`` (int64) (P, OH, OW).  PyTorch's
    rule: a tap replaces the best so far when it is greater or NaN, in
    row-major order (first of equal maxima, last of several NaNs; a window
    of -inf's reports its first tap).
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef cnp.ndarray ao = checked(out, "out", 3, typenum, True)
    cdef cnp.ndarray ai = checked(indices, "indices", 3, cnp.NPY_INT64, True)
    if dims(ai) != dims(ao):
        raise ValueError(f"indices must have the shape of out {dims(ao)}, got {dims(ai)}")
    cdef Ranges r = _ranges(ax, ao, row_start, row_end, col_start, col_end)
    cdef Py_ssize_t planes = cnp.PyArray_DIM(ax, 0)
    cdef void* px = cnp.PyArray_DATA(ax)
    cdef void* po = cnp.PyArray_DATA(ao)
    cdef int64_t* pi = <int64_t*>cnp.PyArray_DATA(ai)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _max_forward(<const float*>px, <float*>po, pi, planes, &r, n_threads)
        else:
            _max_forward(<const double*>px, <double*>po, pi, planes, &r, n_threads)


cdef void _max_backward(const floating* grad, const int64_t* indices, floating* gin,
                        Py_ssize_t planes, Py_ssize_t n_out, Py_ssize_t size,
                        int n_threads) noexcept nogil:
    cdef Py_ssize_t p, o
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        for o in range(n_out):
            gin[p * size + indices[p * n_out + o]] += grad[p * n_out + o]


def max_backward(grad_out, indices, grad_in, int n_threads):
    """``grad_in[p, indices[p, o]] += grad_out[p, o]``; ``grad_in`` zeroed by the caller.

    ``grad_out`` and ``indices`` (P, O), ``grad_in`` (P, H*W); every index
    must be in ``[0, H*W)`` (the forward wrote them).
    """
    cdef int typenum = float_type(grad_out, "grad_out")
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 2, typenum, False)
    cdef cnp.ndarray ai = checked(indices, "indices", 2, cnp.NPY_INT64, False)
    cdef cnp.ndarray agi = checked(grad_in, "grad_in", 2, typenum, True)
    if dims(ai) != dims(ag) or cnp.PyArray_DIM(agi, 0) != cnp.PyArray_DIM(ag, 0):
        raise ValueError(
            f"grad_out {dims(ag)}, indices {dims(ai)} and grad_in {dims(agi)} disagree"
        )
    cdef Py_ssize_t planes = cnp.PyArray_DIM(ag, 0), n_out = cnp.PyArray_DIM(ag, 1)
    cdef Py_ssize_t size = cnp.PyArray_DIM(agi, 1)
    cdef void* pg = cnp.PyArray_DATA(ag)
    cdef void* pgi = cnp.PyArray_DATA(agi)
    cdef const int64_t* pi = <const int64_t*>cnp.PyArray_DATA(ai)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _max_backward(<const float*>pg, pi, <float*>pgi, planes, n_out, size, n_threads)
        else:
            _max_backward(<const double*>pg, pi, <double*>pgi, planes, n_out, size, n_threads)


cdef void _mean_forward(const floating* x, floating* out, Py_ssize_t planes, const Ranges* r,
                        int n_threads) noexcept nogil:
    cdef Py_ssize_t p, oh, ow, ih, iw, plane = r.height * r.width
    cdef Py_ssize_t n_out = r.out_h * r.out_w
    cdef floating total
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        for oh in range(r.out_h):
            for ow in range(r.out_w):
                total = 0
                for ih in range(r.row_start[oh], r.row_end[oh]):
                    for iw in range(r.col_start[ow], r.col_end[ow]):
                        total = total + x[p * plane + ih * r.width + iw]
                out[p * n_out + oh * r.out_w + ow] = (
                    total / (r.row_end[oh] - r.row_start[oh])
                    / (r.col_end[ow] - r.col_start[ow]))


def mean_forward(x, out, row_start, row_end, col_start, col_end, int n_threads):
    """Sum of each window divided by its height, then by its width (PyTorch's order).

    ``x`` (P, H, W), ``out`` (P, OH, OW).
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef cnp.ndarray ao = checked(out, "out", 3, typenum, True)
    cdef Ranges r = _ranges(ax, ao, row_start, row_end, col_start, col_end)
    cdef Py_ssize_t planes = cnp.PyArray_DIM(ax, 0)
    cdef void* px = cnp.PyArray_DATA(ax)
    cdef void* po = cnp.PyArray_DATA(ao)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _mean_forward(<const float*>px, <float*>po, planes, &r, n_threads)
        else:
            _mean_forward(<const double*>px, <double*>po, planes, &r, n_threads)


cdef void _mean_backward(const floating* grad, floating* gin, Py_ssize_t planes,
                         const Ranges* r, int n_threads) noexcept nogil:
    cdef Py_ssize_t p, oh, ow, ih, iw, plane = r.height * r.width
    cdef Py_ssize_t n_out = r.out_h * r.out_w
    cdef floating share
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        for oh in range(r.out_h):
            for ow in range(r.out_w):
                share = (grad[p * n_out + oh * r.out_w + ow]
                         / (r.row_end[oh] - r.row_start[oh])
                         / (r.col_end[ow] - r.col_start[ow]))
                for ih in range(r.row_start[oh], r.row_end[oh]):
                    for iw in range(r.col_start[ow], r.col_end[ow]):
                        gin[p * plane + ih * r.width + iw] += share


def mean_backward(grad_out, grad_in, row_start, row_end, col_start, col_end, int n_threads):
    """Spread ``grad_out / kh / kw`` over each window; ``grad_in`` zeroed by the caller.

    ``grad_out`` (P, OH, OW), ``grad_in`` (P, H, W).
    """
    cdef int typenum = float_type(grad_out, "grad_out")
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 3, typenum, False)
    cdef cnp.ndarray agi = checked(grad_in, "grad_in", 3, typenum, True)
    cdef Ranges r = _ranges(agi, ag, row_start, row_end, col_start, col_end)
    cdef Py_ssize_t planes = cnp.PyArray_DIM(ag, 0)
    cdef void* pg = cnp.PyArray_DATA(ag)
    cdef void* pgi = cnp.PyArray_DATA(agi)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _mean_backward(<const float*>pg, <float*>pgi, planes, &r, n_threads)
        else:
            _mean_backward(<const double*>pg, <double*>pgi, planes, &r, n_threads)
