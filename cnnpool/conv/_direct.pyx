"""Direct convolution with unit stride: forward, input gradient, weight gradient.

im2col + GEMM writes every receptive field out (``C*kh*kw`` times the input)
and hands BLAS a matrix product whose small side is the number of output
channels, a shape OpenBLAS runs at a third of its peak.  With unit stride
the ``kh*kw`` taps of a run of neighbouring output pixels are runs of
neighbouring inputs, so a register-blocked kernel can read the (padded)
input directly: 4 output channels times 2 vectors of pixels per block (4
vectors with AVX-512), one fused multiply-add per weight and vector
(``_direct.h``).  The input
gradient is the same kernel run on the zero-padded output gradient with the
weights transposed and flipped; the weight gradient is a blocked
correlation of the output gradient with the padded input.

``Conv2d`` picks this path when :data:`SIMD` is true (the build had AVX2 and
FMA) and the stride is 1; otherwise it keeps im2col + GEMM.

Images are handed to OpenMP threads one at a time, as each thread becomes
free (dynamic schedule: on a VM whose second core comes and goes, a thread
that stalls does not hold back a fixed half of the batch).  The weight and
bias gradients are sums over the whole batch, the output channels split
between threads, each sum in one fixed order: results do not depend on the
thread count.  They may
differ from im2col + BLAS in the last bits (another summation order).

The checks below run with the GIL, before the unchecked loops.  The entry
points take NumPy arrays and check them with the NumPy C API rather than
through typed memoryviews: acquiring a memoryview costs about a microsecond,
and a tiny network's conv layer would otherwise spend more time there than
convolving.
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdlib cimport free, malloc

from cnnpool._arrays cimport checked, dims, float_type

cnp.import_array()

cdef extern from "_direct.h" nogil:
    bint CNNPOOL_CONV_SIMD
    bint CNNPOOL_CONV_AVX512
    Py_ssize_t CNNPOOL_CONV_OB
    Py_ssize_t CNNPOOL_CONV_MARGIN
    void cnnpool_pad_f32(const float *x, float *xp, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t pt, Py_ssize_t pl)
    void cnnpool_pad_f64(const double *x, double *xp, Py_ssize_t C, Py_ssize_t H,
                         Py_ssize_t W, Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t pt,
                         Py_ssize_t pl)
    void cnnpool_plane_sums_f32(const float *g, float *out, Py_ssize_t M, Py_ssize_t P)
    void cnnpool_plane_sums_f64(const double *g, double *out, Py_ssize_t M, Py_ssize_t P)
    void cnnpool_conv_fwd_f32(const float *xp, const Py_ssize_t *offs, Py_ssize_t K,
                              const float *wpack, const float *bias, float *out,
                              Py_ssize_t M, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t Wp)
    void cnnpool_conv_fwd_f64(const double *xp, const Py_ssize_t *offs, Py_ssize_t K,
                              const double *wpack, const double *bias, double *out,
                              Py_ssize_t M, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t Wp)
    void cnnpool_conv_wgrad_f32(const float *xp, const Py_ssize_t *offs, Py_ssize_t K,
                                const float *g, float *gw, Py_ssize_t M, Py_ssize_t OH,
                                Py_ssize_t OW, Py_ssize_t Wp, Py_ssize_t N, Py_ssize_t xs,
                                Py_ssize_t gs)
    void cnnpool_conv_wgrad_f64(const double *xp, const Py_ssize_t *offs, Py_ssize_t K,
                                const double *g, double *gw, Py_ssize_t M, Py_ssize_t OH,
                                Py_ssize_t OW, Py_ssize_t Wp, Py_ssize_t N, Py_ssize_t xs,
                                Py_ssize_t gs)

#: True when the kernels were compiled with AVX2 and FMA (the fast path).
SIMD = bool(CNNPOOL_CONV_SIMD)
#: True when the kernels use 512-bit vectors (the build had AVX-512F).
AVX512 = bool(CNNPOOL_CONV_AVX512)
#: Elements a padded buffer needs after its last image (vector over-reads).
MARGIN = CNNPOOL_CONV_MARGIN


# ------------------------------------------------------------------ helpers
cdef Py_ssize_t *_offsets(Py_ssize_t C, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t Hp,
                          Py_ssize_t Wp, Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    """Tap k = (c, i, j) of pixel (oh, ow) reads padded element offs[k] + oh*Wp + ow.

    NULL when out of memory.
    """
    cdef Py_ssize_t c, i, j, k = 0
    cdef Py_ssize_t *offs = <Py_ssize_t *> malloc(max(C * kh * kw, 1) * sizeof(Py_ssize_t))
    if offs == NULL:
        return NULL
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                offs[k] = (c * Hp + i * dh) * Wp + j * dw
                k += 1
    return offs


cdef floating *_pack(const floating *w, Py_ssize_t M, Py_ssize_t C, Py_ssize_t kh,
                     Py_ssize_t kw, bint transpose) noexcept nogil:
    """Weights (M, C, kh, kw) in register-block order ``[ob][k][OB]``; NULL when out of memory.

    Rows past the last output channel are zero.  With ``transpose`` the
    packed filters are those of the input gradient: output channel c, tap
    (m, i, j) holds ``w[m, c, kh-1-i, kw-1-j]``.
    """
    cdef Py_ssize_t rows = C if transpose else M
    cdef Py_ssize_t cols = (M if transpose else C) * kh * kw
    cdef Py_ssize_t ob = CNNPOOL_CONV_OB
    cdef Py_ssize_t nob = (rows + ob - 1) // ob
    cdef Py_ssize_t r, k, a, i, j
    cdef floating *pack = <floating *> malloc(max(nob * cols * ob, 1) * sizeof(floating))
    cdef floating *dst
    if pack == NULL:
        return NULL
    for r in range(nob * ob):
        dst = pack + (r // ob) * cols * ob + r % ob
        k = 0
        for a in range(M if transpose else C):
            for i in range(kh):
                for j in range(kw):
                    if r >= rows:
                        dst[k * ob] = 0
                    elif transpose:
                        dst[k * ob] = w[((a * C + r) * kh + kh - 1 - i) * kw + kw - 1 - j]
                    else:
                        dst[k * ob] = w[((r * C + a) * kh + i) * kw + j]
                    k += 1
    return pack


cdef void _shape(cnp.ndarray a, str name, tuple expected) except *:
    cdef Py_ssize_t i
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(a)
    for i in range(len(expected)):
        if shape[i] != <Py_ssize_t> expected[i]:
            raise ValueError(f"{name} must have shape {expected}, got {dims(a)}")


cdef void _geometry(Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t dil_h,
                    Py_ssize_t dil_w) except *:
    """Padding >= 0 and dilation >= 1, both below 2**31: the size arithmetic
    below (Py_ssize_t) then cannot overflow."""
    if min(pad_h, pad_w) < 0 or min(dil_h, dil_w) < 1 or max(pad_h, pad_w, dil_h, dil_w) > 2**31:
        raise ValueError(
            f"need 0 <= padding and 1 <= dilation, both <= 2**31, got padding=({pad_h}, "
            f"{pad_w}), dilation=({dil_h}, {dil_w})"
        )


cdef object _padded_size(object n, object c, object h, object w, object ph, object pw):
    """Elements of N padded images with their margins, in Python ints (no overflow)."""
    return n * (c * (h + 2 * ph) * (w + 2 * pw) + CNNPOOL_CONV_MARGIN)


cdef void _room(cnp.ndarray a, str name, object needed) except *:
    if cnp.PyArray_DIMS(a)[cnp.PyArray_NDIM(a) - 1] < needed:
        raise ValueError(
            f"{name} must hold {needed} elements (padded images + MARGIN), got shape "
            f"{dims(a)}"
        )


# ------------------------------------------------------------------ the loops
cdef bint _forward(const floating *x, floating *xp, Py_ssize_t xp_size, const floating *w,
                   const floating *bias, floating *out, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H,
                   Py_ssize_t W, Py_ssize_t M, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t ph,
                   Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, int n_threads) noexcept nogil:
    """Pad every image into ``xp``, then convolve; True when out of memory.

    Image n starts at ``xp + n * (C*Hp*Wp + MARGIN)``: each has a margin of
    its own, zeroed by the thread that pads it, so the kernel's over-reads
    never touch memory another thread is writing.
    """
    cdef Py_ssize_t Hp = H + 2 * ph, Wp = W + 2 * pw
    cdef Py_ssize_t OH = Hp - dh * (kh - 1), OW = Wp - dw * (kw - 1)
    cdef Py_ssize_t img = C * Hp * Wp + CNNPOOL_CONV_MARGIN, n
    cdef Py_ssize_t *offs = _offsets(C, kh, kw, Hp, Wp, dh, dw)
    cdef floating *wpack = _pack(w, M, C, kh, kw, False)
    if offs == NULL or wpack == NULL:
        free(offs)
        free(wpack)
        return True
    # One thread runs the loop outside OpenMP (a region costs ~0.4 us even so).
    if n_threads > 1:
        for n in prange(N, num_threads=n_threads, schedule="dynamic"):
            _forward_image(x + n * C * H * W, xp + n * img, offs, wpack, bias,
                           out + n * M * OH * OW, C, H, W, M, ph, pw, kh, kw, dh, dw)
    else:
        for n in range(N):
            _forward_image(x + n * C * H * W, xp + n * img, offs, wpack, bias,
                           out + n * M * OH * OW, C, H, W, M, ph, pw, kh, kw, dh, dw)
    free(offs)
    free(wpack)
    return False


cdef inline void _forward_image(const floating *x, floating *xp, const Py_ssize_t *offs,
                                const floating *wpack, const floating *bias, floating *out,
                                Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t M,
                                Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t kh, Py_ssize_t kw,
                                Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    """Pad one image (and zero its margin), then convolve it."""
    cdef Py_ssize_t Hp = H + 2 * ph, Wp = W + 2 * pw, i
    cdef Py_ssize_t OH = Hp - dh * (kh - 1), OW = Wp - dw * (kw - 1), K = C * kh * kw
    for i in range(C * Hp * Wp, C * Hp * Wp + CNNPOOL_CONV_MARGIN):
        xp[i] = 0
    if floating is float:
        cnnpool_pad_f32(x, xp, C, H, W, Hp, Wp, ph, pw)
        cnnpool_conv_fwd_f32(xp, offs, K, wpack, bias, out, M, OH, OW, Wp)
    else:
        cnnpool_pad_f64(x, xp, C, H, W, Hp, Wp, ph, pw)
        cnnpool_conv_fwd_f64(xp, offs, K, wpack, bias, out, M, OH, OW, Wp)


cdef bint _backward(const floating *xp, const floating *g, const floating *w, floating *gx,
                    floating *gw, floating *gb, floating *scratch, Py_ssize_t scratch_row,
                    Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t M,
                    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh,
                    Py_ssize_t dw, int n_threads) noexcept nogil:
    """Weight and bias gradients (added into gw, gb) and the input gradient gx.

    The parameter gradients are sums over the whole batch, one fixed order
    per output channel; threads split the output channels between them (in
    multiples of 8, the widest register block), so the bits do not depend
    on the thread count.  The input gradient goes image by image, images
    spread over threads.  Returns True when out of memory.
    """
    cdef Py_ssize_t Hp = H + 2 * ph, Wp = W + 2 * pw
    cdef Py_ssize_t OH = Hp - dh * (kh - 1), OW = Wp - dw * (kw - 1)
    cdef Py_ssize_t gph = dh * (kh - 1) - ph, gpw = dw * (kw - 1) - pw
    cdef Py_ssize_t Hg = OH + 2 * gph, Wg = OW + 2 * gpw
    cdef Py_ssize_t K = C * kh * kw, img = C * Hp * Wp + CNNPOOL_CONV_MARGIN
    cdef Py_ssize_t plane = OH * OW, n, i, t, lo, hi
    cdef Py_ssize_t share = ((M + n_threads - 1) // n_threads + 7) // 8 * 8
    cdef Py_ssize_t *offs = _offsets(C, kh, kw, Hp, Wp, dh, dw)
    cdef Py_ssize_t *goffs = _offsets(M, kh, kw, Hg, Wg, dh, dw)
    cdef floating *wpack = _pack(w, M, C, kh, kw, True)
    if offs == NULL or goffs == NULL or wpack == NULL:
        free(offs)
        free(goffs)
        free(wpack)
        return True
    for t in range(n_threads):
        for i in range(M * Hg * Wg, scratch_row):
            scratch[t * scratch_row + i] = 0
    if n_threads > 1 and M > 8:
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            lo = t * share
            hi = min(lo + share, M)
            if lo < hi:
                _param_grads(xp, g, gw, gb, offs, K, lo, hi, M, N, OH, OW, Wp, img)
    else:
        _param_grads(xp, g, gw, gb, offs, K, 0, M, M, N, OH, OW, Wp, img)
    if n_threads > 1:
        for n in prange(N, num_threads=n_threads, schedule="dynamic"):
            _input_grad_image(g + n * M * plane, gx + n * C * H * W, goffs, wpack,
                              scratch + threadid() * scratch_row, C, H, W, M, OH, OW,
                              kh, kw, gph, gpw, Hg, Wg)
    else:
        for n in range(N):
            _input_grad_image(g + n * M * plane, gx + n * C * H * W, goffs, wpack, scratch,
                              C, H, W, M, OH, OW, kh, kw, gph, gpw, Hg, Wg)
    free(offs)
    free(goffs)
    free(wpack)
    return False


cdef inline void _param_grads(const floating *xp, const floating *g, floating *gw,
                              floating *gb, const Py_ssize_t *offs, Py_ssize_t K,
                              Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t M, Py_ssize_t N,
                              Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t Wp,
                              Py_ssize_t img) noexcept nogil:
    """Output channels [lo, hi): weight gradients over the batch, and bias
    gradients image by image (each plane's sum added in image order).

    The weight gradient goes a group of images at a time, each group's sums
    added in order: enough images that the reductions at the end of a block
    are rare, few enough that the 8 gradient and 3 input planes a register
    block streams through, ``11 * images * OH*OW`` elements, stay within
    256 KiB (a quarter of a Zen 5 core's L2) and are re-read from cache by
    the next block of taps.  The group size depends on the shape only.
    """
    cdef Py_ssize_t plane = OH * OW, n, n0, nb
    nb = (256 * 1024) // (11 * plane * <Py_ssize_t> sizeof(floating))
    nb = max(1, min(N, nb))
    n0 = 0
    while n0 < N:
        if floating is float:
            cnnpool_conv_wgrad_f32(xp + n0 * img, offs, K, g + n0 * M * plane + lo * plane,
                                   gw + lo * K, hi - lo, OH, OW, Wp, min(nb, N - n0), img,
                                   M * plane)
        else:
            cnnpool_conv_wgrad_f64(xp + n0 * img, offs, K, g + n0 * M * plane + lo * plane,
                                   gw + lo * K, hi - lo, OH, OW, Wp, min(nb, N - n0), img,
                                   M * plane)
        n0 += nb
    if gb != NULL:
        for n in range(N):
            if floating is float:
                cnnpool_plane_sums_f32(g + n * M * plane + lo * plane, gb + lo, hi - lo, plane)
            else:
                cnnpool_plane_sums_f64(g + n * M * plane + lo * plane, gb + lo, hi - lo, plane)


cdef inline void _input_grad_image(const floating *g, floating *gx, const Py_ssize_t *goffs,
                                   const floating *wpack, floating *row, Py_ssize_t C,
                                   Py_ssize_t H, Py_ssize_t W, Py_ssize_t M, Py_ssize_t OH,
                                   Py_ssize_t OW, Py_ssize_t kh, Py_ssize_t kw,
                                   Py_ssize_t gph, Py_ssize_t gpw, Py_ssize_t Hg,
                                   Py_ssize_t Wg) noexcept nogil:
    """One image's input gradient: the forward kernel on its zero-padded
    output gradient (padded into ``row``) with the flipped, transposed weights."""
    if floating is float:
        cnnpool_pad_f32(g, row, M, OH, OW, Hg, Wg, gph, gpw)
        cnnpool_conv_fwd_f32(row, goffs, M * kh * kw, wpack, NULL, gx, C, H, W, Wg)
    else:
        cnnpool_pad_f64(g, row, M, OH, OW, Hg, Wg, gph, gpw)
        cnnpool_conv_fwd_f64(row, goffs, M * kh * kw, wpack, NULL, gx, C, H, W, Wg)


# ------------------------------------------------------------------ entry points
def forward(x, xp, weight, bias, out, Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t dil_h,
            Py_ssize_t dil_w, int n_threads):
    """Zero-pad ``x`` into ``xp`` and write ``out = conv(x, weight) + bias`` (unit stride).

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64, C-contiguous
    xp : ndarray, 1-D, of at least ``N*(C*(H+2ph)*(W+2pw) + MARGIN)`` elements
        Receives the padded images, each followed by ``MARGIN`` zeros (kept
        by the caller for :func:`backward`).
    weight : ndarray (M, C, kh, kw)
    bias : ndarray (M,) or None
    out : ndarray (N, M, OH, OW), written whole
        ``OH = H + 2ph - dh*(kh-1)``, ``OW = W + 2pw - dw*(kw-1)``.
    pad_h, pad_w, dil_h, dil_w : int
        Padding >= 0, dilation >= 1.
    n_threads : int
        Threads for the loop over images.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 4, typenum, False)
    cdef cnp.ndarray axp = checked(xp, "xp", 1, typenum, True)
    cdef cnp.ndarray aw = checked(weight, "weight", 4, typenum, False)
    cdef cnp.ndarray aout = checked(out, "out", 4, typenum, True)
    cdef cnp.ndarray ab = None if bias is None else checked(bias, "bias", 1, typenum, False)
    cdef Py_ssize_t N = ax.shape[0], C = ax.shape[1], H = ax.shape[2], W = ax.shape[3]
    cdef Py_ssize_t M = aw.shape[0], kh = aw.shape[2], kw = aw.shape[3]
    _geometry(pad_h, pad_w, dil_h, dil_w)
    if pad_h < 0 or pad_w < 0 or dil_h < 1 or dil_w < 1 or n_threads < 1:
        raise ValueError(
            f"need padding >= 0, dilation >= 1 and n_threads >= 1, got padding=({pad_h}, "
            f"{pad_w}), dilation=({dil_h}, {dil_w}), n_threads={n_threads}"
        )
    cdef Py_ssize_t OH = H + 2 * pad_h - dil_h * (kh - 1)
    cdef Py_ssize_t OW = W + 2 * pad_w - dil_w * (kw - 1)
    if aw.shape[1] != C or kh < 1 or kw < 1 or M < 1:
        raise ValueError(f"weight must have shape (M, {C}, kh, kw), got {dims(aw)}")
    if OH < 1 or OW < 1:
        raise ValueError(
            f"the kernel {dims(aw)} does not fit x {dims(ax)} with this padding"
        )
    _shape(aout, "out", (N, M, OH, OW))
    if ab is not None:
        _shape(ab, "bias", (M,))
    _room(axp, "xp", _padded_size(N, C, H, W, pad_h, pad_w))
    cdef bint failed
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            failed = _forward(<float *> cnp.PyArray_DATA(ax), <float *> cnp.PyArray_DATA(axp),
                              axp.shape[0], <float *> cnp.PyArray_DATA(aw),
                              NULL if ab is None else <float *> cnp.PyArray_DATA(ab),
                              <float *> cnp.PyArray_DATA(aout), N, C, H, W, M, kh, kw,
                              pad_h, pad_w, dil_h, dil_w, n_threads)
    else:
        with nogil:
            failed = _forward(<double *> cnp.PyArray_DATA(ax), <double *> cnp.PyArray_DATA(axp),
                              axp.shape[0], <double *> cnp.PyArray_DATA(aw),
                              NULL if ab is None else <double *> cnp.PyArray_DATA(ab),
                              <double *> cnp.PyArray_DATA(aout), N, C, H, W, M, kh, kw,
                              pad_h, pad_w, dil_h, dil_w, n_threads)
    if failed:
        raise MemoryError()


def backward(xp, grad_out, weight, grad_x, weight_grad, bias_grad, scratch, Py_ssize_t pad_h,
             Py_ssize_t pad_w, Py_ssize_t dil_h, Py_ssize_t dil_w, int n_threads):
    """Gradients of :func:`forward`: ``grad_x`` written, parameter gradients added.

    Parameters
    ----------
    xp : ndarray, 1-D
        The padded images :func:`forward` wrote.
    grad_out : ndarray (N, M, OH, OW)
    weight : ndarray (M, C, kh, kw)
        The weights of that forward call.
    grad_x : ndarray (N, C, H, W)
        Written whole: the full correlation of ``grad_out`` with the flipped,
        transposed weights.  Needs ``0 <= padding <= dilation*(kernel-1)``.
    weight_grad : ndarray (M, C, kh, kw); bias_grad : ndarray (M,) or None
        The sums over the batch are *added* into them (in an order that does
        not depend on the thread count).
    scratch : ndarray (n_threads, S)
        One row per thread for a padded image of ``grad_out``:
        ``S >= M*(OH + 2*gh)*(OW + 2*gw) + MARGIN``, ``g = d*(k-1) - p``.
    """
    cdef int typenum = float_type(grad_out, "grad_out")
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 4, typenum, False)
    cdef cnp.ndarray axp = checked(xp, "xp", 1, typenum, False)
    cdef cnp.ndarray aw = checked(weight, "weight", 4, typenum, False)
    cdef cnp.ndarray agx = checked(grad_x, "grad_x", 4, typenum, True)
    cdef cnp.ndarray agw = checked(weight_grad, "weight_grad", 4, typenum, True)
    cdef cnp.ndarray agb = (None if bias_grad is None
                            else checked(bias_grad, "bias_grad", 1, typenum, True))
    cdef cnp.ndarray ascratch = checked(scratch, "scratch", 2, typenum, True)
    cdef Py_ssize_t N = ag.shape[0], M = ag.shape[1], OH = ag.shape[2], OW = ag.shape[3]
    cdef Py_ssize_t C = aw.shape[1], kh = aw.shape[2], kw = aw.shape[3]
    cdef Py_ssize_t H = agx.shape[2], W = agx.shape[3]
    _geometry(pad_h, pad_w, dil_h, dil_w)
    cdef Py_ssize_t gph = dil_h * (kh - 1) - pad_h, gpw = dil_w * (kw - 1) - pad_w
    if dil_h < 1 or dil_w < 1 or pad_h < 0 or pad_w < 0 or gph < 0 or gpw < 0 or kh < 1 \
            or kw < 1 or n_threads < 1:
        raise ValueError(
            f"backward needs dilation >= 1, 0 <= padding <= dilation*(kernel-1) and "
            f"n_threads >= 1, got padding=({pad_h}, {pad_w}), dilation=({dil_h}, {dil_w}), "
            f"kernel=({kh}, {kw}), n_threads={n_threads}"
        )
    _shape(aw, "weight", (M, C, kh, kw))
    _shape(agx, "grad_x", (N, C, H, W))
    if H + 2 * pad_h - dil_h * (kh - 1) != OH or W + 2 * pad_w - dil_w * (kw - 1) != OW:
        raise ValueError(
            f"grad_out {dims(ag)} does not match grad_x {dims(agx)} with kernel "
            f"({kh}, {kw}), "
            f"padding ({pad_h}, {pad_w}) and dilation ({dil_h}, {dil_w})"
        )
    _shape(agw, "weight_grad", (M, C, kh, kw))
    if agb is not None:
        _shape(agb, "bias_grad", (M,))
    _room(axp, "xp", _padded_size(N, C, H, W, pad_h, pad_w))
    if ascratch.shape[0] < n_threads:
        raise ValueError(
            f"scratch needs one row per thread ({n_threads}), got {dims(ascratch)}"
        )
    _room(ascratch, "scratch", _padded_size(1, M, OH, OW, gph, gpw))
    cdef bint failed
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            failed = _backward(
                <float *> cnp.PyArray_DATA(axp), <float *> cnp.PyArray_DATA(ag),
                <float *> cnp.PyArray_DATA(aw), <float *> cnp.PyArray_DATA(agx),
                <float *> cnp.PyArray_DATA(agw),
                NULL if agb is None else <float *> cnp.PyArray_DATA(agb),
                <float *> cnp.PyArray_DATA(ascratch), ascratch.shape[1],
                N, C, H, W, M, kh, kw, pad_h, pad_w, dil_h, dil_w, n_threads)
    else:
        with nogil:
            failed = _backward(
                <double *> cnp.PyArray_DATA(axp), <double *> cnp.PyArray_DATA(ag),
                <double *> cnp.PyArray_DATA(aw), <double *> cnp.PyArray_DATA(agx),
                <double *> cnp.PyArray_DATA(agw),
                NULL if agb is None else <double *> cnp.PyArray_DATA(agb),
                <double *> cnp.PyArray_DATA(ascratch), ascratch.shape[1],
                N, C, H, W, M, kh, kw, pad_h, pad_w, dil_h, dil_w, n_threads)
    if failed:
        raise MemoryError()
