"""The compiled window driver: runs any :class:`WindowStrategy` over a batch.

``WindowStrategy`` (declared in ``_strategy.pxd``) is the abstract base a
compiled strategy subclasses; :func:`forward` and :func:`backward` walk
every window of every plane through a tap table and hand the strategy one
block of gathered windows at a time (``reduce_windows``/``route_windows``).

Tap table: ``taps[o, t]`` is the flat index ``ih * W + iw`` in its plane of
the ``t``-th tap of output window ``o`` that falls inside the input, in
row-major window order, for ``t < counts[o]``; the rest of the row is
ignored.  (The Python wrappers in ``cnnpool/pooling/tiers/compiled.py``
build this compact table from the geometry's, where -1 marks a tap in the
padding or past the end of a smaller window, and say whether every window
is full, ``counts[o] == K``.)  So the same driver serves the fixed-kernel
geometry, adaptive windows of varying size and the windows array of the
generic path, and the gather needs no test per tap.

The wrappers check shapes, dtypes and that every tap is in ``[0, H*W)``;
the entry points here check each array with the NumPy C API
(``cnnpool._arrays``), and the loops then run with bounds checks off.
Planes are split between threads, never a plane between threads, so
windows that overlap accumulate without races and the result does not
depend on the thread count.  Each thread gathers a block of windows into
its own scratch space, which stays in the L1 cache.
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport NAN
from libc.stdlib cimport free, malloc

from cnnpool._arrays cimport checked, float_type

cnp.import_array()

# Windows per call of the block methods: enough to make the call's cost
# vanish, few enough that a block's values and local gradients (2 * 256 * K
# doubles) stay in the L1 cache for the usual kernel sizes.
cdef enum:
    BLOCK = 256


cdef class WindowStrategy:
    """Abstract base of a compiled pooling strategy (see ``_strategy.pxd``).

    Subclass it in Cython and override the ``cdef`` methods ``reduce`` and
    ``route`` (and, for speed, ``reduce_windows`` and ``route_windows``);
    it cannot be used itself.
    """

    def __cinit__(self, *args, **kwargs):
        if type(self) is WindowStrategy:
            raise TypeError(
                "WindowStrategy is abstract: subclass it in a .pyx file and "
                "override its cdef methods reduce and route"
            )

    cdef double reduce(self, const double* values, Py_ssize_t n,
                       Py_ssize_t window_size) noexcept nogil:
        return NAN

    cdef void route(self, const double* values, Py_ssize_t n, Py_ssize_t window_size,
                    double pooled, double* local) noexcept nogil:
        cdef Py_ssize_t i
        for i in range(n):
            local[i] = NAN

    cdef void reduce_windows(self, const double* values, const Py_ssize_t* counts,
                             Py_ssize_t n_windows, Py_ssize_t stride,
                             Py_ssize_t window_size, double* out) noexcept nogil:
        cdef Py_ssize_t w
        for w in range(n_windows):
            out[w] = self.reduce(values + w * stride, counts[w], window_size)

    cdef void route_windows(self, const double* values, const Py_ssize_t* counts,
                            Py_ssize_t n_windows, Py_ssize_t stride,
                            Py_ssize_t window_size, const double* pooled,
                            double* local) noexcept nogil:
        cdef Py_ssize_t w
        for w in range(n_windows):
            self.route(values + w * stride, counts[w], window_size, pooled[w],
                       local + w * stride)


cdef extern from "_strategy.h" nogil:
    void cnnpool_gather_f32(const float* x, const Py_ssize_t* taps, const Py_ssize_t* counts,
                            Py_ssize_t n_windows, Py_ssize_t k, bint full, double* values)
    void cnnpool_gather_f64(const double* x, const Py_ssize_t* taps, const Py_ssize_t* counts,
                            Py_ssize_t n_windows, Py_ssize_t k, bint full, double* values)
    void cnnpool_scatter_f32(const double* local, const float* grad_out, const Py_ssize_t* taps,
                             const Py_ssize_t* counts, Py_ssize_t n_windows, Py_ssize_t k,
                             bint disjoint, float* grad_x)
    void cnnpool_scatter_f64(const double* local, const double* grad_out,
                             const Py_ssize_t* taps, const Py_ssize_t* counts,
                             Py_ssize_t n_windows, Py_ssize_t k, bint disjoint, double* grad_x)


cdef inline void _gather(const floating* x, const Py_ssize_t* taps, const Py_ssize_t* counts,
                         Py_ssize_t n_windows, Py_ssize_t k, bint full,
                         double* values) noexcept nogil:
    """The input taps of ``n_windows`` windows, widened to double, into ``values``."""
    if floating is float:
        cnnpool_gather_f32(x, taps, counts, n_windows, k, full, values)
    else:
        cnnpool_gather_f64(x, taps, counts, n_windows, k, full, values)


cdef void _forward_plane(WindowStrategy strategy, const floating* x, const Py_ssize_t* taps,
                         const Py_ssize_t* counts, bint full, floating* out, Py_ssize_t n_out,
                         Py_ssize_t k, double* values) noexcept nogil:
    cdef double* pooled = values + BLOCK * k
    cdef Py_ssize_t start = 0, size, w
    while start < n_out:
        size = min(<Py_ssize_t>BLOCK, n_out - start)
        _gather(x, taps + start * k, counts + start, size, k, full, values)
        strategy.reduce_windows(values, counts + start, size, k, k, pooled)
        for w in range(size):
            out[start + w] = <floating>pooled[w]
        start += size


cdef void _backward_plane(WindowStrategy strategy, const floating* x, const Py_ssize_t* taps,
                          const Py_ssize_t* counts, bint full, bint disjoint,
                          const floating* pooled,
                          const floating* grad_out, floating* grad_x, Py_ssize_t n_out,
                          Py_ssize_t k, double* values) noexcept nogil:
    cdef double* local = values + BLOCK * k
    cdef double* wide = local + BLOCK * k  # this block's pooled values, as doubles
    cdef const Py_ssize_t* block_taps
    cdef Py_ssize_t start = 0, size, w
    while start < n_out:
        size = min(<Py_ssize_t>BLOCK, n_out - start)
        block_taps = taps + start * k
        _gather(x, block_taps, counts + start, size, k, full, values)
        for w in range(size):
            wide[w] = pooled[start + w]
        strategy.route_windows(values, counts + start, size, k, k, wide, local)
        if floating is float:
            cnnpool_scatter_f32(local, grad_out + start, block_taps, counts + start, size, k,
                                disjoint, grad_x)
        else:
            cnnpool_scatter_f64(local, grad_out + start, block_taps, counts + start, size, k,
                                disjoint, grad_x)
        start += size


cdef void _forward(WindowStrategy strategy, const floating* x, Py_ssize_t plane_size,
                   Py_ssize_t planes, const Py_ssize_t* taps, const Py_ssize_t* counts,
                   bint full, floating* out, Py_ssize_t n_out, Py_ssize_t k,
                   double* work, int n_threads) noexcept nogil:
    cdef Py_ssize_t p, per_thread = (2 * k + 1) * BLOCK
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        _forward_plane(strategy, x + p * plane_size, taps, counts, full, out + p * n_out,
                       n_out, k, work + threadid() * per_thread)


cdef void _backward(WindowStrategy strategy, const floating* x, Py_ssize_t plane_size,
                    Py_ssize_t planes, const Py_ssize_t* taps, const Py_ssize_t* counts,
                    bint full, bint disjoint, const floating* pooled, const floating* grad_out,
                    floating* grad_x, Py_ssize_t n_out, Py_ssize_t k, double* work,
                    int n_threads) noexcept nogil:
    cdef Py_ssize_t p, per_thread = (2 * k + 1) * BLOCK
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        _backward_plane(strategy, x + p * plane_size, taps, counts, full, disjoint,
                        pooled + p * n_out, grad_out + p * n_out, grad_x + p * plane_size,
                        n_out, k, work + threadid() * per_thread)


cdef double* _scratch(Py_ssize_t k, int n_threads) except NULL:
    cdef double* work = <double*>malloc(n_threads * (2 * k + 1) * BLOCK * sizeof(double))
    if work == NULL:
        raise MemoryError("no memory for the window driver's scratch space")
    return work


def forward(WindowStrategy strategy not None, x, taps, counts, bint full, out, int n_threads):
    """``out[p, o] = strategy.reduce(input taps of window o of plane p)``.

    ``x`` is (P, H*W) float32 or float64, ``taps`` (O, K) intp (compact:
    the ``counts[o]`` input taps of window ``o`` first), ``counts`` (O,)
    intp, ``full`` whether every ``counts[o] == K``, ``out`` (P, O) in the
    dtype of ``x``.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 2, typenum, False)
    cdef cnp.ndarray at = checked(taps, "taps", 2, cnp.NPY_INTP, False)
    cdef cnp.ndarray ac = checked(counts, "counts", 1, cnp.NPY_INTP, False)
    cdef cnp.ndarray ao = checked(out, "out", 2, typenum, True)
    cdef Py_ssize_t planes = cnp.PyArray_DIM(ax, 0), size = cnp.PyArray_DIM(ax, 1)
    cdef Py_ssize_t n_out = cnp.PyArray_DIM(at, 0), k = cnp.PyArray_DIM(at, 1)
    if (cnp.PyArray_DIM(ac, 0) != n_out or cnp.PyArray_DIM(ao, 0) != planes
            or cnp.PyArray_DIM(ao, 1) != n_out):
        raise ValueError(
            f"shapes disagree: x {x.shape}, taps {taps.shape}, counts {counts.shape}, "
            f"out {out.shape}"
        )
    if planes == 0 or n_out == 0:
        return
    n_threads = max(1, n_threads)
    cdef double* work = _scratch(k, n_threads)
    cdef void* px = cnp.PyArray_DATA(ax)
    cdef void* po = cnp.PyArray_DATA(ao)
    cdef const Py_ssize_t* pt = <const Py_ssize_t*>cnp.PyArray_DATA(at)
    cdef const Py_ssize_t* pc = <const Py_ssize_t*>cnp.PyArray_DATA(ac)
    try:
        with nogil:
            if typenum == cnp.NPY_FLOAT32:
                _forward(strategy, <const float*>px, size, planes, pt, pc, full,
                         <float*>po, n_out, k, work, n_threads)
            else:
                _forward(strategy, <const double*>px, size, planes, pt, pc, full,
                         <double*>po, n_out, k, work, n_threads)
    finally:
        free(work)


