"""Compiled kernels of :class:`~cnnpool.pooling.FractionalMaxPool2d` (its kernel tier).

Fractional max pooling (Graham, 2014) as PyTorch's CPU kernel computes it
(``aten/src/ATen/native/FractionalMaxPool2d.cpp``), plane by plane:

* **Windows.**  Along an axis of input size ``L``, output size ``O`` and
  kernel ``k``, with the plane's sample ``u`` in [0, 1), window ``i``
  starts at ``int((i + u) * alpha) - int(u * alpha)`` for ``i < O - 1``,
  ``alpha = (L - k) / (O - 1)``, and the last window at ``L - k``.  The
  arithmetic is in the input's dtype (float32 sums round as PyTorch's do),
  ``int`` truncates.  Each window is ``kh x kw`` taps, all inside the input.
  A plane's samples are ``(u_w, u_h)``: the first is for the width, as
  PyTorch's ``_random_samples[n, c]``.
* **Winner.**  Taps in row-major order; a tap replaces the best so far when
  it is greater or NaN: the first of equal maxima, the last of several NaNs,
  a window of -inf's reports its first tap.  The output is the winner's
  value, the index its flat position ``ih * W + iw`` in the plane.
* **Backward** adds each output's gradient at its index, in output order
  (windows overlap: an element that wins several receives the sum).

The entry points check the arrays (type, dtype, rank, layout, shapes), the
sizes (``O + k - 1 <= L``) and the samples (in [0, 1), no NaN: a cast of
NaN to an integer is undefined in C), and count any window start or index
outside the plane before trusting it.  Loops run in parallel over the
planes, each plane whole on one thread: results never depend on the thread
count.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

cimport numpy as cnp

from cnnpool._arrays cimport checked, dims, float_type

cnp.import_array()

# The two passes of a row of windows, in C.  A window's winner under
# PyTorch's rule (taps in row-major order; a tap replaces the best when
# greater or NaN) is the first of its maxima in row-major order, or the last
# of its NaNs; it can be found column by column, then across columns:
#
# * down: each input column's winner over the window's kh rows (value and
#   row), by the same rule;
# * across: each window start column's winner over kw column winners, where
#   a column's (v, i) replaces the best (b, bi) so far, in column order, when
#   v is NaN and (b is not, or i >= bi: later in row-major order), or when
#   neither is NaN and (v > b, or v == b and i < bi: earlier).
#
# Both passes read contiguous memory and select with bit masks (row numbers
# and columns as unsigned integers of the values' width), so gcc vectorises
# them; a window-by-window loop branches on every tap, mispredicted on about
# every other tap of random data.  Not inlined: inside the OpenMP-outlined
# plane loop gcc spilled the masks to the stack.
cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #if defined(_MSC_VER)
    #define CNNPOOL_FRAC_NOINLINE __declspec(noinline)
    #else
    #define CNNPOOL_FRAC_NOINLINE __attribute__((noinline))
    #endif
    #define CNNPOOL_FRAC_SELECT(T, U, dst, src, m)                                 \
        do {                                                                      \
            U s_, d_;                                                             \
            memcpy(&s_, &(src), sizeof(T));                                       \
            memcpy(&d_, &(dst), sizeof(T));                                       \
            d_ ^= (s_ ^ d_) & (m);                                                \
            memcpy(&(dst), &d_, sizeof(T));                                       \
        } while (0)
    #define CNNPOOL_FRAC_PASSES(DOWN, ACROSS, T, U)                                \
    static CNNPOOL_FRAC_NOINLINE void DOWN(const T* restrict row, Py_ssize_t n,    \
                                           T* restrict vb, U* restrict vi, U i)   \
    {                                                                             \
        for (Py_ssize_t c = 0; c < n; c++) {                                      \
            T v = row[c];                                                         \
            U m = -(U)((v > vb[c]) | (v != v));                                   \
            CNNPOOL_FRAC_SELECT(T, U, vb[c], v, m);                               \
            vi[c] ^= (i ^ vi[c]) & m;                                             \
        }                                                                         \
    }                                                                             \
    static CNNPOOL_FRAC_NOINLINE void ACROSS(const T* restrict vb,                 \
                                             const U* restrict vi, Py_ssize_t n,  \
                                             T* restrict hb, U* restrict hi,      \
                                             U* restrict hj, U j)                 \
    {                                                                             \
        for (Py_ssize_t c = 0; c < n; c++) {                                      \
            T v = vb[c], b = hb[c];                                               \
            U i = vi[c], bi = hi[c];                                              \
            U vn = (U)(v != v), bn = (U)(b != b);                                 \
            U take = (vn & ((bn ^ 1) | (U)(i >= bi)))                             \
                     | ((bn ^ 1) & ((U)(v > b) | ((U)(v == b) & (U)(i < bi))));   \
            U m = -take;                                                          \
            CNNPOOL_FRAC_SELECT(T, U, hb[c], v, m);                               \
            hi[c] ^= (i ^ hi[c]) & m;                                             \
            hj[c] ^= (j ^ hj[c]) & m;                                             \
        }                                                                         \
    }
    CNNPOOL_FRAC_PASSES(cnnpool_frac_down_f, cnnpool_frac_across_f, float, uint32_t)
    CNNPOOL_FRAC_PASSES(cnnpool_frac_down_d, cnnpool_frac_across_d, double, uint64_t)
    """
    void cnnpool_frac_down_f(const float* row, Py_ssize_t n, float* vb, uint32_t* vi,
                             uint32_t i) noexcept nogil
    void cnnpool_frac_down_d(const double* row, Py_ssize_t n, double* vb, uint64_t* vi,
                             uint64_t i) noexcept nogil
    void cnnpool_frac_across_f(const float* vb, const uint32_t* vi, Py_ssize_t n, float* hb,
                               uint32_t* hi, uint32_t* hj, uint32_t j) noexcept nogil
    void cnnpool_frac_across_d(const double* vb, const uint64_t* vi, Py_ssize_t n,
                               double* hb, uint64_t* hi, uint64_t* hj, uint64_t j) noexcept nogil


