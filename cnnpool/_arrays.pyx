"""Array checks with the NumPy C API, shared by the compiled entry points.

Acquiring a typed memoryview is a noticeable part of a tiny layer's whole
call, so the compiled entry points (``conv._direct``, ``_elementwise``,
``pooling._ext._kernels``, ``_windows``, ``_adaptive`` and the strategy
driver ``pooling.tiers._strategy``) take ndarrays instead and check them
here: that each is an ndarray of the expected rank and dtype (native byte
order), aligned, C order, and writeable where it is an output.  Also the
reference test of ``cnnpool._buffers``.  Nothing here is public.
"""

cimport numpy as cnp
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(PyObject *o)

cnp.import_array()


cdef object dims(cnp.ndarray a):
    """The shape as a Python tuple (``a.shape`` is a C pointer on a typed ndarray)."""
    return (<object> a).shape


cdef int float_type(object x, str name) except -1:
    """The NumPy type number of ``x``, which must be a float32 or float64 ndarray."""
    if not cnp.PyArray_Check(x):
        raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}")
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray> x)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    return typenum


cdef cnp.ndarray checked(object a, str name, Py_ssize_t ndim, int typenum, bint writeable):
    """``a`` as an ndarray after checking it: rank ``ndim`` (any when -1), dtype, C order."""
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a NumPy array, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray> a
    if ndim >= 0 and cnp.PyArray_NDIM(arr) != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {dims(arr)}")
    if cnp.PyArray_TYPE(arr) != typenum:
        raise TypeError(
            f"{name} must have dtype {cnp.PyArray_DescrFromType(typenum)}, got {arr.dtype}"
        )
    if not cnp.PyArray_ISNOTSWAPPED(arr):
        raise ValueError(f"{name} must be in native byte order, got dtype {arr.dtype.str}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{name} must be C-contiguous")
    if not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{name} must be aligned to its dtype")
    if writeable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} must be writeable")
    return arr


def sole_reference(dict cache, object key):
    """True when ``cache[key]`` exists and the dict holds the only reference to it.

    Read on the dict's own (borrowed) pointer, so the answer does not depend
    on how the interpreter counts references to locals and arguments, which
    changed in CPython 3.14 (a ``sys.getrefcount`` threshold would not).
    """
    cdef PyObject *item = PyDict_GetItem(cache, key)
    return item != NULL and Py_REFCNT(item) == 1