def backward(WindowStrategy strategy not None, x, taps, counts, bint full, bint disjoint,
             pooled, grad_out, grad_x, int n_threads):
    """``grad_x[p, tap] += route(window)[tap] * grad_out[p, o]`` over every window.

    Arrays as in :func:`forward`; ``pooled`` (what :func:`forward`
    returned) and ``grad_out`` are (P, O).  ``grad_x`` (P, H*W) is zeroed by
    the caller, except where ``disjoint`` says no input element is in two
    windows: then the taps' elements are written, the others left as they are.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 2, typenum, False)
    cdef cnp.ndarray at = checked(taps, "taps", 2, cnp.NPY_INTP, False)
    cdef cnp.ndarray ac = checked(counts, "counts", 1, cnp.NPY_INTP, False)
    cdef cnp.ndarray ap = checked(pooled, "pooled", 2, typenum, False)
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 2, typenum, False)
    cdef cnp.ndarray ai = checked(grad_x, "grad_x", 2, typenum, True)
    cdef Py_ssize_t planes = cnp.PyArray_DIM(ax, 0), size = cnp.PyArray_DIM(ax, 1)
    cdef Py_ssize_t n_out = cnp.PyArray_DIM(at, 0), k = cnp.PyArray_DIM(at, 1)
    if (cnp.PyArray_DIM(ac, 0) != n_out
            or cnp.PyArray_DIM(ap, 0) != planes or cnp.PyArray_DIM(ap, 1) != n_out
            or cnp.PyArray_DIM(ag, 0) != planes or cnp.PyArray_DIM(ag, 1) != n_out
            or cnp.PyArray_DIM(ai, 0) != planes or cnp.PyArray_DIM(ai, 1) != size):
        raise ValueError(
            f"shapes disagree: x {x.shape}, taps {taps.shape}, counts {counts.shape}, "
            f"pooled {pooled.shape}, grad_out {grad_out.shape}, grad_x {grad_x.shape}"
        )
    if planes == 0 or n_out == 0:
        return
    n_threads = max(1, n_threads)
    cdef double* work = _scratch(k, n_threads)
    cdef void* px = cnp.PyArray_DATA(ax)
    cdef void* pp = cnp.PyArray_DATA(ap)
    cdef void* pg = cnp.PyArray_DATA(ag)
    cdef void* pi = cnp.PyArray_DATA(ai)
    cdef const Py_ssize_t* pt = <const Py_ssize_t*>cnp.PyArray_DATA(at)
    cdef const Py_ssize_t* pc = <const Py_ssize_t*>cnp.PyArray_DATA(ac)
    try:
        with nogil:
            if typenum == cnp.NPY_FLOAT32:
                _backward(strategy, <const float*>px, size, planes, pt, pc, full, disjoint,
                          <const float*>pp, <const float*>pg, <float*>pi, n_out, k, work,
                          n_threads)
            else:
                _backward(strategy, <const double*>px, size, planes, pt, pc, full, disjoint,
                          <const double*>pp, <const double*>pg, <double*>pi, n_out, k,
                          work, n_threads)
    finally:
        free(work)
