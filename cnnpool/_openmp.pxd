# OpenMP thread count, usable whether or not the build has OpenMP.
#
# The C helper is pasted into every module that cimports this file, so a
# serial build (no -fopenmp) still links: it then reports one thread.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static inline int cnnpool_max_threads(void) { return omp_get_max_threads(); }
    static inline int cnnpool_openmp_enabled(void) { return 1; }
    #else
    static inline int cnnpool_max_threads(void) { return 1; }
    static inline int cnnpool_openmp_enabled(void) { return 0; }
    #endif

    /* The calling thread's contiguous share [*lo, *hi) of n items, as a
       static schedule deals them: all of them outside a parallel region.
       Kernels call their per-share function directly for one thread: an
       OpenMP region costs ~0.4 us even with one thread (libgomp sets up a
       team), a third of a small layer call. */
    static inline void cnnpool_share(Py_ssize_t n, Py_ssize_t *lo, Py_ssize_t *hi)
    {
    #ifdef _OPENMP
        Py_ssize_t t = omp_get_thread_num(), k = omp_get_num_threads();
    #else
        Py_ssize_t t = 0, k = 1;
    #endif
        Py_ssize_t q = n / k, r = n % k;
        *lo = t * q + (t < r ? t : r);
        *hi = *lo + q + (t < r);
    }
    """
    int cnnpool_max_threads() nogil
    int cnnpool_openmp_enabled() nogil
    void cnnpool_share(Py_ssize_t n, Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil
