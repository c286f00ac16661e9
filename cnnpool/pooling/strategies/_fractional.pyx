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
from libc.stdint cimport int64_t
from libc.string cimport memset

cimport numpy as cnp

from cnnpool._arrays cimport checked, dims, float_type

cnp.import_array()

# One pass of the row loop over a row of windows, in C.  The update selects
# with bit masks: gcc compiled Cython's conditional expressions (and C's) to
# branches, mispredicted on about every other tap of random data (10 ns a
# tap), and does not vectorise the pass (a gather with generic tuning).
cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #define CNNPOOL_FRAC_PASS(NAME, T, U)                                          \
    static inline void NAME(const T* restrict row, const Py_ssize_t* restrict cols, \
                            Py_ssize_t n, T* restrict best, T* restrict tap, T t) \
    {                                                                             \
        U ut;                                                                     \
        memcpy(&ut, &t, sizeof(T));                                               \
        for (Py_ssize_t o = 0; o < n; o++) {                                      \
            T v = row[cols[o]], b = best[o];                                      \
            U m = -(U)((v > b) | (v != v)), uv, ub, uk;                           \
            memcpy(&uv, &v, sizeof(T));                                           \
            memcpy(&ub, &b, sizeof(T));                                           \
            memcpy(&uk, &tap[o], sizeof(T));                                      \
            ub ^= (uv ^ ub) & m;                                                  \
            uk ^= (ut ^ uk) & m;                                                  \
            memcpy(&best[o], &ub, sizeof(T));                                     \
            memcpy(&tap[o], &uk, sizeof(T));                                      \
        }                                                                         \
    }
    CNNPOOL_FRAC_PASS(cnnpool_frac_pass_f, float, uint32_t)
    CNNPOOL_FRAC_PASS(cnnpool_frac_pass_d, double, uint64_t)
    """
    void cnnpool_frac_pass_f(const float* row, const Py_ssize_t* cols, Py_ssize_t n,
                             float* best, float* tap, float t) noexcept nogil
    void cnnpool_frac_pass_d(const double* row, const Py_ssize_t* cols, Py_ssize_t n,
                             double* best, double* tap, double t) noexcept nogil


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


cdef enum:
    # Tap numbers ride in the input's float type (exact below 2**24) in the
    # row loop; windows of more taps take the per-window loop.
    ROW_LOOP_MAX_TAPS = 1 << 24


cdef void _window_loop(const floating* x, floating* out, int64_t* indices, Py_ssize_t width,
                       Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t kh, Py_ssize_t kw,
                       const Py_ssize_t* seq_h, const Py_ssize_t* seq_w) noexcept nogil:
    """One window at a time, taps in row-major order (PyTorch's loop)."""
    cdef Py_ssize_t oh, ow, i, j, start, best_at
    cdef const floating* row
    cdef floating v, best
    for oh in range(out_h):
        for ow in range(out_w):
            start = seq_h[oh] * width + seq_w[ow]
            best = -INFINITY
            best_at = start
            for i in range(kh):
                row = x + start + i * width
                for j in range(kw):
                    v = row[j]
                    if v > best or v != v:
                        best = v
                        best_at = start + i * width + j
            out[oh * out_w + ow] = best
            indices[oh * out_w + ow] = best_at


cdef void _row_loop(const floating* x, floating* out, int64_t* indices, Py_ssize_t width,
                    Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t kh, Py_ssize_t kw,
                    const Py_ssize_t* seq_h, const Py_ssize_t* seq_w,
                    const Py_ssize_t* offsets, floating* best, floating* tap) noexcept nogil:
    """A row of windows at a time, tap by tap: for each tap, one pass over the
    row's windows (a gather from one input row) updates each window's best
    value and tap number, kept in ``best`` and ``tap`` (``out_w`` each).
    ``offsets[t]`` is tap ``t``'s offset ``i * width + j`` from its window's
    origin (a table: no division per window).

    Every window still sees its taps in row-major order under PyTorch's rule,
    so the results are :func:`_window_loop`'s; the passes are select-only and
    vectorise, where the per-window loop branches on every tap.
    """
    cdef Py_ssize_t oh, ow, i, j, r0
    cdef const floating* row
    cdef floating t
    for oh in range(out_h):
        r0 = seq_h[oh]
        for ow in range(out_w):
            best[ow] = -INFINITY
            tap[ow] = 0
        t = 0
        for i in range(kh):
            row = x + (r0 + i) * width
            for j in range(kw):
                if floating is float:
                    cnnpool_frac_pass_f(row + j, seq_w, out_w, best, tap, t)
                else:
                    cnnpool_frac_pass_d(row + j, seq_w, out_w, best, tap, t)
                t = t + 1
        for ow in range(out_w):
            out[ow] = best[ow]
            indices[ow] = r0 * width + seq_w[ow] + offsets[<Py_ssize_t>tap[ow]]
        out += out_w
        indices += out_w


cdef Py_ssize_t _forward_plane(const floating* x, const floating* samples, floating* out,
                               int64_t* indices, Py_ssize_t height, Py_ssize_t width,
                               Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t kh,
                               Py_ssize_t kw, const Py_ssize_t* offsets, Py_ssize_t* seq,
                               floating* work) noexcept nogil:
    cdef Py_ssize_t* seq_h = seq
    cdef Py_ssize_t* seq_w = seq + out_h
    cdef Py_ssize_t bad = _starts(samples[0], width, out_w, kw, seq_w)
    bad += _starts(samples[1], height, out_h, kh, seq_h)
    if bad:
        return bad
    if kh * kw < ROW_LOOP_MAX_TAPS:
        _row_loop(x, out, indices, width, out_h, out_w, kh, kw, seq_h, seq_w, offsets, work,
                  work + out_w)
    else:
        _window_loop(x, out, indices, width, out_h, out_w, kh, kw, seq_h, seq_w)
    return 0


cdef Py_ssize_t _forward(const floating* x, const floating* samples, floating* out,
                         int64_t* indices, Py_ssize_t planes, Py_ssize_t height,
                         Py_ssize_t width, Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t kh,
                         Py_ssize_t kw, const Py_ssize_t* offsets, Py_ssize_t* seq,
                         floating* work, int n_threads) noexcept nogil:
    cdef Py_ssize_t p, bad = 0, plane_in = height * width, plane_out = out_h * out_w
    for p in prange(planes, num_threads=n_threads, schedule="static"):
        bad += _forward_plane(x + p * plane_in, samples + 2 * p, out + p * plane_out,
                              indices + p * plane_out, height, width, out_h, out_w, kh, kw,
                              offsets, seq + threadid() * (out_h + out_w),
                              work + threadid() * 2 * out_w)
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
    # Per thread: the window starts (OH + OW) and the row loop's best values
    # and tap numbers (2 * OW, in x's dtype).
    cdef cnp.ndarray seq_scratch = cnp.PyArray_EMPTY(
        1, [max(n_threads, 1) * (out_h + out_w)], cnp.NPY_INTP, 0)
    cdef cnp.ndarray work_scratch = cnp.PyArray_EMPTY(
        1, [max(n_threads, 1) * 2 * out_w], typenum, 0)
    cdef Py_ssize_t* seq = <Py_ssize_t*>cnp.PyArray_DATA(seq_scratch)
    cdef Py_ssize_t* offsets = NULL
    cdef cnp.ndarray offset_table
    cdef Py_ssize_t t
    if kernel_h * kernel_w < ROW_LOOP_MAX_TAPS:
        offset_table = cnp.PyArray_EMPTY(1, [kernel_h * kernel_w], cnp.NPY_INTP, 0)
        offsets = <Py_ssize_t*>cnp.PyArray_DATA(offset_table)
        for t in range(kernel_h * kernel_w):
            offsets[t] = (t // kernel_w) * width + t % kernel_w
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
                           width, out_h, out_w, kernel_h, kernel_w, offsets, seq,
                           <float*>work, n_threads)
        else:
            bad = _forward(<const double*>xp, <const double*>sp, <double*>op, ip, planes,
                           height, width, out_h, out_w, kernel_h, kernel_w, offsets, seq,
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
