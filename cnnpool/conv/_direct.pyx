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

Grouped convolution (``groups`` > 1) runs each group as a convolution of
its own on its slice of the padded image, with weights packed per group.
Depthwise convolution (``groups == C``) has entry points of its own,
:func:`depthwise_forward` and :func:`depthwise_backward`: one filter per
output plane is too little work per tap for a register block of 4 output
channels, so they go plane by plane (``_direct.h``'s plain-C
``cnnpool_dw_*`` loops, on every build, :data:`SIMD` or not).  Padding may
differ between the two sides of an axis (``pad_bottom``, ``pad_right``).

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
    void cnnpool_dw_plane_f32(const float *xp, const float *w, float bias, bint accumulate,
                              float *out, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                              Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t OH,
                              Py_ssize_t OW, Py_ssize_t Wp)
    void cnnpool_dw_plane_f64(const double *xp, const double *w, double bias, bint accumulate,
                              double *out, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                              Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t OH,
                              Py_ssize_t OW, Py_ssize_t Wp)
    void cnnpool_dw_wgrad_f32(const float *xp, const float *g, float *acc, Py_ssize_t kh,
                              Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh,
                              Py_ssize_t dw, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t Wp)
    void cnnpool_dw_wgrad_f64(const double *xp, const double *g, double *acc, Py_ssize_t kh,
                              Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh,
                              Py_ssize_t dw, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t Wp)
    void cnnpool_dw_scatter_f32(const float *g, const float *w, float *gxp, Py_ssize_t kh,
                                Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh,
                                Py_ssize_t dw, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t Wp)
    void cnnpool_dw_scatter_f64(const double *g, const double *w, double *gxp, Py_ssize_t kh,
                                Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh,
                                Py_ssize_t dw, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t Wp)

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


cdef inline Py_ssize_t _pack_stride(Py_ssize_t M, Py_ssize_t C, Py_ssize_t kh, Py_ssize_t kw,
                                    bint transpose) noexcept nogil:
    """Elements of one group's packed weights (see :func:`_pack`)."""
    cdef Py_ssize_t rows = C if transpose else M
    cdef Py_ssize_t ob = CNNPOOL_CONV_OB
    return (rows + ob - 1) // ob * ob * (M if transpose else C) * kh * kw