cdef Py_ssize_t _outside_unit(const floating* samples, Py_ssize_t count) noexcept nogil:
    """How many of ``samples`` are not in [0, 1) (NaN included)."""
    cdef Py_ssize_t i, bad = 0
    for i in range(count):
        bad += not (samples[i] >= 0 and samples[i] < 1)
    return bad


cdef Py_ssize_t _starts(floating u, Py_ssize_t size, Py_ssize_t out, Py_ssize_t kernel,
                        Py_ssize_t* seq) noexcept nogil:
    """Window starts along one axis into ``seq`` (``out`` of them); the number
    outside ``[0, size - kernel]``.

    For ``u`` in [0, 1) start ``i`` lies between ``floor(i * alpha)`` and
    ``ceil(i * alpha)`` up to rounding, inside the input; the count guards
    sizes so large that the rounding of ``alpha`` itself could matter.
    """
    cdef floating alpha
    cdef Py_ssize_t i, bad = 0, last = size - kernel
    if out > 1:
        # PyTorch's expression, in the input's dtype: (i + u) rounds in float32
        # for float32 input, and the truncations then pick the same starts.
        alpha = <floating>last / <floating>(out - 1)
        for i in range(out - 1):
            seq[i] = <Py_ssize_t>((<floating>i + u) * alpha) - <Py_ssize_t>(u * alpha)
    seq[out - 1] = last
    for i in range(out):
        bad += (seq[i] < 0) | (seq[i] > last)
    return bad


cdef void _row_loop(const floating* x, floating* out, int64_t* indices, Py_ssize_t width,
                    Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t kh, Py_ssize_t kw,
                    const Py_ssize_t* seq_h, const Py_ssize_t* seq_w,
                    floating* work) noexcept nogil:
    """A row of windows at a time: the down pass over the window rows, the
    across pass over the window columns (see the C code above), then each
    window reads the winner of its start column.  ``work`` holds five arrays
    of ``width`` elements of x's width: column winners (values, rows), start
    column winners (values, rows, columns)."""
    cdef Py_ssize_t oh, ow, c, i, j, r0, starts = width - kw + 1
    cdef floating* vb = work
    cdef floating* hb = work + 2 * width
    cdef uint32_t* vi32 = <uint32_t*>(work + width)
    cdef uint32_t* hi32 = <uint32_t*>(work + 3 * width)
    cdef uint32_t* hj32 = <uint32_t*>(work + 4 * width)
    cdef uint64_t* vi64 = <uint64_t*>(work + width)
    cdef uint64_t* hi64 = <uint64_t*>(work + 3 * width)
    cdef uint64_t* hj64 = <uint64_t*>(work + 4 * width)
    for oh in range(out_h):
        r0 = seq_h[oh]
        for c in range(width):
            vb[c] = -INFINITY
        memset(work + width, 0, width * sizeof(floating))
        for i in range(kh):
            if floating is float:
                cnnpool_frac_down_f(x + (r0 + i) * width, width, vb, vi32, <uint32_t>i)
            else:
                cnnpool_frac_down_d(x + (r0 + i) * width, width, vb, vi64, <uint64_t>i)
        # Column 0 of each window starts the across pass.
        memcpy(hb, vb, 2 * width * sizeof(floating))
        memset(hj32, 0, width * sizeof(floating))
        for j in range(1, kw):
            if floating is float:
                cnnpool_frac_across_f(vb + j, vi32 + j, starts, hb, hi32, hj32, <uint32_t>j)
            else:
                cnnpool_frac_across_d(vb + j, vi64 + j, starts, hb, hi64, hj64, <uint64_t>j)
        for ow in range(out_w):
            c = seq_w[ow]
            out[ow] = hb[c]
            if floating is float:
                indices[ow] = (r0 + hi32[c]) * width + c + hj32[c]
            else:
                indices[ow] = (r0 + <Py_ssize_t>hi64[c]) * width + c + <Py_ssize_t>hj64[c]
        out += out_w
        indices += out_w


