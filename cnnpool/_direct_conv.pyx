"""Direct convolution with unit stride: forward, input gradient, weight gradient.

im2col + GEMM writes every receptive field out (``C*kh*kw`` times the input)
and hands BLAS a matrix product whose small side is the number of output
channels, a shape OpenBLAS runs at a third of its peak.  With unit stride
the ``kh*kw`` taps of a run of neighbouring output pixels are runs of
neighbouring inputs, so a register-blocked kernel can read the (padded)
input directly: 4 output channels times 2 vectors of pixels per block, one
fused multiply-add per weight and vector (``_direct_conv.h``).  The input
gradient is the same kernel run on the zero-padded output gradient with the
weights transposed and flipped; the weight gradient is a blocked
correlation of the output gradient with the padded input.

``Conv2d`` picks this path when :data:`SIMD` is true (the build had AVX2 and
FMA) and the stride is 1; otherwise it keeps im2col + GEMM.

Images are split across OpenMP threads, one image per thread at a time, and
every per-image partial sum (weight and bias gradients) is added in image
order afterwards, so results do not depend on the thread count.  They may
differ from im2col + BLAS in the last bits (another summation order).

The checks below run with the GIL, before the unchecked loops.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdlib cimport free, malloc

cdef extern from "_direct_conv.h" nogil:
    int CNNPOOL_CONV_SIMD
    int CNNPOOL_CONV_OB
    int CNNPOOL_CONV_MARGIN
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
                                Py_ssize_t OW, Py_ssize_t Wp)
    void cnnpool_conv_wgrad_f64(const double *xp, const Py_ssize_t *offs, Py_ssize_t K,
                                const double *g, double *gw, Py_ssize_t M, Py_ssize_t OH,
                                Py_ssize_t OW, Py_ssize_t Wp)

#: True when the kernels were compiled with AVX2 and FMA (the fast path).
SIMD = bool(CNNPOOL_CONV_SIMD)
#: Elements a padded buffer needs after its last image (vector over-reads).
MARGIN = CNNPOOL_CONV_MARGIN


# ------------------------------------------------------------------ helpers
cdef inline void _pad(const floating *x, floating *xp, Py_ssize_t C, Py_ssize_t H,
                      Py_ssize_t W, Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t pt,
                      Py_ssize_t pl) noexcept nogil:
    if floating is float:
        cnnpool_pad_f32(x, xp, C, H, W, Hp, Wp, pt, pl)
    else:
        cnnpool_pad_f64(x, xp, C, H, W, Hp, Wp, pt, pl)


cdef inline void _fwd(const floating *xp, const Py_ssize_t *offs, Py_ssize_t K,
                      const floating *wpack, const floating *bias, floating *out, Py_ssize_t M,
                      Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t Wp) noexcept nogil:
    if floating is float:
        cnnpool_conv_fwd_f32(xp, offs, K, wpack, bias, out, M, OH, OW, Wp)
    else:
        cnnpool_conv_fwd_f64(xp, offs, K, wpack, bias, out, M, OH, OW, Wp)


cdef Py_ssize_t *_offsets(Py_ssize_t C, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t Hp,
                          Py_ssize_t Wp, Py_ssize_t dh, Py_ssize_t dw) except NULL:
    """Tap k = (c, i, j) of pixel (oh, ow) reads padded element offs[k] + oh*Wp + ow."""
    cdef Py_ssize_t c, i, j, k = 0
    cdef Py_ssize_t *offs = <Py_ssize_t *> malloc(max(C * kh * kw, 1) * sizeof(Py_ssize_t))
    if offs == NULL:
        raise MemoryError()
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                offs[k] = (c * Hp + i * dh) * Wp + j * dw
                k += 1
    return offs


cdef floating *_pack(const floating[:, :, :, ::1] w, bint transpose) except NULL:
    """Weights in register-block order ``[ob][k][OB]``, zero rows past the last channel.

    ``w`` is (O, C, kh, kw).  With ``transpose`` the packed filters are those
    of the input gradient: output channel c, tap (o, i, j) holds
    ``w[o, c, kh-1-i, kw-1-j]``.
    """
    cdef Py_ssize_t M = w.shape[0], C = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t rows = C if transpose else M
    cdef Py_ssize_t cols = (M if transpose else C) * kh * kw
    cdef Py_ssize_t ob = CNNPOOL_CONV_OB
    cdef Py_ssize_t nob = (rows + ob - 1) // ob
    cdef Py_ssize_t r, k, a, i, j
    cdef floating *pack = <floating *> malloc(max(nob * cols * ob, 1) * sizeof(floating))
    if pack == NULL:
        raise MemoryError()
    for r in range(nob * ob):
        k = 0
        for a in range(M if transpose else C):
            for i in range(kh):
                for j in range(kw):
                    if r >= rows:
                        pack[((r // ob) * cols + k) * ob + r % ob] = 0
                    elif transpose:
                        pack[((r // ob) * cols + k) * ob + r % ob] = w[a, r, kh - 1 - i,
                                                                       kw - 1 - j]
                    else:
                        pack[((r // ob) * cols + k) * ob + r % ob] = w[r, a, i, j]
                    k += 1
    return pack


cdef void _check_image_buffer(Py_ssize_t size, Py_ssize_t n_img, Py_ssize_t C, Py_ssize_t Hp,
                              Py_ssize_t Wp, str name) except *:
    if n_img < 0 or C < 1 or Hp < 1 or Wp < 1:
        raise ValueError(f"{name}: bad image shape (N, C, Hp, Wp) = ({n_img}, {C}, {Hp}, {Wp})")
    if size < n_img * C * Hp * Wp + CNNPOOL_CONV_MARGIN:
        raise ValueError(
            f"{name} must hold N*C*Hp*Wp + MARGIN = {n_img * C * Hp * Wp + CNNPOOL_CONV_MARGIN} "
            f"elements, got {size}"
        )


# ------------------------------------------------------------------ entry points
def pad(const floating[:, :, :, ::1] x, floating[::1] xp, Py_ssize_t pad_h, Py_ssize_t pad_w,
        int n_threads):
    """Copy ``x`` (N, C, H, W) into the flat buffer ``xp`` as (N, C, H+2ph, W+2pw), zero-padded.

    ``xp`` needs ``MARGIN`` elements more than the padded images; they are
    zeroed too (the kernels may read them, never use them).
    """
    cdef Py_ssize_t n_img = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"padding must be >= 0, got ({pad_h}, {pad_w})")
    cdef Py_ssize_t Hp = H + 2 * pad_h, Wp = W + 2 * pad_w, n, i
    cdef Py_ssize_t img = C * Hp * Wp, total = n_img * img
    _check_image_buffer(xp.shape[0], n_img, C, Hp, Wp, "xp")
    with nogil:
        for n in prange(n_img, num_threads=n_threads, schedule="static"):
            _pad(&x[n, 0, 0, 0], &xp[n * img], C, H, W, Hp, Wp, pad_h, pad_w)
        for i in range(total, xp.shape[0]):
            xp[i] = 0


def forward(const floating[::1] xp, Py_ssize_t n_img, Py_ssize_t Hp, Py_ssize_t Wp,
            const floating[:, :, :, ::1] weight, const floating[::1] bias, bint has_bias,
            floating[:, :, :, ::1] out, Py_ssize_t dil_h, Py_ssize_t dil_w, int n_threads):
    """``out[n] = conv(xp[n], weight) + bias`` with unit stride, over the padded images.

    Parameters
    ----------
    xp : floating[N*C*Hp*Wp + MARGIN]
        Padded images (see :func:`pad`).
    weight : floating[O, C, kh, kw]
    bias : floating[O]
        Read only when ``has_bias``.
    out : floating[N, O, OH, OW]
        ``OH = Hp - dh*(kh-1)``, ``OW = Wp - dw*(kw-1)``; written whole.
    """
    cdef Py_ssize_t M = weight.shape[0], C = weight.shape[1]
    cdef Py_ssize_t kh = weight.shape[2], kw = weight.shape[3]
    cdef Py_ssize_t OH = Hp - dil_h * (kh - 1), OW = Wp - dil_w * (kw - 1)
    _check_image_buffer(xp.shape[0], n_img, C, Hp, Wp, "xp")
    if dil_h < 1 or dil_w < 1:
        raise ValueError(f"dilation must be >= 1, got ({dil_h}, {dil_w})")
    out_shape = (out.shape[0], out.shape[1], out.shape[2], out.shape[3])
    if out_shape != (n_img, M, OH, OW) or OH < 1 or OW < 1:
        raise ValueError(
            f"out must have shape {(n_img, M, OH, OW)}, got {out_shape}"
        )
    if has_bias and bias.shape[0] != M:
        raise ValueError(f"bias must have shape ({M},), got ({bias.shape[0]},)")
    cdef Py_ssize_t K = C * kh * kw, img = C * Hp * Wp, n
    cdef const floating *b = &bias[0] if has_bias else NULL
    cdef Py_ssize_t *offs = _offsets(C, kh, kw, Hp, Wp, dil_h, dil_w)
    cdef floating *wpack = NULL
    try:
        wpack = _pack(weight, False)
        with nogil:
            for n in prange(n_img, num_threads=n_threads, schedule="static"):
                _fwd(&xp[n * img], offs, K, wpack, b, &out[n, 0, 0, 0], M, OH, OW, Wp)
    finally:
        free(offs)
        free(wpack)


def grad_input(const floating[:, :, :, ::1] grad_out, const floating[:, :, :, ::1] weight,
               floating[:, :, :, ::1] grad_x, Py_ssize_t pad_h, Py_ssize_t pad_w,
               Py_ssize_t dil_h, Py_ssize_t dil_w, floating[:, ::1] scratch, int n_threads):
    """Input gradient of a unit-stride convolution, written whole into ``grad_x``.

    ``grad_x[n]`` is the full correlation of ``grad_out[n]`` (N, O, OH, OW)
    with the flipped, transposed ``weight`` (O, C, kh, kw): each image's
    gradient is zero-padded by ``d*(k-1) - p`` into its thread's row of
    ``scratch`` (``n_threads`` rows of at least ``O*Hg*Wg + MARGIN``), then
    run through the forward kernel.  Requires ``0 <= p <= d*(k-1)``.
    """
    cdef Py_ssize_t n_img = grad_out.shape[0], M = grad_out.shape[1]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3]
    cdef Py_ssize_t C = weight.shape[1], kh = weight.shape[2], kw = weight.shape[3]
    cdef Py_ssize_t gph = dil_h * (kh - 1) - pad_h, gpw = dil_w * (kw - 1) - pad_w
    cdef Py_ssize_t Hg = OH + 2 * gph, Wg = OW + 2 * gpw
    cdef Py_ssize_t H = Hg - dil_h * (kh - 1), W = Wg - dil_w * (kw - 1)
    if weight.shape[0] != M:
        raise ValueError(f"grad_out has {M} channels but weight has {weight.shape[0]} filters")
    if dil_h < 1 or dil_w < 1 or pad_h < 0 or pad_w < 0 or gph < 0 or gpw < 0:
        raise ValueError(
            f"grad_input needs dilation >= 1 and 0 <= padding <= dilation*(kernel-1), got "
            f"padding=({pad_h}, {pad_w}), dilation=({dil_h}, {dil_w}), kernel=({kh}, {kw})"
        )
    if (grad_x.shape[0], grad_x.shape[1], grad_x.shape[2], grad_x.shape[3]) != (n_img, C, H, W):
        raise ValueError(
            f"grad_x must have shape {(n_img, C, H, W)}, got "
            f"{(grad_x.shape[0], grad_x.shape[1], grad_x.shape[2], grad_x.shape[3])}"
        )
    if n_threads < 1 or scratch.shape[0] < n_threads:
        raise ValueError(f"scratch needs one row per thread ({n_threads}), got {scratch.shape[0]}")
    _check_image_buffer(scratch.shape[1], 1, M, Hg, Wg, "scratch row")
    cdef Py_ssize_t K = M * kh * kw, n, t, i, row
    cdef Py_ssize_t used = M * Hg * Wg
    cdef Py_ssize_t *offs = _offsets(M, kh, kw, Hg, Wg, dil_h, dil_w)
    cdef floating *wpack = NULL
    try:
        wpack = _pack(weight, True)
        with nogil:
            for row in range(n_threads):
                for i in range(used, scratch.shape[1]):
                    scratch[row, i] = 0
            for n in prange(n_img, num_threads=n_threads, schedule="static"):
                t = threadid()
                _pad(&grad_out[n, 0, 0, 0], &scratch[t, 0], M, OH, OW, Hg, Wg, gph, gpw)
                _fwd(&scratch[t, 0], offs, K, wpack, <floating *> NULL, &grad_x[n, 0, 0, 0],
                     C, H, W, Wg)
    finally:
        free(offs)
        free(wpack)


def grad_weight(const floating[::1] xp, Py_ssize_t Hp, Py_ssize_t Wp,
                const floating[:, :, :, ::1] grad_out, floating[:, :, ::1] weight_parts,
                floating[:, ::1] bias_parts, bint with_bias, Py_ssize_t kernel_h,
                Py_ssize_t kernel_w, Py_ssize_t dil_h, Py_ssize_t dil_w, int n_threads):
    """Per-image weight (and bias) gradients of a unit-stride convolution.

    ``weight_parts[n]`` (N, O, C*kh*kw) and, when ``with_bias``,
    ``bias_parts[n]`` (N, O) are overwritten with image n's contribution;
    the caller sums them over n (in order: the result is the same for any
    thread count).  ``xp`` holds the padded input images as in
    :func:`forward`.
    """
    cdef Py_ssize_t n_img = grad_out.shape[0], M = grad_out.shape[1]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3]
    cdef Py_ssize_t kh = kernel_h, kw = kernel_w
    if kh < 1 or kw < 1 or dil_h < 1 or dil_w < 1:
        raise ValueError(
            f"kernel and dilation must be >= 1, got ({kh}, {kw}), ({dil_h}, {dil_w})"
        )
    if Hp - dil_h * (kh - 1) != OH or Wp - dil_w * (kw - 1) != OW:
        raise ValueError(
            f"grad_out's (OH, OW) = ({OH}, {OW}) does not match padded input ({Hp}, {Wp}) "
            f"with kernel ({kh}, {kw}) and dilation ({dil_h}, {dil_w})"
        )
    cdef Py_ssize_t K = weight_parts.shape[2] if weight_parts.shape[2] > 0 else 0
    if K % (kh * kw) or K == 0:
        raise ValueError(f"weight_parts' last axis must be C*kh*kw, got {K}")
    cdef Py_ssize_t C = K // (kh * kw)
    _check_image_buffer(xp.shape[0], n_img, C, Hp, Wp, "xp")
    if weight_parts.shape[0] != n_img or weight_parts.shape[1] != M:
        raise ValueError(
            f"weight_parts must have shape {(n_img, M, K)}, got "
            f"{(weight_parts.shape[0], weight_parts.shape[1], weight_parts.shape[2])}"
        )
    if with_bias and (bias_parts.shape[0] != n_img or bias_parts.shape[1] != M):
        raise ValueError(
            f"bias_parts must have shape {(n_img, M)}, got "
            f"{(bias_parts.shape[0], bias_parts.shape[1])}"
        )
    cdef Py_ssize_t img = C * Hp * Wp, n, k
    cdef floating *parts
    cdef Py_ssize_t *offs = _offsets(C, kh, kw, Hp, Wp, dil_h, dil_w)
    try:
        with nogil:
            for n in prange(n_img, num_threads=n_threads, schedule="static"):
                parts = &weight_parts[n, 0, 0]
                for k in range(M * K):
                    parts[k] = 0
                if floating is float:
                    cnnpool_conv_wgrad_f32(&xp[n * img], offs, K, &grad_out[n, 0, 0, 0],
                                           parts, M, OH, OW, Wp)
                    if with_bias:
                        for k in range(M):
                            bias_parts[n, k] = 0
                        cnnpool_plane_sums_f32(&grad_out[n, 0, 0, 0], &bias_parts[n, 0], M,
                                               OH * OW)
                else:
                    cnnpool_conv_wgrad_f64(&xp[n * img], offs, K, &grad_out[n, 0, 0, 0],
                                           parts, M, OH, OW, Wp)
                    if with_bias:
                        for k in range(M):
                            bias_parts[n, k] = 0
                        cnnpool_plane_sums_f64(&grad_out[n, 0, 0, 0], &bias_parts[n, 0], M,
                                               OH * OW)
    finally:
        free(offs)
