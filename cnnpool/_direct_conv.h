/* Register-blocked micro-kernels of the direct (implicit-GEMM) convolution.
 *
 * Used by _direct_conv.pyx, which validates every size and pointer first:
 * nothing here checks bounds.  Each function handles ONE image on the
 * calling thread; the .pyx spreads images over OpenMP threads.
 *
 * Notation: the input image is already zero-padded, `xp` (C, Hp, Wp)
 * with row pitch Wp, and the convolution has unit stride, so the tap
 * k = (c, i, j) of output pixel (oh, ow) reads xp[offs[k] + oh*Wp + ow]
 * with offs[k] = (c*Hp + i*dh)*Wp + j*dw.  A run of consecutive output
 * pixels therefore reads a run of consecutive inputs: a vector load.
 * That is what makes the im2col buffer (and its trip through memory)
 * unnecessary.
 *
 * Over-reads: a vector that starts near the end of a row reads past it
 * (into the next row, or into the margin the caller allocates after the
 * last image: CNNPOOL_CONV_MARGIN elements).  Those lanes are discarded
 * (masked stores) in conv_fwd and masked to zero in conv_wgrad, so they
 * never reach a result.
 *
 * Without AVX2+FMA at compile time (CNNPOOL_PORTABLE=1, other CPUs)
 * CNNPOOL_CONV_SIMD is 0 and Conv2d keeps im2col + BLAS instead, which is
 * faster than plain C loops.  The scalar versions below keep the module's
 * functions available (and correct) there; the tests of the direct path
 * run only on SIMD builds, which include the sanitizer build of CI.
 */
#ifndef CNNPOOL_DIRECT_CONV_H
#define CNNPOOL_DIRECT_CONV_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CNNPOOL_CONV_SIMD 1
#else
#define CNNPOOL_CONV_SIMD 0
#endif

/* Output channels per register block, and the most elements a kernel may
 * read past the end of the padded input. */
#define CNNPOOL_CONV_OB 4
#define CNNPOOL_CONV_MARGIN 64

/* ------------------------------------------------------------------ helpers */

/* Copy image x (C, H, W) into xp (C, Hp, Wp) with pt/pl zeros before each
 * column/row and zeros after; Hp >= H + pt, Wp >= W + pl. */
#define CNNPOOL_PAD(T, NAME)                                                        \
static void NAME(const T *x, T *xp, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,          \
                 ptrdiff_t Hp, ptrdiff_t Wp, ptrdiff_t pt, ptrdiff_t pl)            \
{                                                                                   \
    for (ptrdiff_t c = 0; c < C; c++) {                                             \
        T *dst = xp + c * Hp * Wp;                                                  \
        const T *src = x + c * H * W;                                               \
        memset(dst, 0, (size_t)(pt * Wp) * sizeof(T));                             \
        for (ptrdiff_t h = 0; h < H; h++) {                                         \
            T *row = dst + (pt + h) * Wp;                                           \
            memset(row, 0, (size_t)pl * sizeof(T));                                 \
            memcpy(row + pl, src + h * W, (size_t)W * sizeof(T));                   \
            memset(row + pl + W, 0, (size_t)(Wp - pl - W) * sizeof(T));             \
        }                                                                           \
        memset(dst + (pt + H) * Wp, 0, (size_t)((Hp - pt - H) * Wp) * sizeof(T));   \
    }                                                                               \
}
CNNPOOL_PAD(float, cnnpool_pad_f32)
CNNPOOL_PAD(double, cnnpool_pad_f64)

/* Sum of each of O planes of P elements: out[o] += sum(g[o*P : (o+1)*P]).
 * Eight partial sums per plane, summed in a fixed order: deterministic. */
#define CNNPOOL_PLANE_SUMS(T, NAME)                                                 \
static void NAME(const T *g, T *out, ptrdiff_t O, ptrdiff_t P)                      \
{                                                                                   \
    for (ptrdiff_t o = 0; o < O; o++) {                                             \
        const T *p = g + o * P;                                                     \
        T s[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                          \
        ptrdiff_t i = 0;                                                            \
        for (; i + 8 <= P; i += 8)                                                  \
            for (int l = 0; l < 8; l++) s[l] += p[i + l];                           \
        for (; i < P; i++) s[0] += p[i];                                            \
        out[o] += ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])); \
    }                                                                               \
}
CNNPOOL_PLANE_SUMS(float, cnnpool_plane_sums_f32)
CNNPOOL_PLANE_SUMS(double, cnnpool_plane_sums_f64)