cdef Py_ssize_t _forward_plane(const floating* x, const floating* samples, floating* out,
                               int64_t* indices, Py_ssize_t height, Py_ssize_t width,
                               Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t kh,
                               Py_ssize_t kw, Py_ssize_t* seq, floating* work) noexcept nogil:
    cdef Py_ssize_t* seq_h = seq
    cdef Py_ssize_t* seq_w = seq + out_h
    cdef Py_ssize_t bad = _starts(samples[0], width, out_w, kw, seq_w)
    bad += _starts(samples[1], height, out_h, kh, seq_h)
    if bad:
        return bad
    _row_loop(x, out, indices, width, out_h, out_w, kh, kw, seq_h, seq_w, work)
    return 0


cdef Py_ssize_t _forward(const floating* x, const floating* samples, floating* out,
                         int64_t* indices, Py_ssize_t planes, Py_ssize_t height,
                         Py_ssize_t width, Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t kh,
                         Py_ssize_t kw, Py_ssize_t* seq, floating* work,
                         int n_threads) noexcept nogil:
    cdef Py_ssize_t p, bad = 0, plane_in = height * width, plane_out = out_h * out_w
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        bad += _forward_plane(x + p * plane_in, samples + 2 * p, out + p * plane_out,
                              indices + p * plane_out, height, width, out_h, out_w, kh, kw,
                              seq + threadid() * (out_h + out_w),
                              work + threadid() * 5 * width)
    return bad


