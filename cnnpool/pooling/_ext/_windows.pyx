"""Compiled window gather and gradient scatter-add for any pooling strategy.

The generic path of :class:`~cnnpool.pooling.base.Pool2d` works on a table
of taps: for every output position and every tap of its window, the flat
index ``ih * W + iw`` of the input element it reads, or -1 where the tap
falls in the padding.  These two kernels are all the generic path needs:

* ``gather``: windows[p, t] = x[p, taps[t]]  (``pad_value`` where -1)
* ``scatter_add``: grad_x[p, taps[t]] += grad_windows[p, t]  (skip -1)

``p`` runs over the N*C planes, ``t`` over OH*OW*K taps.  The callers in
``base.py`` check that every tap is in ``[-1, H*W)``; the entry points
check each array with the NumPy C API (``cnnpool._arrays``) and that their
shapes agree; these loops then run without bounds checks.  Planes are
split across threads, never a plane between threads, so overlapping
windows accumulate without races and the result does not depend on the
thread count.
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange

from cnnpool._arrays cimport checked, dims, float_type

cnp.import_array()

# CNNPOOL_DEBUG=1 builds (setup.py) check every tap here, as the bounds
# checks of a typed memoryview would: the loops below index raw pointers.
cdef extern from *:
    """
    #ifndef CNNPOOL_DEBUG
    #define CNNPOOL_DEBUG 0
    #endif
    """
    const bint CNNPOOL_DEBUG


cdef int _debug_check_taps(cnp.ndarray taps, Py_ssize_t size) except -1:
    cdef const Py_ssize_t* t = <const Py_ssize_t*>cnp.PyArray_DATA(taps)
    cdef Py_ssize_t i
    for i in range(cnp.PyArray_DIM(taps, 0)):
        if t[i] < -1 or t[i] >= size:
            raise IndexError(f"taps[{i}] = {t[i]} is outside [-1, {size})")
    return 0


cdef void _gather(const floating* x, Py_ssize_t planes, Py_ssize_t size,
                  const Py_ssize_t* taps, Py_ssize_t n_taps, floating pad_value,
                  floating* windows, int n_threads) noexcept nogil:
    cdef Py_ssize_t p, t, src
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        for t in range(n_taps):
            src = taps[t]
            if src >= 0:
                windows[p * n_taps + t] = x[p * size + src]
            else:
                windows[p * n_taps + t] = pad_value


cdef void _scatter_add(const floating* grad_windows, Py_ssize_t planes, Py_ssize_t size,
                       const Py_ssize_t* taps, Py_ssize_t n_taps, floating* grad_x,
                       int n_threads) noexcept nogil:
    cdef Py_ssize_t p, t, dst
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        for t in range(n_taps):
            dst = taps[t]
            if dst >= 0:
                grad_x[p * size + dst] += grad_windows[p * n_taps + t]


def gather(x, taps, double pad_value, windows, int n_threads):
    """Fill ``windows`` (P, T) from ``x`` (P, H*W) through the tap table (T,)."""
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 2, typenum, False)
    cdef cnp.ndarray at = checked(taps, "taps", 1, cnp.NPY_INTP, False)
    cdef cnp.ndarray aw = checked(windows, "windows", 2, typenum, True)
    cdef Py_ssize_t planes = cnp.PyArray_DIM(ax, 0), size = cnp.PyArray_DIM(ax, 1)
    cdef Py_ssize_t n_taps = cnp.PyArray_DIM(at, 0)
    if cnp.PyArray_DIM(aw, 0) != planes or cnp.PyArray_DIM(aw, 1) != n_taps:
        raise ValueError(
            f"windows must have shape ({planes}, {n_taps}), got {dims(aw)}"
        )
    if CNNPOOL_DEBUG:
        _debug_check_taps(at, size)
    cdef const Py_ssize_t* pt = <const Py_ssize_t*>cnp.PyArray_DATA(at)
    cdef void* px = cnp.PyArray_DATA(ax)
    cdef void* pw = cnp.PyArray_DATA(aw)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _gather(<const float*>px, planes, size, pt, n_taps, <float>pad_value,
                    <float*>pw, n_threads)
        else:
            _gather(<const double*>px, planes, size, pt, n_taps, pad_value,
                    <double*>pw, n_threads)


def scatter_add(grad_windows, taps, grad_x, int n_threads):
    """Add ``grad_windows`` (P, T) into ``grad_x`` (P, H*W) through the tap table."""
    cdef int typenum = float_type(grad_windows, "grad_windows")
    cdef cnp.ndarray ag = checked(grad_windows, "grad_windows", 2, typenum, False)
    cdef cnp.ndarray at = checked(taps, "taps", 1, cnp.NPY_INTP, False)
    cdef cnp.ndarray ai = checked(grad_x, "grad_x", 2, typenum, True)
    cdef Py_ssize_t planes = cnp.PyArray_DIM(ag, 0), n_taps = cnp.PyArray_DIM(at, 0)
    cdef Py_ssize_t size = cnp.PyArray_DIM(ai, 1)
    if cnp.PyArray_DIM(ag, 1) != n_taps or cnp.PyArray_DIM(ai, 0) != planes:
        raise ValueError(
            f"grad_windows {dims(ag)}, taps {dims(at)} and grad_x {dims(ai)} disagree"
        )
    if CNNPOOL_DEBUG:
        _debug_check_taps(at, size)
    cdef const Py_ssize_t* pt = <const Py_ssize_t*>cnp.PyArray_DATA(at)
    cdef void* pg = cnp.PyArray_DATA(ag)
    cdef void* pi = cnp.PyArray_DATA(ai)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _scatter_add(<const float*>pg, planes, size, pt, n_taps, <float*>pi, n_threads)
        else:
            _scatter_add(<const double*>pg, planes, size, pt, n_taps, <double*>pi, n_threads)