/* ------------------------------------------------------------- forward
 * out[o, oh, ow] = bias[o] + sum_k w[o, k] * xp[offs[k] + oh*Wp + ow]
 *
 * wpack holds the weights in register-block order, [ob][k][OB], with zero
 * rows for o >= O (their results are never stored).  bias may be NULL.
 * Blocks of OB output channels times 2 vectors of pixels: 8 accumulators,
 * each step 2 loads of x, OB broadcasts of w, 2*OB FMAs. */

#if CNNPOOL_CONV_SIMD

#define CNNPOOL_FWD_SIMD(T, NAME, VT, L, LOADU, SET1, FMADD, SETZERO, MSTORE, MTYPE,  \
                         MASKGEN)                                                    \
static void NAME(const T *xp, const ptrdiff_t *offs, ptrdiff_t K, const T *wpack,    \
                 const T *bias, T *out, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW,      \
                 ptrdiff_t Wp)                                                       \
{                                                                                    \
    const ptrdiff_t nob = (O + CNNPOOL_CONV_OB - 1) / CNNPOOL_CONV_OB;               \
    const ptrdiff_t plane = OH * OW;                                                 \
    for (ptrdiff_t oh = 0; oh < OH; oh++) {                                          \
        const T *xrow = xp + oh * Wp;                                                \
        for (ptrdiff_t ow0 = 0; ow0 < OW; ow0 += 2 * L) {                            \
            const T *xb = xrow + ow0;                                                \
            ptrdiff_t left = OW - ow0;                                               \
            MTYPE m0 = MASKGEN(left), m1 = MASKGEN(left - L);                        \
            for (ptrdiff_t ob = 0; ob < nob; ob++) {                                 \
                const T *wk = wpack + ob * K * CNNPOOL_CONV_OB;                      \
                VT a00 = SETZERO(), a01 = SETZERO(), a10 = SETZERO(), a11 = SETZERO(); \
                VT a20 = SETZERO(), a21 = SETZERO(), a30 = SETZERO(), a31 = SETZERO(); \
                for (ptrdiff_t k = 0; k < K; k++, wk += CNNPOOL_CONV_OB) {           \
                    const T *p = xb + offs[k];                                       \
                    VT v0 = LOADU(p), v1 = LOADU(p + L), w;                          \
                    w = SET1(wk[0]); a00 = FMADD(w, v0, a00); a01 = FMADD(w, v1, a01); \
                    w = SET1(wk[1]); a10 = FMADD(w, v0, a10); a11 = FMADD(w, v1, a11); \
                    w = SET1(wk[2]); a20 = FMADD(w, v0, a20); a21 = FMADD(w, v1, a21); \
                    w = SET1(wk[3]); a30 = FMADD(w, v0, a30); a31 = FMADD(w, v1, a31); \
                }                                                                    \
                VT acc[CNNPOOL_CONV_OB][2] = {{a00, a01}, {a10, a11}, {a20, a21},    \
                                              {a30, a31}};                           \
                for (int r = 0; r < CNNPOOL_CONV_OB; r++) {                          \
                    ptrdiff_t o = ob * CNNPOOL_CONV_OB + r;                          \
                    if (o >= O) break;                                               \
                    VT b = SET1(bias ? bias[o] : (T)0);                              \
                    T *dst = out + o * plane + oh * OW + ow0;                        \
                    MSTORE(dst, m0, _mm256_add_##VT##_sfx(acc[r][0], b));            \
                    if (left > L) MSTORE(dst + L, m1, _mm256_add_##VT##_sfx(acc[r][1], b)); \
                }                                                                    \
            }                                                                        \
        }                                                                            \
    }                                                                                \
}

/* Lane masks for the last, partial vector of a row: lane l is on when l < n. */
static inline __m256i cnnpool_mask_f32(ptrdiff_t n)
{
    n = n < 0 ? 0 : (n > 8 ? 8 : n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline __m256i cnnpool_mask_f64(ptrdiff_t n)
{
    n = n < 0 ? 0 : (n > 4 ? 4 : n);
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)n),
                              _mm256_setr_epi64x(0, 1, 2, 3));
}
#define _mm256_add___m256_sfx _mm256_add_ps
#define _mm256_add___m256d_sfx _mm256_add_pd
#define CNNPOOL_MSTORE_PS(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#define CNNPOOL_MSTORE_PD(p, m, v) _mm256_maskstore_pd((p), (m), (v))

CNNPOOL_FWD_SIMD(float, cnnpool_conv_fwd_f32, __m256, 8, _mm256_loadu_ps, _mm256_set1_ps,
                 _mm256_fmadd_ps, _mm256_setzero_ps, CNNPOOL_MSTORE_PS, __m256i,
                 cnnpool_mask_f32)
CNNPOOL_FWD_SIMD(double, cnnpool_conv_fwd_f64, __m256d, 4, _mm256_loadu_pd, _mm256_set1_pd,
                 _mm256_fmadd_pd, _mm256_setzero_pd, CNNPOOL_MSTORE_PD, __m256i,
                 cnnpool_mask_f64)

#else /* scalar fallback: same contract */

#define CNNPOOL_FWD_SCALAR(T, NAME)                                                 \
static void NAME(const T *xp, const ptrdiff_t *offs, ptrdiff_t K, const T *wpack,   \
                 const T *bias, T *out, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW,     \
                 ptrdiff_t Wp)                                                      \
{                                                                                   \
    for (ptrdiff_t o = 0; o < O; o++) {                                             \
        const T *wk = wpack + (o / CNNPOOL_CONV_OB) * K * CNNPOOL_CONV_OB            \
                      + o % CNNPOOL_CONV_OB;                                        \
        for (ptrdiff_t oh = 0; oh < OH; oh++)                                       \
            for (ptrdiff_t ow = 0; ow < OW; ow++) {                                 \
                T s = 0;                                                            \
                const T *xb = xp + oh * Wp + ow;                                    \
                for (ptrdiff_t k = 0; k < K; k++)                                   \
                    s += wk[k * CNNPOOL_CONV_OB] * xb[offs[k]];                     \
                out[(o * OH + oh) * OW + ow] = s + (bias ? bias[o] : (T)0);         \
            }                                                                       \
    }                                                                               \
}
CNNPOOL_FWD_SCALAR(float, cnnpool_conv_fwd_f32)
CNNPOOL_FWD_SCALAR(double, cnnpool_conv_fwd_f64)

#endif

/* ------------------------------------------------------------- weight gradient
 * gw[o, k] += sum_{oh, ow} g[o, oh, ow] * xp[offs[k] + oh*Wp + ow]
 *
 * gw is (O, K), row-major.  Blocks of 4 output channels times 3 taps:
 * 12 vector accumulators of partial sums over pixels, reduced at the end
 * in a fixed order.  A partial last vector of a row loads g and x masked
 * (masked lanes read as 0), so an inf or NaN past the row never enters. */

#if CNNPOOL_CONV_SIMD

static inline float cnnpool_hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
static inline double cnnpool_hsum_pd(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

/* Make GCC load each vector once into a register: left alone it re-reads
 * the x (or g) vectors from memory for every FMA that uses them (15-16
 * loads per 12 FMAs), which makes this kernel load-bound; pinned, it is 7. */
#if defined(__GNUC__)
#define CNNPOOL_IN_REGISTERS(a, b, c) __asm__("" : "+x"(a), "+x"(b), "+x"(c))
#define CNNPOOL_IN_REGISTER(a) __asm__("" : "+x"(a))
#else
#define CNNPOOL_IN_REGISTER(a) ((void)0)
#define CNNPOOL_IN_REGISTERS(a, b, c) ((void)0)
#endif

#define CNNPOOL_WGRAD_SIMD(T, NAME, VT, L, LOADU, MLOAD, FMADD, SETZERO, MASKGEN, HSUM) \
static void NAME(const T *xp, const ptrdiff_t *offs, ptrdiff_t K, const T *g,        \
                 T *gw, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t Wp)        \
{                                                                                    \
    const ptrdiff_t plane = OH * OW, full = OW - OW % L;                             \
    const __m256i tail = MASKGEN(OW % L);                                            \
    for (ptrdiff_t o0 = 0; o0 < O; o0 += 4) {                                        \
        /* Rows past O repeat the last one; their sums are not stored. */            \
        const T *g0 = g + o0 * plane;                                                \
        const T *g1 = g + (o0 + 1 < O ? o0 + 1 : O - 1) * plane;                     \
        const T *g2 = g + (o0 + 2 < O ? o0 + 2 : O - 1) * plane;                     \
        const T *g3 = g + (o0 + 3 < O ? o0 + 3 : O - 1) * plane;                     \
        for (ptrdiff_t k0 = 0; k0 < K; k0 += 3) {                                    \
            const T *x0 = xp + offs[k0];                                             \
            const T *x1 = xp + offs[k0 + 1 < K ? k0 + 1 : K - 1];                    \
            const T *x2 = xp + offs[k0 + 2 < K ? k0 + 2 : K - 1];                    \
            VT a00 = SETZERO(), a01 = SETZERO(), a02 = SETZERO();                   \
            VT a10 = SETZERO(), a11 = SETZERO(), a12 = SETZERO();                   \
            VT a20 = SETZERO(), a21 = SETZERO(), a22 = SETZERO();                   \
            VT a30 = SETZERO(), a31 = SETZERO(), a32 = SETZERO();                   \
            for (ptrdiff_t oh = 0; oh < OH; oh++) {                                  \
                const ptrdiff_t gi = oh * OW, xi = oh * Wp;                          \
                for (ptrdiff_t ow = 0; ow < OW; ow += L) {                           \
                    VT u0, u1, u2, v0, v1, v2, v3;                                   \
                    if (ow < full) {                                                 \
                        u0 = LOADU(x0 + xi + ow); u1 = LOADU(x1 + xi + ow);          \
                        u2 = LOADU(x2 + xi + ow);                                    \
                        v0 = LOADU(g0 + gi + ow); v1 = LOADU(g1 + gi + ow);          \
                        v2 = LOADU(g2 + gi + ow); v3 = LOADU(g3 + gi + ow);          \
                    } else {                                                         \
                        u0 = MLOAD(x0 + xi + ow, tail); u1 = MLOAD(x1 + xi + ow, tail); \
                        u2 = MLOAD(x2 + xi + ow, tail);                              \
                        v0 = MLOAD(g0 + gi + ow, tail); v1 = MLOAD(g1 + gi + ow, tail); \
                        v2 = MLOAD(g2 + gi + ow, tail); v3 = MLOAD(g3 + gi + ow, tail); \
                    }                                                                \
                    CNNPOOL_IN_REGISTERS(u0, u1, u2);                                \
                    CNNPOOL_IN_REGISTER(v0);                                         \
                    a00 = FMADD(v0, u0, a00); a01 = FMADD(v0, u1, a01); a02 = FMADD(v0, u2, a02); \
                    CNNPOOL_IN_REGISTER(v1);                                         \
                    a10 = FMADD(v1, u0, a10); a11 = FMADD(v1, u1, a11); a12 = FMADD(v1, u2, a12); \
                    CNNPOOL_IN_REGISTER(v2);                                         \
                    a20 = FMADD(v2, u0, a20); a21 = FMADD(v2, u1, a21); a22 = FMADD(v2, u2, a22); \
                    CNNPOOL_IN_REGISTER(v3);                                         \
                    a30 = FMADD(v3, u0, a30); a31 = FMADD(v3, u1, a31); a32 = FMADD(v3, u2, a32); \
                }                                                                    \
            }                                                                        \
            VT a[4][3] = {{a00, a01, a02}, {a10, a11, a12}, {a20, a21, a22},        \
                          {a30, a31, a32}};                                          \
            for (int r = 0; r < 4 && o0 + r < O; r++)                                \
                for (int q = 0; q < 3 && k0 + q < K; q++)                            \
                    gw[(o0 + r) * K + k0 + q] += HSUM(a[r][q]);                      \
        }                                                                            \
    }                                                                                \
}
#define CNNPOOL_MLOAD_PS(p, m) _mm256_maskload_ps((p), (m))
#define CNNPOOL_MLOAD_PD(p, m) _mm256_maskload_pd((p), (m))
CNNPOOL_WGRAD_SIMD(float, cnnpool_conv_wgrad_f32, __m256, 8, _mm256_loadu_ps,
                   CNNPOOL_MLOAD_PS, _mm256_fmadd_ps, _mm256_setzero_ps, cnnpool_mask_f32,
                   cnnpool_hsum_ps)
CNNPOOL_WGRAD_SIMD(double, cnnpool_conv_wgrad_f64, __m256d, 4, _mm256_loadu_pd,
                   CNNPOOL_MLOAD_PD, _mm256_fmadd_pd, _mm256_setzero_pd, cnnpool_mask_f64,
                   cnnpool_hsum_pd)

#else

#define CNNPOOL_WGRAD_SCALAR(T, NAME)                                               \
static void NAME(const T *xp, const ptrdiff_t *offs, ptrdiff_t K, const T *g,       \
                 T *gw, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t Wp)       \
{                                                                                   \
    for (ptrdiff_t o = 0; o < O; o++)                                               \
        for (ptrdiff_t k = 0; k < K; k++) {                                         \
            T s = 0;                                                                \
            for (ptrdiff_t oh = 0; oh < OH; oh++)                                   \
                for (ptrdiff_t ow = 0; ow < OW; ow++)                               \
                    s += g[(o * OH + oh) * OW + ow] * xp[offs[k] + oh * Wp + ow];   \
            gw[o * K + k] += s;                                                     \
        }                                                                           \
}
CNNPOOL_WGRAD_SCALAR(float, cnnpool_conv_wgrad_f32)
CNNPOOL_WGRAD_SCALAR(double, cnnpool_conv_wgrad_f64)

#endif

#endif /* CNNPOOL_DIRECT_CONV_H */