def forward(x, samples, out, indices, Py_ssize_t kernel_h, Py_ssize_t kernel_w, int n_threads):
    """Fractional max pooling of ``x`` (P, H, W) into ``out`` (P, OH, OW).

    ``samples`` (P, 2) in ``x``'s dtype holds each plane's ``(u_w, u_h)``,
    each in [0, 1); ``indices`` (P, OH, OW) int64 receives the winners' flat
    positions ``ih * W + iw``.  Needs ``OH + kernel_h - 1 <= H`` and likewise
    for the width.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef cnp.ndarray asm = checked(samples, "samples", 2, typenum, False)
    cdef cnp.ndarray ao = checked(out, "out", 3, typenum, True)
    cdef cnp.ndarray ai = checked(indices, "indices", 3, cnp.NPY_INT64, True)
    cdef Py_ssize_t planes = ax.shape[0], height = ax.shape[1], width = ax.shape[2]
    cdef Py_ssize_t out_h = ao.shape[1], out_w = ao.shape[2]
    if ao.shape[0] != planes or dims(ai) != dims(ao):
        raise ValueError(
            f"out {dims(ao)} and indices {dims(ai)} must both be (P, OH, OW) with P = "
            f"{planes} from x {dims(ax)}")
    if asm.shape[0] != planes or asm.shape[1] != 2:
        raise ValueError(f"samples must have shape (P, 2) = ({planes}, 2), got {dims(asm)}")
    if kernel_h < 1 or kernel_w < 1:
        raise ValueError(f"kernel size must be >= 1, got ({kernel_h}, {kernel_w})")
    if planes == 0 or out_h * out_w == 0:
        return
    if out_h + kernel_h - 1 > height or out_w + kernel_w - 1 > width:
        raise ValueError(
            f"output (OH, OW) = ({out_h}, {out_w}) with kernel ({kernel_h}, {kernel_w}) "
            f"needs an input of at least ({out_h + kernel_h - 1}, {out_w + kernel_w - 1}), "
            f"got x {dims(ax)}")
    # Per thread: the window starts (OH + OW) and the row loop's five arrays
    # of W elements of x's width.
    cdef cnp.ndarray seq_scratch = cnp.PyArray_EMPTY(
        1, [max(n_threads, 1) * (out_h + out_w)], cnp.NPY_INTP, 0)
    cdef cnp.ndarray work_scratch = cnp.PyArray_EMPTY(
        1, [max(n_threads, 1) * 5 * width], typenum, 0)
    cdef Py_ssize_t* seq = <Py_ssize_t*>cnp.PyArray_DATA(seq_scratch)
    if typenum == cnp.NPY_FLOAT32 and max(kernel_h, kernel_w) > 0xFFFFFFFF:
        # Window rows and columns ride in 32 bits beside float32 values.
        raise ValueError(f"kernel ({kernel_h}, {kernel_w}) is over 2**32 - 1")
    cdef void* work = cnp.PyArray_DATA(work_scratch)
    cdef void* xp = cnp.PyArray_DATA(ax)
    cdef void* sp = cnp.PyArray_DATA(asm)
    cdef void* op = cnp.PyArray_DATA(ao)
    cdef int64_t* ip = <int64_t*>cnp.PyArray_DATA(ai)
    cdef Py_ssize_t bad
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            bad = _outside_unit(<const float*>sp, 2 * planes)
        else:
            bad = _outside_unit(<const double*>sp, 2 * planes)
    if bad:
        raise ValueError(f"samples hold {bad} values outside [0, 1) (or NaN)")
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            bad = _forward(<const float*>xp, <const float*>sp, <float*>op, ip, planes, height,
                           width, out_h, out_w, kernel_h, kernel_w, seq, <float*>work,
                           n_threads)
        else:
            bad = _forward(<const double*>xp, <const double*>sp, <double*>op, ip, planes,
                           height, width, out_h, out_w, kernel_h, kernel_w, seq,
                           <double*>work, n_threads)
    if bad:
        raise ValueError(f"the samples put {bad} windows outside the input {dims(ax)}")


cdef Py_ssize_t _backward(const floating* grad, const int64_t* indices, floating* gin,
                          Py_ssize_t planes, Py_ssize_t plane_out, Py_ssize_t plane_in,
                          int n_threads) noexcept nogil:
    cdef Py_ssize_t p, o, at, bad = 0
    cdef const floating* g
    cdef const int64_t* idx
    cdef floating* gi
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        g = grad + p * plane_out
        idx = indices + p * plane_out
        gi = gin + p * plane_in
        memset(gi, 0, plane_in * sizeof(floating))
        for o in range(plane_out):
            at = idx[o]
            if 0 <= at < plane_in:
                gi[at] += g[o]
            else:
                bad += 1
    return bad


def backward(grad_out, indices, grad_in, int n_threads):
    """``grad_in`` (P, H, W) = 0, then ``grad_out[p, o]`` added at ``indices[p, o]``.

    ``grad_out`` and ``indices`` (int64) are (P, OH, OW), the indices those
    :func:`forward` wrote; windows overlap, so shared winners accumulate.
    """
    cdef int typenum = float_type(grad_out, "grad_out")
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 3, typenum, False)
    cdef cnp.ndarray ai = checked(indices, "indices", 3, cnp.NPY_INT64, False)
    cdef cnp.ndarray agi = checked(grad_in, "grad_in", 3, typenum, True)
    if dims(ai) != dims(ag) or agi.shape[0] != ag.shape[0]:
        raise ValueError(
            f"grad_out {dims(ag)}, indices {dims(ai)} and grad_in {dims(agi)} must be "
            f"(P, OH, OW), (P, OH, OW) and (P, H, W)")
    cdef Py_ssize_t planes = ag.shape[0], plane_out = ag.shape[1] * ag.shape[2]
    cdef Py_ssize_t plane_in = agi.shape[1] * agi.shape[2]
    cdef void* gp = cnp.PyArray_DATA(ag)
    cdef const int64_t* ip = <const int64_t*>cnp.PyArray_DATA(ai)
    cdef void* gip = cnp.PyArray_DATA(agi)
    cdef Py_ssize_t bad
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            bad = _backward(<const float*>gp, ip, <float*>gip, planes, plane_out, plane_in,
                            n_threads)
        else:
            bad = _backward(<const double*>gp, ip, <double*>gip, planes, plane_out, plane_in,
                            n_threads)
    if bad:
        raise ValueError(
            f"indices hold {bad} positions outside the (H, W) = ({agi.shape[1]}, "
            f"{agi.shape[2]}) plane (the indices of another input size?)")
