"""How many OpenMP threads the compiled kernels may use.

A kernel goes parallel over the N*C planes of a batch only when the work
is large enough to pay for waking the threads; below that it runs on the
calling thread.  Each plane is always processed whole by one thread, so
the result is bit-identical whatever the thread count.

The thread limit is OpenMP's (``OMP_NUM_THREADS``) unless
:func:`set_num_threads` lowers it for the whole process, e.g. to 1 when
several worker processes share the cores, or when BLAS threads and OpenMP
threads would otherwise fight over two cores.
"""

from cnnpool._openmp cimport cnnpool_max_threads, cnnpool_openmp_enabled

#: Elements (input plus output) below which kernels stay single-threaded.
PARALLEL_THRESHOLD = 1 << 16


def openmp_enabled():
    """True when the extensions were compiled with OpenMP."""
    return bool(cnnpool_openmp_enabled())


def max_threads():
    """The OpenMP thread limit (``OMP_NUM_THREADS``), 1 without OpenMP."""
    return cnnpool_max_threads()


# 0 means "OpenMP's own limit"; a module global rather than omp_set_num_threads,
# whose setting applies only to the OS thread that calls it.
cdef Py_ssize_t _limit = 0


def set_num_threads(Py_ssize_t n):
    """Limit the threads cnnpool's kernels use, process-wide; 0 restores the default.

    Parameters
    ----------
    n : int
        The most threads a kernel may use (>= 1), or 0 for OpenMP's limit
        (``OMP_NUM_THREADS``, else the number of cores).  Results do not depend
        on it: each plane is always reduced by one thread.
    """
    global _limit
    if n < 0:
        raise ValueError(f"n must be >= 0 (0 restores the default), got {n}")
    _limit = n


def get_num_threads():
    """The most threads a kernel may use now (1 without OpenMP)."""
    cdef Py_ssize_t omp = cnnpool_max_threads()
    return min(_limit, omp) if _limit > 0 else omp


def threads_for(Py_ssize_t planes, Py_ssize_t work):
    """Threads to use for ``planes`` independent planes and ``work`` elements."""
    if work < PARALLEL_THRESHOLD or planes < 2:
        return 1
    cdef Py_ssize_t limit = cnnpool_max_threads()
    if 0 < _limit < limit:
        limit = _limit
    return max(1, min(limit, planes))
