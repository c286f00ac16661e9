# Array checks with the NumPy C API, for the compiled entry points that take
# ndarrays rather than typed memoryviews (see _arrays.pyx).
cimport numpy as cnp

cdef object dims(cnp.ndarray a)
cdef int float_type(object x, str name) except -1
cdef cnp.ndarray checked(object a, str name, Py_ssize_t ndim, int typenum, bint writeable)
