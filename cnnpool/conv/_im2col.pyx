"""Compiled im2col and col2im: the data movement of a GEMM convolution.

A 2-D convolution of ``x`` (N, C, H, W) with weights (O, C, kh, kw) is a
matrix product once every receptive field is unrolled into a column:

``cols[n, (c*kh + i)*kw + j, oh*OW + ow] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]``

(zero where the tap falls in the padding).  Then ``out[n] = W (O, C*kh*kw)
@ cols[n]``, and the backward pass needs the transpose of the unrolling:
``col2im`` adds every column entry back onto the input element it was read
from.  Neighbouring receptive fields overlap whenever the stride is smaller
than the dilated kernel, so col2im *accumulates*.

The Python layer (``cnnpool/conv/layer.py``) validates dtypes and geometry; these
entry points re-check the shapes they are given (a few integer comparisons,
with the GIL) because the loops then run with bounds checks off.  Images
are split across threads, never one image between threads, so col2im's
``+=`` cannot race and the result does not depend on the thread count.

For each tap ``(i, j)`` the output columns whose input column lands inside
the image form one run ``[ow_lo, ow_hi)``; the loops copy that run and
write zeros around it, so there is no per-element padding test.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset


cdef inline Py_ssize_t _run_start(Py_ssize_t off, Py_ssize_t stride_w) noexcept nogil:
    """First output column whose tap reads input column ``ow*stride_w + off >= 0``.

    Only a non-negative numerator is divided, so C's truncating division is
    a true ceiling division here.
    """
    if off >= 0:
        return 0
    return (-off + stride_w - 1) // stride_w


cdef inline Py_ssize_t _run_stop(Py_ssize_t off, Py_ssize_t width, Py_ssize_t out_w,
                                 Py_ssize_t stride_w) noexcept nogil:
    """One past the last output column whose tap reads ``ow*stride_w + off < width``."""
    cdef Py_ssize_t stop
    if width - off <= 0:
        return 0
    stop = (width - off + stride_w - 1) // stride_w
    return stop if stop < out_w else out_w


cdef void _check(tuple x_shape, tuple cols_shape, Py_ssize_t kernel_h, Py_ssize_t kernel_w,
                 Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                 Py_ssize_t dil_h, Py_ssize_t dil_w, Py_ssize_t out_h,
                 Py_ssize_t out_w, bint extra_rows, Py_ssize_t pad_bottom,
                 Py_ssize_t pad_right) except *:
    """Refuse shapes that would make the unchecked loops read or write out of bounds.

    With ``extra_rows``, ``cols`` may have more than ``C*kh*kw`` rows.  A
    negative ``pad_bottom``/``pad_right`` means "as ``pad_h``/``pad_w``".
    """
    if pad_bottom < 0:
        pad_bottom = pad_h
    if pad_right < 0:
        pad_right = pad_w
    if min(kernel_h, kernel_w, stride_h, stride_w, dil_h, dil_w) < 1 or min(pad_h, pad_w) < 0:
        raise ValueError(
            f"kernel, stride and dilation must be >= 1 and padding >= 0, got "
            f"kernel=({kernel_h}, {kernel_w}), stride=({stride_h}, {stride_w}), "
            f"padding=({pad_h}, {pad_w}), dilation=({dil_h}, {dil_w})"
        )
    n, c, h, w = x_shape
    expected_h = (h + pad_h + pad_bottom - dil_h * (kernel_h - 1) - 1) // stride_h + 1
    expected_w = (w + pad_w + pad_right - dil_w * (kernel_w - 1) - 1) // stride_w + 1
    if (out_h, out_w) != (expected_h, expected_w) or out_h < 1 or out_w < 1:
        raise ValueError(
            f"output size ({out_h}, {out_w}) does not match the geometry, which "
            f"gives ({expected_h}, {expected_w}) for input of shape {x_shape}"
        )
    expected = (n, c * kernel_h * kernel_w, out_h * out_w)
    if extra_rows and cols_shape[0] == n and cols_shape[2] == out_h * out_w \
            and cols_shape[1] >= expected[1]:
        return
    if cols_shape != expected:
        raise ValueError(
            f"cols must have shape (N, C*kh*kw, OH*OW) = {expected}, got {cols_shape}"
        )


cdef void _rows_contiguous(Py_ssize_t stride, Py_ssize_t itemsize, Py_ssize_t length) except *:
    """The loops walk a row of ``cols`` with a plain pointer: its elements must be adjacent."""
    if stride != itemsize and length > 1:
        raise ValueError(
            f"cols must have contiguous rows (last stride {itemsize} bytes), got {stride}"
        )


def im2col(const floating[:, :, :, ::1] x, floating[:, :, :] cols,
           Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
           Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t dil_h, Py_ssize_t dil_w,
           Py_ssize_t out_h, Py_ssize_t out_w, int n_threads, Py_ssize_t pad_bottom=-1,
           Py_ssize_t pad_right=-1):
    """Unroll every receptive field of ``x`` into a column of ``cols``.

    Parameters
    ----------
    x : floating[N, C, H, W], C-contiguous
        The input images.
    cols : floating[N, R, OH*OW], ``R >= C*kh*kw``
        Each row contiguous (any strides between rows and images: ``Conv2d``
        passes a (N, R, P) view of one (R, N*P) matrix for a batch-wide GEMM).
        Rows ``[0, C*kh*kw)`` are written completely (padding taps get 0),
        so a reused buffer needs no clearing.  Rows past those are left
        untouched: ``Conv2d`` keeps a row of ones there for its bias.
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w : int
        The convolution geometry.
    out_h, out_w : int
        Output size; must equal what the geometry gives.
    n_threads : int
        Threads for the loop over images (1 stays on the calling thread).
    pad_bottom, pad_right : int
        Padding at the bottom and right when it differs from ``pad_h`` (top)
        and ``pad_w`` (left); negative (the default): the same.  The loops
        need only the top and left padding; these check ``out_h, out_w``.
    """
    _check((x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
           (cols.shape[0], cols.shape[1], cols.shape[2]), kernel_h, kernel_w, stride_h, stride_w,
           pad_h, pad_w, dil_h, dil_w, out_h, out_w, True, pad_bottom, pad_right)
    _rows_contiguous(cols.strides[2], sizeof(floating), cols.shape[2])
    cdef Py_ssize_t n_img = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t n, c, i, j, oh, ow, ih, row, off, ow_lo, ow_hi
    cdef floating *dst
    cdef const floating *src
    with nogil:
        for n in prange(n_img, num_threads=n_threads, schedule="static"):
            for c in range(channels):
                for i in range(kernel_h):
                    for j in range(kernel_w):
                        row = (c * kernel_h + i) * kernel_w + j
                        off = j * dil_w - pad_w
                        # Tap j of output column ow reads input column ow*stride_w + off.
                        ow_hi = _run_stop(off, width, out_w, stride_w)
                        ow_lo = _run_start(off, stride_w)
                        if ow_lo > ow_hi:
                            ow_lo = ow_hi
                        for oh in range(out_h):
                            dst = &cols[n, row, oh * out_w]
                            ih = oh * stride_h - pad_h + i * dil_h
                            if ih < 0 or ih >= height:
                                memset(dst, 0, out_w * sizeof(floating))
                                continue
                            src = &x[n, c, ih, 0]
                            for ow in range(ow_lo):
                                dst[ow] = 0
                            if stride_w == 1:
                                # Contiguous run: a plain copy the compiler vectorises.
                                for ow in range(ow_lo, ow_hi):
                                    dst[ow] = src[ow + off]
                            else:
                                for ow in range(ow_lo, ow_hi):
                                    dst[ow] = src[ow * stride_w + off]
                            for ow in range(ow_hi, out_w):
                                dst[ow] = 0


def col2im(const floating[:, :, :] cols, floating[:, :, :, ::1] x,
           Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
           Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t dil_h, Py_ssize_t dil_w,
           Py_ssize_t out_h, Py_ssize_t out_w, int n_threads, Py_ssize_t pad_bottom=-1,
           Py_ssize_t pad_right=-1):
    """Sum every column entry of ``cols`` onto the input element it came from.

    The adjoint of :func:`im2col`.  ``x`` (N, C, H, W) is overwritten: each
    plane is zeroed right before its entries are added (while it is in
    cache), so the caller may pass uninitialised memory.  Entries that came
    from padding are dropped; overlapping receptive fields accumulate.
    Arguments as in :func:`im2col`.
    """
    _rows_contiguous(cols.strides[2], sizeof(floating), cols.shape[2])
    _check((x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
           (cols.shape[0], cols.shape[1], cols.shape[2]), kernel_h, kernel_w, stride_h, stride_w,
           pad_h, pad_w, dil_h, dil_w, out_h, out_w, False, pad_bottom, pad_right)
    cdef Py_ssize_t n_img = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t n, c, i, j, oh, ow, ih, row, off, ow_lo, ow_hi
    cdef Py_ssize_t plane = height * width
    cdef const floating *src
    cdef floating *dst
    with nogil:
        for n in prange(n_img, num_threads=n_threads, schedule="static"):
            for c in range(channels):
                if plane > 0:
                    memset(&x[n, c, 0, 0], 0, plane * sizeof(floating))
                for i in range(kernel_h):
                    for j in range(kernel_w):
                        row = (c * kernel_h + i) * kernel_w + j
                        off = j * dil_w - pad_w
                        # Tap j of output column ow reads input column ow*stride_w + off.
                        ow_hi = _run_stop(off, width, out_w, stride_w)
                        ow_lo = _run_start(off, stride_w)
                        if ow_lo > ow_hi:
                            ow_lo = ow_hi
                        for oh in range(out_h):
                            ih = oh * stride_h - pad_h + i * dil_h
                            if ih < 0 or ih >= height:
                                continue
                            src = &cols[n, row, oh * out_w]
                            dst = &x[n, c, ih, 0]
                            if stride_w == 1:
                                for ow in range(ow_lo, ow_hi):
                                    dst[ow + off] += src[ow]
                            else:
                                for ow in range(ow_lo, ow_hi):
                                    dst[ow * stride_w + off] += src[ow]
