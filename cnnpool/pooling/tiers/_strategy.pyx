"""The compiled window driver: runs any :class:`WindowStrategy` over a batch.

``WindowStrategy`` (declared in ``_strategy.pxd``) is the abstract base a
compiled strategy subclasses; :func:`forward` and :func:`backward` walk
every window of every plane through a tap table and call the strategy's
``reduce`` and ``route`` on it.

Tap table: ``taps[o, t]`` is the flat index ``ih * W + iw`` in its plane of
tap ``t`` of output window ``o`` (row-major over (OH, OW)), or -1 where the
tap falls in the padding or past the end of a smaller window.  So the same
driver serves the fixed-kernel geometry, adaptive windows of varying size
and the windows array of the generic path.

The Python wrappers in ``cnnpool/pooling/compiled.py`` check shapes,
dtypes and that every tap is in ``[-1, H*W)``; these loops then run with
bounds checks off.  Planes are split between threads, never a plane
between threads, so windows that overlap accumulate without races and the
result does not depend on the thread count.  ``work`` is scratch space,
``(n_threads, 2 * K)`` doubles: each thread gathers a window into its own
row.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport NAN


cdef class WindowStrategy:
    """Abstract base of a compiled pooling strategy (see ``_strategy.pxd``).

    Subclass it in Cython and override the ``cdef`` methods ``reduce`` and
    ``route``; it cannot be used itself.
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


cdef void _forward_plane(WindowStrategy strategy, const floating* x, const Py_ssize_t* taps,
                         floating* out, Py_ssize_t n_out, Py_ssize_t k,
                         double* values) noexcept nogil:
    """Every window of one plane (plain pointers: the loops keep them in registers)."""
    cdef Py_ssize_t o, t, n, src
    for o in range(n_out):
        n = 0
        for t in range(k):
            src = taps[t]
            if src >= 0:
                values[n] = x[src]
                n += 1
        out[o] = <floating>strategy.reduce(values, n, k)
        taps += k


cdef void _backward_plane(WindowStrategy strategy, const floating* x, const Py_ssize_t* taps,
                          const floating* pooled, const floating* grad_out, floating* grad_x,
                          Py_ssize_t n_out, Py_ssize_t k, double* values) noexcept nogil:
    cdef Py_ssize_t o, t, n, src
    cdef double* local = values + k
    cdef double g
    for o in range(n_out):
        n = 0
        for t in range(k):
            src = taps[t]
            if src >= 0:
                values[n] = x[src]
                n += 1
        strategy.route(values, n, k, pooled[o], local)
        g = grad_out[o]
        n = 0
        for t in range(k):
            src = taps[t]
            if src >= 0:
                grad_x[src] += <floating>(local[n] * g)
                n += 1
        taps += k


def forward(WindowStrategy strategy not None, const floating[:, ::1] x,
            const Py_ssize_t[:, ::1] taps, floating[:, ::1] out,
            double[:, ::1] work, int n_threads):
    """``out[p, o] = strategy.reduce(input taps of window o of plane p)``.

    ``x`` is (P, H*W), ``taps`` (O, K), ``out`` (P, O), ``work`` at least
    (n_threads, K).
    """
    cdef Py_ssize_t planes = x.shape[0], n_out = taps.shape[0], k = taps.shape[1]
    cdef Py_ssize_t p
    if planes == 0 or n_out == 0:
        return
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            _forward_plane(strategy, &x[p, 0], &taps[0, 0], &out[p, 0], n_out, k,
                           &work[threadid(), 0])


def backward(WindowStrategy strategy not None, const floating[:, ::1] x,
             const Py_ssize_t[:, ::1] taps, const floating[:, ::1] pooled,
             const floating[:, ::1] grad_out, floating[:, ::1] grad_x,
             double[:, ::1] work, int n_threads):
    """``grad_x[p, tap] += route(window)[tap] * grad_out[p, o]`` over every window.

    ``grad_x`` (P, H*W) is zeroed by the caller; ``pooled`` and
    ``grad_out`` are (P, O); ``work`` at least (n_threads, 2 * K).
    """
    cdef Py_ssize_t planes = x.shape[0], n_out = taps.shape[0], k = taps.shape[1]
    cdef Py_ssize_t p
    if planes == 0 or n_out == 0:
        return
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            _backward_plane(strategy, &x[p, 0], &taps[0, 0], &pooled[p, 0], &grad_out[p, 0],
                            &grad_x[p, 0], n_out, k, &work[threadid(), 0])