cdef floating *_pack(const floating *w, Py_ssize_t M, Py_ssize_t C, Py_ssize_t kh,
                     Py_ssize_t kw, bint transpose, Py_ssize_t G) noexcept nogil:
    """Weights of G groups, each (M, C, kh, kw), in register-block order; NULL when out of memory.

    Group g's pack, ``[ob][k][OB]``, starts at ``g * _pack_stride(...)``.
    Rows past the group's last output channel are zero.  With ``transpose``
    the packed filters are those of the input gradient: output channel c,
    tap (m, i, j) holds ``w[m, c, kh-1-i, kw-1-j]`` (of the same group).
    """
    cdef Py_ssize_t rows = C if transpose else M
    cdef Py_ssize_t cols = (M if transpose else C) * kh * kw
    cdef Py_ssize_t ob = CNNPOOL_CONV_OB
    cdef Py_ssize_t nob = (rows + ob - 1) // ob
    cdef Py_ssize_t stride = _pack_stride(M, C, kh, kw, transpose)
    cdef Py_ssize_t r, k, a, i, j, grp
    cdef floating *pack = <floating *> malloc(max(G * stride, 1) * sizeof(floating))
    cdef floating *dst
    cdef const floating *wg
    if pack == NULL:
        return NULL
    for grp in range(G):
        wg = w + grp * M * C * kh * kw
        for r in range(nob * ob):
            dst = pack + grp * stride + (r // ob) * cols * ob + r % ob
            k = 0
            for a in range(M if transpose else C):
                for i in range(kh):
                    for j in range(kw):
                        if r >= rows:
                            dst[k * ob] = 0
                        elif transpose:
                            dst[k * ob] = wg[((a * C + r) * kh + kh - 1 - i) * kw + kw - 1 - j]
                        else:
                            dst[k * ob] = wg[((r * C + a) * kh + i) * kw + j]
                        k += 1
    return pack


cdef void _shape(cnp.ndarray a, str name, tuple expected) except *:
    cdef Py_ssize_t i
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(a)
    for i in range(len(expected)):
        if shape[i] != <Py_ssize_t> expected[i]:
            raise ValueError(f"{name} must have shape {expected}, got {dims(a)}")


cdef void _pads(Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t pad_bottom,
                Py_ssize_t pad_right, Py_ssize_t dil_h, Py_ssize_t dil_w,
                Py_ssize_t *pads) except *:
    """``pads`` = (top, bottom, left, right), checked: padding >= 0 and
    dilation >= 1, both at most 2**31, so the size arithmetic below
    (Py_ssize_t) cannot overflow.  A negative ``pad_bottom``/``pad_right``
    repeats the top/left.  (Written through a pointer: no Python tuple on
    the way, which a tiny layer's call would notice.)"""
    cdef Py_ssize_t pb = pad_h if pad_bottom < 0 else pad_bottom
    cdef Py_ssize_t pr = pad_w if pad_right < 0 else pad_right
    if min(pad_h, pad_w) < 0 or min(dil_h, dil_w) < 1 \
            or max(pad_h, pad_w, pb, pr, dil_h, dil_w) > 2**31:
        raise ValueError(
            f"need 0 <= padding and 1 <= dilation, both <= 2**31, got padding (top, bottom, "
            f"left, right) = ({pad_h}, {pb}, {pad_w}, {pr}), dilation=({dil_h}, {dil_w})"
        )
    pads[0], pads[1], pads[2], pads[3] = pad_h, pb, pad_w, pr


cdef void _groups(Py_ssize_t groups, Py_ssize_t C, Py_ssize_t M, cnp.ndarray aw) except *:
    if groups < 1 or C % groups or M % groups:
        raise ValueError(
            f"groups={groups} must be >= 1 and divide both the input channels ({C}) and "
            f"the output channels ({M}); weight has shape {dims(aw)}"
        )


cdef object _padded_size(object n, object c, object h, object w, object ph, object pw):
    """Elements of N images padded by ph rows and pw columns in all, with their
    margins, in Python ints (no overflow)."""
    return n * (c * (h + ph) * (w + pw) + CNNPOOL_CONV_MARGIN)


cdef void _room(cnp.ndarray a, str name, object needed) except *:
    if cnp.PyArray_DIMS(a)[cnp.PyArray_NDIM(a) - 1] < needed:
        raise ValueError(
            f"{name} must hold {needed} elements (padded images + MARGIN), got shape "
            f"{dims(a)}"
        )


# ------------------------------------------------------------------ the loops
cdef bint _forward(const floating *x, floating *xp, const floating *w,
                   const floating *bias, floating *out, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H,
                   Py_ssize_t W, Py_ssize_t M, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pt,
                   Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr, Py_ssize_t dh, Py_ssize_t dw,
                   Py_ssize_t G, int n_threads) noexcept nogil:
    """Pad every image into ``xp``, then convolve; True when out of memory.

    Image n starts at ``xp + n * (C*Hp*Wp + MARGIN)``: each has a margin of
    its own, zeroed by the thread that pads it, so the kernel's over-reads
    never touch memory another thread is writing.  With G groups, group g
    convolves input channels ``[g*C/G, (g+1)*C/G)`` into output channels
    ``[g*M/G, (g+1)*M/G)``.
    """
    cdef Py_ssize_t Hp = H + pt + pb, Wp = W + pl + pr
    cdef Py_ssize_t OH = Hp - dh * (kh - 1), OW = Wp - dw * (kw - 1)
    cdef Py_ssize_t img = C * Hp * Wp + CNNPOOL_CONV_MARGIN, n
    cdef Py_ssize_t Cg = C // G, Mg = M // G
    cdef Py_ssize_t stride = _pack_stride(Mg, Cg, kh, kw, False)
    cdef Py_ssize_t *offs = _offsets(Cg, kh, kw, Hp, Wp, dh, dw)
    cdef floating *wpack = _pack(w, Mg, Cg, kh, kw, False, G)
    if offs == NULL or wpack == NULL:
        free(offs)
        free(wpack)
        return True
    # One thread runs the loop outside OpenMP (a region costs ~0.4 us even so).
    if n_threads > 1:
        for n in prange(N, num_threads=n_threads, schedule="dynamic"):
            _forward_image(x + n * C * H * W, xp + n * img, offs, wpack, stride, bias,
                           out + n * M * OH * OW, C, H, W, M, G, pt, pl, Hp, Wp, OH, OW,
                           Cg * kh * kw)
    else:
        for n in range(N):
            _forward_image(x + n * C * H * W, xp + n * img, offs, wpack, stride, bias,
                           out + n * M * OH * OW, C, H, W, M, G, pt, pl, Hp, Wp, OH, OW,
                           Cg * kh * kw)
    free(offs)
    free(wpack)
    return False


cdef inline void _forward_image(const floating *x, floating *xp, const Py_ssize_t *offs,
                                const floating *wpack, Py_ssize_t stride,
                                const floating *bias, floating *out, Py_ssize_t C,
                                Py_ssize_t H, Py_ssize_t W, Py_ssize_t M, Py_ssize_t G,
                                Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t Hp, Py_ssize_t Wp,
                                Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t K) noexcept nogil:
    """Pad one image (and zero its margin), then convolve it, group by group."""
    cdef Py_ssize_t i, grp, Cg = C // G, Mg = M // G
    cdef const floating *b = NULL
    for i in range(C * Hp * Wp, C * Hp * Wp + CNNPOOL_CONV_MARGIN):
        xp[i] = 0
    if floating is float:
        cnnpool_pad_f32(x, xp, C, H, W, Hp, Wp, pt, pl)
    else:
        cnnpool_pad_f64(x, xp, C, H, W, Hp, Wp, pt, pl)
    for grp in range(G):
        if bias != NULL:
            b = bias + grp * Mg
        if floating is float:
            cnnpool_conv_fwd_f32(xp + grp * Cg * Hp * Wp, offs, K, wpack + grp * stride, b,
                                 out + grp * Mg * OH * OW, Mg, OH, OW, Wp)
        else:
            cnnpool_conv_fwd_f64(xp + grp * Cg * Hp * Wp, offs, K, wpack + grp * stride, b,
                                 out + grp * Mg * OH * OW, Mg, OH, OW, Wp)


cdef bint _backward(const floating *xp, const floating *g, const floating *w, floating *gx,
                    floating *gw, floating *gb, floating *scratch, Py_ssize_t scratch_row,
                    Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t M,
                    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl,
                    Py_ssize_t pr, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t G,
                    int n_threads) noexcept nogil:
    """Weight and bias gradients (added into gw, gb) and the input gradient gx.

    The parameter gradients are sums over the whole batch, one fixed order
    per output channel; threads split the output channels between them (in
    multiples of 8, the widest register block), so the bits do not depend
    on the thread count.  The input gradient goes image by image, images
    spread over threads.  Returns True when out of memory.
    """
    cdef Py_ssize_t Hp = H + pt + pb, Wp = W + pl + pr
    cdef Py_ssize_t OH = Hp - dh * (kh - 1), OW = Wp - dw * (kw - 1)
    cdef Py_ssize_t gpt = dh * (kh - 1) - pt, gpb = dh * (kh - 1) - pb
    cdef Py_ssize_t gpl = dw * (kw - 1) - pl, gpr = dw * (kw - 1) - pr
    cdef Py_ssize_t Hg = OH + gpt + gpb, Wg = OW + gpl + gpr
    cdef Py_ssize_t Cg = C // G, Mg = M // G
    cdef Py_ssize_t K = Cg * kh * kw, img = C * Hp * Wp + CNNPOOL_CONV_MARGIN
    cdef Py_ssize_t plane = OH * OW, n, i, t, lo, hi
    cdef Py_ssize_t share = ((M + n_threads - 1) // n_threads + 7) // 8 * 8
    cdef Py_ssize_t stride = _pack_stride(Mg, Cg, kh, kw, True)
    cdef Py_ssize_t *offs = _offsets(Cg, kh, kw, Hp, Wp, dh, dw)
    cdef Py_ssize_t *goffs = _offsets(Mg, kh, kw, Hg, Wg, dh, dw)
    cdef floating *wpack = _pack(w, Mg, Cg, kh, kw, True, G)
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
                _param_grads(xp, g, gw, gb, offs, K, lo, hi, M, Mg, Cg * Hp * Wp, N, OH, OW,
                             Wp, img)
    else:
        _param_grads(xp, g, gw, gb, offs, K, 0, M, M, Mg, Cg * Hp * Wp, N, OH, OW, Wp, img)
    if n_threads > 1:
        for n in prange(N, num_threads=n_threads, schedule="dynamic"):
            _input_grad_image(g + n * M * plane, gx + n * C * H * W, goffs, wpack, stride,
                              scratch + threadid() * scratch_row, C, H, W, M, G, OH, OW,
                              kh, kw, gpt, gpl, Hg, Wg)
    else:
        for n in range(N):
            _input_grad_image(g + n * M * plane, gx + n * C * H * W, goffs, wpack, stride,
                              scratch, C, H, W, M, G, OH, OW, kh, kw, gpt, gpl, Hg, Wg)
    free(offs)
    free(goffs)
    free(wpack)
    return False


cdef inline void _param_grads(const floating *xp, const floating *g, floating *gw,
                              floating *gb, const Py_ssize_t *offs, Py_ssize_t K,
                              Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t M, Py_ssize_t Mg,
                              Py_ssize_t group_in, Py_ssize_t N, Py_ssize_t OH,
                              Py_ssize_t OW, Py_ssize_t Wp, Py_ssize_t img) noexcept nogil:
    """Output channels [lo, hi): weight gradients over the batch, and bias
    gradients image by image (each plane's sum added in image order).

    The weight gradient goes a group of images at a time, each group's sums
    added in order: enough images that the reductions at the end of a block
    are rare, few enough that the 8 gradient and 3 input planes a register
    block streams through, ``11 * images * OH*OW`` elements, stay within
    256 KiB (a quarter of a Zen 5 core's L2) and are re-read from cache by
    the next block of taps.  The group size depends on the shape only.
    Output channel o belongs to convolution group ``o // Mg``, whose inputs
    start ``group_in`` elements into each padded image.
    """
    cdef Py_ssize_t plane = OH * OW, n, n0, nb, grp, a, b
    nb = (256 * 1024) // (11 * plane * <Py_ssize_t> sizeof(floating))
    nb = max(1, min(N, nb))
    n0 = 0
    while n0 < N:
        for grp in range(lo // Mg, (hi - 1) // Mg + 1):
            a = max(lo, grp * Mg)
            b = min(hi, (grp + 1) * Mg)
            if floating is float:
                cnnpool_conv_wgrad_f32(xp + n0 * img + grp * group_in, offs, K,
                                       g + n0 * M * plane + a * plane, gw + a * K, b - a, OH,
                                       OW, Wp, min(nb, N - n0), img, M * plane)
            else:
                cnnpool_conv_wgrad_f64(xp + n0 * img + grp * group_in, offs, K,
                                       g + n0 * M * plane + a * plane, gw + a * K, b - a, OH,
                                       OW, Wp, min(nb, N - n0), img, M * plane)
        n0 += nb
    if gb != NULL:
        for n in range(N):
            if floating is float:
                cnnpool_plane_sums_f32(g + n * M * plane + lo * plane, gb + lo, hi - lo, plane)
            else:
                cnnpool_plane_sums_f64(g + n * M * plane + lo * plane, gb + lo, hi - lo, plane)


cdef inline void _input_grad_image(const floating *g, floating *gx, const Py_ssize_t *goffs,
                                   const floating *wpack, Py_ssize_t stride, floating *row,
                                   Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t M,
                                   Py_ssize_t G, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t kh,
                                   Py_ssize_t kw, Py_ssize_t gpt, Py_ssize_t gpl,
                                   Py_ssize_t Hg, Py_ssize_t Wg) noexcept nogil:
    """One image's input gradient: the forward kernel on its zero-padded
    output gradient (padded into ``row``) with the flipped, transposed
    weights, group by group."""
    cdef Py_ssize_t grp, Cg = C // G, Mg = M // G
    if floating is float:
        cnnpool_pad_f32(g, row, M, OH, OW, Hg, Wg, gpt, gpl)
    else:
        cnnpool_pad_f64(g, row, M, OH, OW, Hg, Wg, gpt, gpl)
    for grp in range(G):
        if floating is float:
            cnnpool_conv_fwd_f32(row + grp * Mg * Hg * Wg, goffs, Mg * kh * kw,
                                 wpack + grp * stride, NULL, gx + grp * Cg * H * W, Cg, H, W,
                                 Wg)
        else:
            cnnpool_conv_fwd_f64(row + grp * Mg * Hg * Wg, goffs, Mg * kh * kw,
                                 wpack + grp * stride, NULL, gx + grp * Cg * H * W, Cg, H, W,
                                 Wg)


# ------------------------------------------------------------ depthwise loops
cdef void _dw_forward(const floating *x, floating *xp, const floating *w, const floating *bias,
                      floating *out, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                      Py_ssize_t M, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pt, Py_ssize_t pb,
                      Py_ssize_t pl, Py_ssize_t pr, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t dh, Py_ssize_t dw, int n_threads) noexcept nogil:
    """Depthwise forward: plane (n, c) is padded into ``xp``, then convolved
    into output planes ``c*mult .. c*mult + mult - 1`` (``mult = M // C``);
    planes spread over threads."""
    cdef Py_ssize_t Hp = H + pt + pb, Wp = W + pl + pr
    cdef Py_ssize_t OH = (Hp - dh * (kh - 1) - 1) // sh + 1
    cdef Py_ssize_t OW = (Wp - dw * (kw - 1) - 1) // sw + 1
    cdef Py_ssize_t img = C * Hp * Wp + CNNPOOL_CONV_MARGIN, p
    if n_threads > 1:
        for p in prange(N * C, num_threads=n_threads, schedule="dynamic"):
            _dw_forward_plane(x + p * H * W, xp + (p // C) * img + (p % C) * Hp * Wp, w, bias,
                              out + (p // C) * M * OH * OW, p % C, C, H, W, M, kh, kw, pt,
                              pl, sh, sw, dh, dw, Hp, Wp, OH, OW)
    else:
        for p in range(N * C):
            _dw_forward_plane(x + p * H * W, xp + (p // C) * img + (p % C) * Hp * Wp, w, bias,
                              out + (p // C) * M * OH * OW, p % C, C, H, W, M, kh, kw, pt,
                              pl, sh, sw, dh, dw, Hp, Wp, OH, OW)


cdef inline void _dw_forward_plane(const floating *x, floating *xp, const floating *w,
                                   const floating *bias, floating *out, Py_ssize_t c,
                                   Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t M,
                                   Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pt, Py_ssize_t pl,
                                   Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                                   Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t OH,
                                   Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t m, o, mult = M // C
    if floating is float:
        cnnpool_pad_f32(x, xp, 1, H, W, Hp, Wp, pt, pl)
    else:
        cnnpool_pad_f64(x, xp, 1, H, W, Hp, Wp, pt, pl)
    for m in range(mult):
        o = c * mult + m
        if floating is float:
            cnnpool_dw_plane_f32(xp, w + o * kh * kw, 0 if bias == NULL else bias[o], 0,
                                 out + o * OH * OW, kh, kw, sh, sw, dh, dw, OH, OW, Wp)
        else:
            cnnpool_dw_plane_f64(xp, w + o * kh * kw, 0 if bias == NULL else bias[o], 0,
                                 out + o * OH * OW, kh, kw, sh, sw, dh, dw, OH, OW, Wp)


cdef bint _dw_backward(const floating *xp, const floating *g, const floating *w,
                       floating *gx, floating *gw, floating *gb, Py_ssize_t N, Py_ssize_t C,
                       Py_ssize_t H, Py_ssize_t W, Py_ssize_t M, Py_ssize_t kh, Py_ssize_t kw,
                       Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
                       Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                       int n_threads) noexcept nogil:
    """Depthwise backward; True when out of memory.

    Each output channel's weight and bias gradients are summed by one
    thread over the whole batch in image order (threads split the
    channels); each input plane's gradient by one thread: the bits do not
    depend on the thread count.  The input gradient is the correlation of
    the zero-padded output gradient with the flipped filter when the
    stride is 1 and the padding at most ``d*(k-1)``; otherwise each output
    gradient is scattered onto a padded plane (``cnnpool_dw_scatter``).
    """
    cdef Py_ssize_t Hp = H + pt + pb, Wp = W + pl + pr
    cdef Py_ssize_t OH = (Hp - dh * (kh - 1) - 1) // sh + 1
    cdef Py_ssize_t OW = (Wp - dw * (kw - 1) - 1) // sw + 1
    cdef bint scatter = (sh != 1 or sw != 1 or max(pt, pb) > dh * (kh - 1)
                         or max(pl, pr) > dw * (kw - 1))
    cdef Py_ssize_t gpt = 0, gpb = 0, gpl = 0, gpr = 0, Hg = 0, Wg = 0
    if not scatter:
        gpt, gpb = dh * (kh - 1) - pt, dh * (kh - 1) - pb
        gpl, gpr = dw * (kw - 1) - pl, dw * (kw - 1) - pr
        Hg, Wg = OH + gpt + gpb, OW + gpl + gpr
    cdef Py_ssize_t K = kh * kw, img = C * Hp * Wp + CNNPOOL_CONV_MARGIN
    cdef Py_ssize_t row = max(K * OW, Hg * Wg, Hp * Wp if scatter else 0), o, p, i, j
    cdef floating *flipped = <floating *> malloc(max(M * K, 1) * sizeof(floating))
    cdef floating *buf = <floating *> malloc(max(n_threads * row, 1) * sizeof(floating))
    if flipped == NULL or buf == NULL:
        free(flipped)
        free(buf)
        return True
    for o in range(M):
        for i in range(kh):
            for j in range(kw):
                flipped[o * K + i * kw + j] = w[o * K + (kh - 1 - i) * kw + kw - 1 - j]
    if n_threads > 1:
        for o in prange(M, num_threads=n_threads, schedule="dynamic"):
            _dw_param_grads(xp, g, gw, gb, buf + threadid() * row, o, N, C, M, kh, kw, sh, sw,
                            dh, dw, Hp, Wp, OH, OW, img)
        for p in prange(N * C, num_threads=n_threads, schedule="dynamic"):
            _dw_input_grad_plane(g + (p // C) * M * OH * OW, gx + p * H * W, w, flipped,
                                 buf + threadid() * row, p % C, C, H, W, M, kh, kw, sh, sw,
                                 dh, dw, gpt, gpl, Hg, Wg, OH, OW, scatter, pt, pl, Hp, Wp)
    else:
        for o in range(M):
            _dw_param_grads(xp, g, gw, gb, buf, o, N, C, M, kh, kw, sh, sw, dh, dw, Hp, Wp, OH,
                            OW, img)
        for p in range(N * C):
            _dw_input_grad_plane(g + (p // C) * M * OH * OW, gx + p * H * W, w, flipped, buf,
                                 p % C, C, H, W, M, kh, kw, sh, sw, dh, dw, gpt, gpl, Hg, Wg,
                                 OH, OW, scatter, pt, pl, Hp, Wp)
    free(flipped)
    free(buf)
    return False


cdef inline void _dw_param_grads(const floating *xp, const floating *g, floating *gw,
                                 floating *gb, floating *acc, Py_ssize_t o, Py_ssize_t N,
                                 Py_ssize_t C, Py_ssize_t M, Py_ssize_t kh, Py_ssize_t kw,
                                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                                 Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t OH, Py_ssize_t OW,
                                 Py_ssize_t img) noexcept nogil:
    """Output channel o: per-lane sums over the batch in ``acc``, then one
    sum per tap (added into gw), and the bias gradient plane by plane."""
    cdef Py_ssize_t n, i, c = o // (M // C), plane = OH * OW
    for i in range(kh * kw * OW):
        acc[i] = 0
    for n in range(N):
        if floating is float:
            cnnpool_dw_wgrad_f32(xp + n * img + c * Hp * Wp, g + (n * M + o) * plane, acc, kh,
                                 kw, sh, sw, dh, dw, OH, OW, Wp)
        else:
            cnnpool_dw_wgrad_f64(xp + n * img + c * Hp * Wp, g + (n * M + o) * plane, acc, kh,
                                 kw, sh, sw, dh, dw, OH, OW, Wp)
    if floating is float:
        cnnpool_plane_sums_f32(acc, gw + o * kh * kw, kh * kw, OW)
    else:
        cnnpool_plane_sums_f64(acc, gw + o * kh * kw, kh * kw, OW)
    if gb != NULL:
        for n in range(N):
            if floating is float:
                cnnpool_plane_sums_f32(g + (n * M + o) * plane, gb + o, 1, plane)
            else:
                cnnpool_plane_sums_f64(g + (n * M + o) * plane, gb + o, 1, plane)


cdef inline void _dw_input_grad_plane(const floating *g, floating *gx, const floating *w,
                                      const floating *flipped, floating *row, Py_ssize_t c,
                                      Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t M,
                                      Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                                      Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                                      Py_ssize_t gpt, Py_ssize_t gpl, Py_ssize_t Hg,
                                      Py_ssize_t Wg, Py_ssize_t OH, Py_ssize_t OW,
                                      bint scatter, Py_ssize_t pt, Py_ssize_t pl,
                                      Py_ssize_t Hp, Py_ssize_t Wp) noexcept nogil:
    """Input plane c of one image: the sum over its ``mult`` output planes,
    in order, of each one's gradient carried back through its filter."""
    cdef Py_ssize_t m, o, i, h, mult = M // C
    if scatter:
        for i in range(Hp * Wp):
            row[i] = 0
    for m in range(mult):
        o = c * mult + m
        if scatter:
            if floating is float:
                cnnpool_dw_scatter_f32(g + o * OH * OW, w + o * kh * kw, row, kh, kw, sh, sw,
                                       dh, dw, OH, OW, Wp)
            else:
                cnnpool_dw_scatter_f64(g + o * OH * OW, w + o * kh * kw, row, kh, kw, sh, sw,
                                       dh, dw, OH, OW, Wp)
        elif floating is float:
            cnnpool_pad_f32(g + o * OH * OW, row, 1, OH, OW, Hg, Wg, gpt, gpl)
            cnnpool_dw_plane_f32(row, flipped + o * kh * kw, 0, m > 0, gx, kh, kw, 1, 1, dh,
                                 dw, H, W, Wg)
        else:
            cnnpool_pad_f64(g + o * OH * OW, row, 1, OH, OW, Hg, Wg, gpt, gpl)
            cnnpool_dw_plane_f64(row, flipped + o * kh * kw, 0, m > 0, gx, kh, kw, 1, 1, dh,
                                 dw, H, W, Wg)
    if scatter:
        for h in range(H):
            for i in range(W):
                gx[h * W + i] = row[(h + pt) * Wp + pl + i]


# ------------------------------------------------------------------ entry points
def forward(x, xp, weight, bias, out, Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t dil_h,
            Py_ssize_t dil_w, int n_threads, Py_ssize_t pad_bottom=-1,
            Py_ssize_t pad_right=-1, Py_ssize_t groups=1):
    """Zero-pad ``x`` into ``xp`` and write ``out = conv(x, weight) + bias`` (unit stride).

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64, C-contiguous
    xp : ndarray, 1-D, of at least ``N*(C*(H+pt+pb)*(W+pl+pr) + MARGIN)`` elements
        Receives the padded images, each followed by ``MARGIN`` zeros (kept
        by the caller for :func:`backward`).
    weight : ndarray (M, C/groups, kh, kw)
    bias : ndarray (M,) or None
    out : ndarray (N, M, OH, OW), written whole
        ``OH = H + pt + pb - dh*(kh-1)``, ``OW = W + pl + pr - dw*(kw-1)``.
    pad_h, pad_w, dil_h, dil_w : int
        Padding (top, left) >= 0, dilation >= 1.
    n_threads : int
        Threads for the loop over images.
    pad_bottom, pad_right : int
        Padding at the bottom and right; negative (the default): as top and left.
    groups : int
        Input and output channels split into this many groups, each
        convolved on its own (as ``torch.nn.Conv2d``).
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 4, typenum, False)
    cdef cnp.ndarray axp = checked(xp, "xp", 1, typenum, True)
    cdef cnp.ndarray aw = checked(weight, "weight", 4, typenum, False)
    cdef cnp.ndarray aout = checked(out, "out", 4, typenum, True)
    cdef cnp.ndarray ab = None if bias is None else checked(bias, "bias", 1, typenum, False)
    cdef Py_ssize_t N = ax.shape[0], C = ax.shape[1], H = ax.shape[2], W = ax.shape[3]
    cdef Py_ssize_t M = aw.shape[0], kh = aw.shape[2], kw = aw.shape[3]
    cdef Py_ssize_t pads[4]
    _pads(pad_h, pad_w, pad_bottom, pad_right, dil_h, dil_w, pads)
    cdef Py_ssize_t pt = pads[0], pb = pads[1], pl = pads[2], pr = pads[3]
    if n_threads < 1:
        raise ValueError(f"need n_threads >= 1, got n_threads={n_threads}")
    _groups(groups, C, M, aw)
    cdef Py_ssize_t OH = H + pt + pb - dil_h * (kh - 1)
    cdef Py_ssize_t OW = W + pl + pr - dil_w * (kw - 1)
    if aw.shape[1] != C // groups or kh < 1 or kw < 1 or M < 1:
        raise ValueError(
            f"weight must have shape (M, {C // groups}, kh, kw) for {C} input channels in "
            f"{groups} groups, got {dims(aw)}"
        )
    if OH < 1 or OW < 1:
        raise ValueError(
            f"the kernel {dims(aw)} does not fit x {dims(ax)} with this padding"
        )
    _shape(aout, "out", (N, M, OH, OW))
    if ab is not None:
        _shape(ab, "bias", (M,))
    _room(axp, "xp", _padded_size(N, C, H, W, pt + pb, pl + pr))
    cdef bint failed
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            failed = _forward(<float *> cnp.PyArray_DATA(ax), <float *> cnp.PyArray_DATA(axp),
                              <float *> cnp.PyArray_DATA(aw),
                              NULL if ab is None else <float *> cnp.PyArray_DATA(ab),
                              <float *> cnp.PyArray_DATA(aout), N, C, H, W, M, kh, kw,
                              pt, pb, pl, pr, dil_h, dil_w, groups, n_threads)
    else:
        with nogil:
            failed = _forward(<double *> cnp.PyArray_DATA(ax), <double *> cnp.PyArray_DATA(axp),
                              <double *> cnp.PyArray_DATA(aw),
                              NULL if ab is None else <double *> cnp.PyArray_DATA(ab),
                              <double *> cnp.PyArray_DATA(aout), N, C, H, W, M, kh, kw,
                              pt, pb, pl, pr, dil_h, dil_w, groups, n_threads)
    if failed:
        raise MemoryError()


cdef void _backward_checks(cnp.ndarray ag, cnp.ndarray axp, cnp.ndarray aw, cnp.ndarray agx,
                           cnp.ndarray agw, cnp.ndarray agb, Py_ssize_t pad_h,
                           Py_ssize_t pad_w, Py_ssize_t pad_bottom, Py_ssize_t pad_right,
                           Py_ssize_t dil_h, Py_ssize_t dil_w, Py_ssize_t groups,
                           int n_threads, Py_ssize_t *pads, Py_ssize_t stride_h,
                           Py_ssize_t stride_w, bint any_padding) except *:
    """The checks :func:`backward` and :func:`depthwise_backward` share;
    writes the padding (top, bottom, left, right) to ``pads``.  Without
    ``any_padding`` the padding must be at most ``dilation*(kernel-1)``."""
    cdef Py_ssize_t N = ag.shape[0], M = ag.shape[1], OH = ag.shape[2], OW = ag.shape[3]
    cdef Py_ssize_t kh = aw.shape[2], kw = aw.shape[3]
    cdef Py_ssize_t C = agx.shape[1], H = agx.shape[2], W = agx.shape[3]
    _pads(pad_h, pad_w, pad_bottom, pad_right, dil_h, dil_w, pads)
    cdef Py_ssize_t pt = pads[0], pb = pads[1], pl = pads[2], pr = pads[3]
    if kh < 1 or kw < 1 or n_threads < 1 or min(stride_h, stride_w) < 1 \
            or max(stride_h, stride_w) > 2**31 or not any_padding and (
                max(pt, pb) > dil_h * (kh - 1) or max(pl, pr) > dil_w * (kw - 1)):
        raise ValueError(
            f"backward needs dilation >= 1, 0 <= padding <= dilation*(kernel-1), "
            f"1 <= stride <= 2**31 and n_threads >= 1, got padding (top, bottom, left, "
            f"right) = ({pt}, {pb}, {pl}, {pr}), dilation=({dil_h}, {dil_w}), kernel=({kh}, "
            f"{kw}), stride=({stride_h}, {stride_w}), n_threads={n_threads}"
        )
    _groups(groups, C, M, aw)
    _shape(aw, "weight", (M, C // groups, kh, kw))
    _shape(agx, "grad_x", (N, C, H, W))
    if (H + pt + pb - dil_h * (kh - 1) - 1) // stride_h + 1 != OH \
            or (W + pl + pr - dil_w * (kw - 1) - 1) // stride_w + 1 != OW or OH < 1 or OW < 1:
        raise ValueError(
            f"grad_out {dims(ag)} does not match grad_x {dims(agx)} with kernel "
            f"({kh}, {kw}), padding (top, bottom, left, right) ({pt}, {pb}, {pl}, {pr}), "
            f"stride ({stride_h}, {stride_w}) and dilation ({dil_h}, {dil_w})"
        )
    _shape(agw, "weight_grad", (M, C // groups, kh, kw))
    if agb is not None:
        _shape(agb, "bias_grad", (M,))
    _room(axp, "xp", _padded_size(N, C, H, W, pt + pb, pl + pr))


def backward(xp, grad_out, weight, grad_x, weight_grad, bias_grad, scratch, Py_ssize_t pad_h,
             Py_ssize_t pad_w, Py_ssize_t dil_h, Py_ssize_t dil_w, int n_threads,
             Py_ssize_t pad_bottom=-1, Py_ssize_t pad_right=-1, Py_ssize_t groups=1):
    """Gradients of :func:`forward`: ``grad_x`` written, parameter gradients added.

    Parameters
    ----------
    xp : ndarray, 1-D
        The padded images :func:`forward` wrote.
    grad_out : ndarray (N, M, OH, OW)
    weight : ndarray (M, C/groups, kh, kw)
        The weights of that forward call.
    grad_x : ndarray (N, C, H, W)
        Written whole: the full correlation of ``grad_out`` with the flipped,
        transposed weights.  Needs ``0 <= padding <= dilation*(kernel-1)``
        on every side.
    weight_grad : ndarray (M, C/groups, kh, kw); bias_grad : ndarray (M,) or None
        The sums over the batch are *added* into them (in an order that does
        not depend on the thread count).
    scratch : ndarray (n_threads, S)
        One row per thread for a padded image of ``grad_out``:
        ``S >= M*(OH + gt + gb)*(OW + gl + gr) + MARGIN``, ``g = d*(k-1) - p``
        on each side.
    pad_bottom, pad_right, groups : int
        As in :func:`forward`.
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
    cdef Py_ssize_t kh = aw.shape[2], kw = aw.shape[3]
    cdef Py_ssize_t C = agx.shape[1], H = agx.shape[2], W = agx.shape[3]
    cdef Py_ssize_t pads[4]
    _backward_checks(ag, axp, aw, agx, agw, agb, pad_h, pad_w, pad_bottom, pad_right, dil_h,
                     dil_w, groups, n_threads, pads, 1, 1, False)
    cdef Py_ssize_t pt = pads[0], pb = pads[1], pl = pads[2], pr = pads[3]
    if ascratch.shape[0] < n_threads:
        raise ValueError(
            f"scratch needs one row per thread ({n_threads}), got {dims(ascratch)}"
        )
    _room(ascratch, "scratch", _padded_size(1, M, OH, OW, 2 * dil_h * (kh - 1) - pt - pb,
                                            2 * dil_w * (kw - 1) - pl - pr))
    cdef bint failed
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            failed = _backward(
                <float *> cnp.PyArray_DATA(axp), <float *> cnp.PyArray_DATA(ag),
                <float *> cnp.PyArray_DATA(aw), <float *> cnp.PyArray_DATA(agx),
                <float *> cnp.PyArray_DATA(agw),
                NULL if agb is None else <float *> cnp.PyArray_DATA(agb),
                <float *> cnp.PyArray_DATA(ascratch), ascratch.shape[1],
                N, C, H, W, M, kh, kw, pt, pb, pl, pr, dil_h, dil_w, groups, n_threads)
    else:
        with nogil:
            failed = _backward(
                <double *> cnp.PyArray_DATA(axp), <double *> cnp.PyArray_DATA(ag),
                <double *> cnp.PyArray_DATA(aw), <double *> cnp.PyArray_DATA(agx),
                <double *> cnp.PyArray_DATA(agw),
                NULL if agb is None else <double *> cnp.PyArray_DATA(agb),
                <double *> cnp.PyArray_DATA(ascratch), ascratch.shape[1],
                N, C, H, W, M, kh, kw, pt, pb, pl, pr, dil_h, dil_w, groups, n_threads)
    if failed:
        raise MemoryError()


def depthwise_forward(x, xp, weight, bias, out, Py_ssize_t pad_top, Py_ssize_t pad_bottom,
                      Py_ssize_t pad_left, Py_ssize_t pad_right, Py_ssize_t dil_h,
                      Py_ssize_t dil_w, int n_threads, Py_ssize_t stride_h=1,
                      Py_ssize_t stride_w=1):
    """Depthwise convolution (``groups == C``), any stride and padding: as :func:`forward`.

    ``weight`` is (M, 1, kh, kw) with M a multiple of C: output channel o
    filters input channel ``o // (M // C)``.  ``xp`` has the layout of
    :func:`forward` (its margins are neither read nor written here).  Any
    CPU: plain C loops the compiler vectorises.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 4, typenum, False)
    cdef cnp.ndarray axp = checked(xp, "xp", 1, typenum, True)
    cdef cnp.ndarray aw = checked(weight, "weight", 4, typenum, False)
    cdef cnp.ndarray aout = checked(out, "out", 4, typenum, True)
    cdef cnp.ndarray ab = None if bias is None else checked(bias, "bias", 1, typenum, False)
    cdef Py_ssize_t N = ax.shape[0], C = ax.shape[1], H = ax.shape[2], W = ax.shape[3]
    cdef Py_ssize_t M = aw.shape[0], kh = aw.shape[2], kw = aw.shape[3]
    cdef Py_ssize_t pads[4]
    _pads(pad_top, pad_left, pad_bottom, pad_right, dil_h, dil_w, pads)
    cdef Py_ssize_t pt = pads[0], pb = pads[1], pl = pads[2], pr = pads[3]
    if n_threads < 1:
        raise ValueError(f"need n_threads >= 1, got n_threads={n_threads}")
    _groups(C, C, M, aw)
    if min(stride_h, stride_w) < 1 or max(stride_h, stride_w) > 2**31:
        raise ValueError(f"need 1 <= stride <= 2**31, got stride=({stride_h}, {stride_w})")
    cdef Py_ssize_t OH = (H + pt + pb - dil_h * (kh - 1) - 1) // stride_h + 1
    cdef Py_ssize_t OW = (W + pl + pr - dil_w * (kw - 1) - 1) // stride_w + 1
    if H + pt + pb - dil_h * (kh - 1) < 1 or W + pl + pr - dil_w * (kw - 1) < 1:
        OH = OW = 0  # the kernel does not fit (floor division would round up to 0 + 1)
    if aw.shape[1] != 1 or kh < 1 or kw < 1 or M < 1:
        raise ValueError(f"weight must have shape (M, 1, kh, kw), got {dims(aw)}")
    if OH < 1 or OW < 1:
        raise ValueError(
            f"the kernel {dims(aw)} does not fit x {dims(ax)} with this padding"
        )
    _shape(aout, "out", (N, M, OH, OW))
    if ab is not None:
        _shape(ab, "bias", (M,))
    _room(axp, "xp", _padded_size(N, C, H, W, pt + pb, pl + pr))
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            _dw_forward(<float *> cnp.PyArray_DATA(ax), <float *> cnp.PyArray_DATA(axp),
                        <float *> cnp.PyArray_DATA(aw),
                        NULL if ab is None else <float *> cnp.PyArray_DATA(ab),
                        <float *> cnp.PyArray_DATA(aout), N, C, H, W, M, kh, kw, pt, pb, pl,
                        pr, stride_h, stride_w, dil_h, dil_w, n_threads)
    else:
        with nogil:
            _dw_forward(<double *> cnp.PyArray_DATA(ax), <double *> cnp.PyArray_DATA(axp),
                        <double *> cnp.PyArray_DATA(aw),
                        NULL if ab is None else <double *> cnp.PyArray_DATA(ab),
                        <double *> cnp.PyArray_DATA(aout), N, C, H, W, M, kh, kw, pt, pb, pl,
                        pr, stride_h, stride_w, dil_h, dil_w, n_threads)


def depthwise_backward(xp, grad_out, weight, grad_x, weight_grad, bias_grad,
                       Py_ssize_t pad_top, Py_ssize_t pad_bottom, Py_ssize_t pad_left,
                       Py_ssize_t pad_right, Py_ssize_t dil_h, Py_ssize_t dil_w,
                       int n_threads, Py_ssize_t stride_h=1, Py_ssize_t stride_w=1):
    """Gradients of :func:`depthwise_forward`, as :func:`backward` (no scratch:
    a few rows per thread are allocated here); any stride and padding."""
    cdef int typenum = float_type(grad_out, "grad_out")
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 4, typenum, False)
    cdef cnp.ndarray axp = checked(xp, "xp", 1, typenum, False)
    cdef cnp.ndarray aw = checked(weight, "weight", 4, typenum, False)
    cdef cnp.ndarray agx = checked(grad_x, "grad_x", 4, typenum, True)
    cdef cnp.ndarray agw = checked(weight_grad, "weight_grad", 4, typenum, True)
    cdef cnp.ndarray agb = (None if bias_grad is None
                            else checked(bias_grad, "bias_grad", 1, typenum, True))
    cdef Py_ssize_t N = ag.shape[0], M = ag.shape[1]
    cdef Py_ssize_t kh = aw.shape[2], kw = aw.shape[3]
    cdef Py_ssize_t C = agx.shape[1], H = agx.shape[2], W = agx.shape[3]
    cdef Py_ssize_t pads[4]
    _backward_checks(ag, axp, aw, agx, agw, agb, pad_top, pad_left, pad_bottom, pad_right,
                     dil_h, dil_w, C, n_threads, pads, stride_h, stride_w, True)
    cdef Py_ssize_t pt = pads[0], pb = pads[1], pl = pads[2], pr = pads[3]
    cdef bint failed
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            failed = _dw_backward(
                <float *> cnp.PyArray_DATA(axp), <float *> cnp.PyArray_DATA(ag),
                <float *> cnp.PyArray_DATA(aw), <float *> cnp.PyArray_DATA(agx),
                <float *> cnp.PyArray_DATA(agw),
                NULL if agb is None else <float *> cnp.PyArray_DATA(agb),
                N, C, H, W, M, kh, kw, pt, pb, pl, pr, stride_h, stride_w, dil_h, dil_w,
                n_threads)
    else:
        with nogil:
            failed = _dw_backward(
                <double *> cnp.PyArray_DATA(axp), <double *> cnp.PyArray_DATA(ag),
                <double *> cnp.PyArray_DATA(aw), <double *> cnp.PyArray_DATA(agx),
                <double *> cnp.PyArray_DATA(agw),
                NULL if agb is None else <double *> cnp.PyArray_DATA(agb),
                N, C, H, W, M, kh, kw, pt, pb, pl, pr, stride_h, stride_w, dil_h, dil_w,
                n_threads)
    if failed:
        raise MemoryError()
