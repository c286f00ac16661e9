# OpenMP thread count, usable whether or not the build has OpenMP.
#
# The C helper is pasted into every module that cimports this file, so a
# serial build (no -fopenmp) still links: it then reports one thread.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int cnnpool_max_threads(void) { return omp_get_max_threads(); }
    static int cnnpool_openmp_enabled(void) { return 1; }
    #else
    static int cnnpool_max_threads(void) { return 1; }
    static int cnnpool_openmp_enabled(void) { return 0; }
    #endif
    """
    int cnnpool_max_threads() nogil
    int cnnpool_openmp_enabled() nogil
