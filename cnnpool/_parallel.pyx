"""How many OpenMP threads the compiled kernels may use.

A kernel goes parallel over the N*C planes of a batch only when the work
is large enough to pay for waking the threads; below that it runs on the
calling thread.  Each plane is always processed whole by one thread, so
the result is bit-identical whatever the thread count.
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


def threads_for(Py_ssize_t planes, Py_ssize_t work):
    """Threads to use for ``planes`` independent planes and ``work`` elements."""
    if work < PARALLEL_THRESHOLD or planes < 2:
        return 1
    return max(1, min(<Py_ssize_t>cnnpool_max_threads(), planes))
