"""Compiled ReLU: the forward that also records where the input was positive,
and the backward that passes the gradient only there.

NumPy needs two passes for the forward (``x > 0`` and ``np.maximum``), and
its ``np.where(mask, grad, 0)`` for the backward branches per element: on a
batch of activations, where the mask is a coin toss, that is mispredicted
half the time and took ten times a multiply.  ``grad * mask`` would be fast
but wrong in PyTorch's terms: an inf or NaN gradient at a non-positive
input must give 0 (``threshold_backward``), not NaN.  Here both are one
branch-free pass the compiler vectorises.

Arrays are checked with the NumPy C API in the thin entry points (dtype,
C order, sizes, writeability), then the loops run without bounds checks,
in chunks over OpenMP threads when there are enough elements.  Each element
is independent, so the thread count cannot change a result.
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint32_t, uint64_t

from cnnpool._arrays cimport checked, dims, float_type

cnp.import_array()

# Elements per parallel chunk: big enough that waking a thread pays.
cdef Py_ssize_t CHUNK = 1 << 15


cdef void _same_size(cnp.ndarray a, cnp.ndarray b, str name_a, str name_b) except *:
    if cnp.PyArray_SIZE(a) != cnp.PyArray_SIZE(b):
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of elements, got shapes "
            f"{dims(a)} and {dims(b)}"
        )


# One thread runs the whole loop outside OpenMP: a parallel region costs
# ~0.4 us even with one thread, as much as a small activation's work.
cdef void _forward(const floating *x, floating *out, cnp.npy_bool *positive, Py_ssize_t n,
                   int n_threads) noexcept nogil:
    cdef Py_ssize_t chunk
    if n_threads > 1:
        for chunk in prange((n + CHUNK - 1) // CHUNK, num_threads=n_threads, schedule="static"):
            _forward_range(x, out, positive, chunk * CHUNK, min(n, (chunk + 1) * CHUNK))
    else:
        _forward_range(x, out, positive, 0, n)


cdef inline void _forward_range(const floating *x, floating *out, cnp.npy_bool *positive,
                                Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating v
    for i in range(start, stop):
        v = x[i]
        positive[i] = v > 0
        # NaN > 0 and NaN < 0 are both false: a NaN passes through, as in
        # torch.relu; -0.0 and negatives become +0.0.
        out[i] = v if v > 0 or v != v else 0


cdef void _backward(const floating *grad, const cnp.npy_bool *positive, floating *out,
                    Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t chunk
    if n_threads > 1:
        for chunk in prange((n + CHUNK - 1) // CHUNK, num_threads=n_threads, schedule="static"):
            _backward_range(grad, positive, out, chunk * CHUNK, min(n, (chunk + 1) * CHUNK))
    else:
        _backward_range(grad, positive, out, 0, n)


cdef inline void _backward_range(const floating *grad, const cnp.npy_bool *positive,
                                 floating *out, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    # A bit mask, not a branch or a select: ``positive`` is a coin toss per
    # element, so a branch mispredicts half the time, and at the baseline
    # (SSE2) target the compiler does not turn ``grad if positive else 0``
    # into a vector select.  ``grad & -positive`` keeps the gradient's bits
    # (inf and NaN included) or gives +0.0, and vectorises on every target.
    cdef Py_ssize_t i
    cdef const uint32_t* g32
    cdef uint32_t* o32
    cdef const uint64_t* g64
    cdef uint64_t* o64
    if floating is float:
        g32 = <const uint32_t*> grad
        o32 = <uint32_t*> out
        for i in range(start, stop):
            o32[i] = g32[i] & (0 - <uint32_t> (positive[i] != 0))
    else:
        g64 = <const uint64_t*> grad
        o64 = <uint64_t*> out
        for i in range(start, stop):
            o64[i] = g64[i] & (0 - <uint64_t> (positive[i] != 0))


def relu_forward(x, out, positive, int n_threads):
    """``out = max(x, 0)`` (NaN kept) and ``positive = x > 0``, element by element.

    ``x`` and ``out``: float32 or float64, the same dtype and size, C order;
    ``positive``: bool of that size.  ``n_threads`` caps the threads.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", -1, typenum, False)
    cdef cnp.ndarray aout = checked(out, "out", -1, typenum, True)
    cdef cnp.ndarray apos = checked(positive, "positive", -1, cnp.NPY_BOOL, True)
    _same_size(ax, aout, "x", "out")
    _same_size(ax, apos, "x", "positive")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(ax)
    if n < 2 * CHUNK or n_threads < 1:
        n_threads = 1
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _forward(<float *> cnp.PyArray_DATA(ax), <float *> cnp.PyArray_DATA(aout),
                     <cnp.npy_bool *> cnp.PyArray_DATA(apos), n, n_threads)
        else:
            _forward(<double *> cnp.PyArray_DATA(ax), <double *> cnp.PyArray_DATA(aout),
                     <cnp.npy_bool *> cnp.PyArray_DATA(apos), n, n_threads)


def relu_backward(grad, positive, out, int n_threads):
    """``out = grad where positive, else 0`` (an inf or NaN gradient included).

    Arrays as in :func:`relu_forward`: ``grad`` and ``out`` of one float
    dtype, ``positive`` bool, all of one size, C order.
    """
    cdef int typenum = float_type(grad, "grad")
    cdef cnp.ndarray ag = checked(grad, "grad", -1, typenum, False)
    cdef cnp.ndarray apos = checked(positive, "positive", -1, cnp.NPY_BOOL, False)
    cdef cnp.ndarray aout = checked(out, "out", -1, typenum, True)
    _same_size(ag, apos, "grad", "positive")
    _same_size(ag, aout, "grad", "out")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(ag)
    if n < 2 * CHUNK or n_threads < 1:
        n_threads = 1
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _backward(<float *> cnp.PyArray_DATA(ag), <cnp.npy_bool *> cnp.PyArray_DATA(apos),
                      <float *> cnp.PyArray_DATA(aout), n, n_threads)
        else:
            _backward(<double *> cnp.PyArray_DATA(ag), <cnp.npy_bool *> cnp.PyArray_DATA(apos),
                      <double *> cnp.PyArray_DATA(aout), n, n_threads)
