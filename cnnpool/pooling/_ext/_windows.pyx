"""Compiled window gather and gradient scatter-add for any pooling strategy.

The generic path of :class:`~cnnpool.pooling.base.Pool2d` works on a table
of taps: for every output position and every tap of its window, the flat
index ``ih * W + iw`` of the input element it reads, or -1 where the tap
falls in the padding.  These two kernels are all the generic path needs:

* ``gather``: windows[p, t] = x[p, taps[t]]  (``pad_value`` where -1)
* ``scatter_add``: grad_x[p, taps[t]] += grad_windows[p, t]  (skip -1)

``p`` runs over the N*C planes, ``t`` over OH*OW*K taps.  The callers in
``base.py`` check shapes, dtypes, contiguity and that every tap is in
``[-1, H*W)``; these loops then run without bounds checks.  Planes are
split across threads, never a plane between threads, so overlapping
windows accumulate without races and the result does not depend on the
thread count.
"""

from cython cimport floating
from cython.parallel cimport prange


def gather(const floating[:, ::1] x, const Py_ssize_t[::1] taps,
           floating pad_value, floating[:, ::1] windows, int n_threads):
    """Fill ``windows`` (P, T) from ``x`` (P, H*W) through the tap table (T,)."""
    cdef Py_ssize_t planes = x.shape[0]
    cdef Py_ssize_t n_taps = taps.shape[0]
    cdef Py_ssize_t p, t, src
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            for t in range(n_taps):
                src = taps[t]
                if src >= 0:
                    windows[p, t] = x[p, src]
                else:
                    windows[p, t] = pad_value


def scatter_add(const floating[:, ::1] grad_windows, const Py_ssize_t[::1] taps,
                floating[:, ::1] grad_x, int n_threads):
    """Add ``grad_windows`` (P, T) into ``grad_x`` (P, H*W) through the tap table."""
    cdef Py_ssize_t planes = grad_windows.shape[0]
    cdef Py_ssize_t n_taps = taps.shape[0]
    cdef Py_ssize_t p, t, dst
    with nogil:
        for p in prange(planes, num_threads=n_threads, schedule="static"):
            for t in range(n_taps):
                dst = taps[t]
                if dst >= 0:
                    grad_x[p, dst] += grad_windows[p, t]
