/* Register-blocked micro-kernels of the direct (implicit-GEMM) convolution.
 *
 * Used by _direct.pyx, which validates every size and pointer first:
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
 * never reach a result.  conv_fwd reads at most one vector minus one
 * element past the last element of a row (15 floats, 7 doubles, with
 * AVX-512 or AVX2: well within the margin); conv_wgrad's masked loads
 * read nothing past it.
 *
 * Three instantiations, chosen at compile time (-march=native):
 *   AVX-512F (16 float / 8 double lanes, 32 zmm registers): conv_fwd works
 *     on blocks of 4 output channels times 4 vectors of pixels (2 rows x 2
 *     vectors, so a 32-wide row in one go; rows of at most one vector take
 *     4 rows x 1 vector), 16 accumulators; row tails use mask registers
 *     (masked stores).  conv_wgrad works on 8 output channels x 3 taps, 24
 *     accumulators, with zero-masked loads for row tails (masked lanes are
 *     not read at all); rows of at most half a vector use the AVX2 kernel,
 *     which wastes fewer lanes.
 *   AVX2+FMA (8 / 4 lanes, 16 ymm registers): conv_fwd 4 output channels x
 *     2 vectors of one row (8 accumulators), conv_wgrad 4 x 3 blocks.
 *   Scalar (below).
 * Each output element and each per-image weight-gradient sum is computed
 * by one thread in a fixed order, so the bits do not depend on the thread
 * count; they do depend on the instantiation (lane count: another
 * summation order in conv_wgrad).
 *
 * Without AVX2+FMA at compile time (CNNPOOL_PORTABLE=1, other CPUs)
 * CNNPOOL_CONV_SIMD is 0 and Conv2d keeps im2col + BLAS instead, which is
 * faster than plain C loops.  The scalar versions below keep the module's
 * functions available (and correct) there; the tests of the direct path
 * run only on SIMD builds, which include the sanitizer build of CI.
 */
#ifndef CNNPOOL_CONV_DIRECT_H
#define CNNPOOL_CONV_DIRECT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CNNPOOL_CONV_SIMD 1
#if defined(__AVX512F__)
#define CNNPOOL_CONV_AVX512 1
#else
#define CNNPOOL_CONV_AVX512 0
#endif
#else
#define CNNPOOL_CONV_AVX512 0
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

#if CNNPOOL_CONV_SIMD
/* AVX2 lane masks for the last, partial vector of a row: lane l is on when l < n. */
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
#endif

/* ------------------------------------------------------------- forward
 * out[o, oh, ow] = bias[o] + sum_k w[o, k] * xp[offs[k] + oh*Wp + ow]
 *
 * wpack holds the weights in register-block order, [ob][k][OB], with zero
 * rows for o >= O (their results are never stored).  bias may be NULL.
 * Blocks of OB output channels times 2 vectors of pixels: 8 accumulators,
 * each step 2 loads of x, OB broadcasts of w, 2*OB FMAs. */

#if CNNPOOL_CONV_AVX512

/* AVX-512: 16 float (8 double) lanes, so two vectors span a 32-wide row.
 * Blocks of OB output channels times 4 vectors of pixels: 16 accumulators
 * (of 32 zmm registers), each step 4 loads of x, OB broadcasts of w, 4*OB
 * FMAs.  The 4 vectors are 2 rows times 2 vectors when a row is wider than
 * one vector, else 4 rows times 1 vector (rows of <= 16 floats would leave
 * a second vector empty).  A vector past the last row repeats the first
 * (its result is not stored); row tails use the native masks: masked
 * stores, nothing is written past a row. */
#define CNNPOOL_FWD_512(T, NAME, VT, L, MT, LOADU, SET1, FMADD, ADD, SETZERO, MSTORE,   \
                        MASKGEN)                                                        \
static void NAME(const T *xp, const ptrdiff_t *offs, ptrdiff_t K, const T *wpack,       \
                 const T *bias, T *out, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW,         \
                 ptrdiff_t Wp)                                                          \
{                                                                                       \
    const ptrdiff_t nob = (O + CNNPOOL_CONV_OB - 1) / CNNPOOL_CONV_OB;                  \
    const ptrdiff_t plane = OH * OW;                                                    \
    const int wide = OW > L;                    /* 2 rows x 2 vectors, else 4 x 1 */     \
    const ptrdiff_t rows = wide ? 2 : 4, cols = wide ? 2 * L : L;                       \
    for (ptrdiff_t oh = 0; oh < OH; oh += rows) {                                       \
        for (ptrdiff_t ow0 = 0; ow0 < OW; ow0 += cols) {                                \
            const ptrdiff_t left = OW - ow0;                                            \
            /* Vector v: row oh + dr[v] from column ow0 + dc[v], lanes m[v]. */          \
            ptrdiff_t dr[4], dc[4], d[4];                                               \
            MT m[4];                                                                    \
            int on[4];                                                                  \
            for (int v = 0; v < 4; v++) {                                               \
                dr[v] = wide ? v / 2 : v;                                               \
                dc[v] = wide ? (v % 2) * L : 0;                                         \
                on[v] = oh + dr[v] < OH && dc[v] < left;                                \
                d[v] = on[v] ? dr[v] * Wp + dc[v] : 0;                                  \
                m[v] = MASKGEN(left - dc[v]);                                           \
            }                                                                           \
            const T *xb = xp + oh * Wp + ow0;                                           \
            const ptrdiff_t d1 = d[1], d2 = d[2], d3 = d[3];                            \
            for (ptrdiff_t ob = 0; ob < nob; ob++) {                                    \
                const T *wk = wpack + ob * K * CNNPOOL_CONV_OB;                         \
                VT a00 = SETZERO(), a01 = SETZERO(), a02 = SETZERO(), a03 = SETZERO();  \
                VT a10 = SETZERO(), a11 = SETZERO(), a12 = SETZERO(), a13 = SETZERO();  \
                VT a20 = SETZERO(), a21 = SETZERO(), a22 = SETZERO(), a23 = SETZERO();  \
                VT a30 = SETZERO(), a31 = SETZERO(), a32 = SETZERO(), a33 = SETZERO();  \
                for (ptrdiff_t k = 0; k < K; k++, wk += CNNPOOL_CONV_OB) {              \
                    const T *p = xb + offs[k];                                          \
                    VT v0 = LOADU(p), v1 = LOADU(p + d1), v2 = LOADU(p + d2);           \
                    VT v3 = LOADU(p + d3), w;                                           \
                    w = SET1(wk[0]); CNNPOOL_IN_ZMM(w);                                 \
                    a00 = FMADD(w, v0, a00); a01 = FMADD(w, v1, a01);                   \
                    a02 = FMADD(w, v2, a02); a03 = FMADD(w, v3, a03);                   \
                    w = SET1(wk[1]); CNNPOOL_IN_ZMM(w);                                 \
                    a10 = FMADD(w, v0, a10); a11 = FMADD(w, v1, a11);                   \
                    a12 = FMADD(w, v2, a12); a13 = FMADD(w, v3, a13);                   \
                    w = SET1(wk[2]); CNNPOOL_IN_ZMM(w);                                 \
                    a20 = FMADD(w, v0, a20); a21 = FMADD(w, v1, a21);                   \
                    a22 = FMADD(w, v2, a22); a23 = FMADD(w, v3, a23);                   \
                    w = SET1(wk[3]); CNNPOOL_IN_ZMM(w);                                 \
                    a30 = FMADD(w, v0, a30); a31 = FMADD(w, v1, a31);                   \
                    a32 = FMADD(w, v2, a32); a33 = FMADD(w, v3, a33);                   \
                }                                                                       \
                VT acc[CNNPOOL_CONV_OB][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, \
                                              {a20, a21, a22, a23}, {a30, a31, a32, a33}}; \
                for (int r = 0; r < CNNPOOL_CONV_OB; r++) {                             \
                    ptrdiff_t o = ob * CNNPOOL_CONV_OB + r;                             \
                    if (o >= O) break;                                                  \
                    VT b = SET1(bias ? bias[o] : (T)0);                                 \
                    T *dst = out + o * plane + oh * OW + ow0;                           \
                    for (int v = 0; v < 4; v++)                                         \
                        if (on[v])                                                      \
                            MSTORE(dst + dr[v] * OW + dc[v], m[v], ADD(acc[r][v], b));  \
                }                                                                       \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
}

/* Lane masks for the last, partial vector of a row: lane l is on when l < n. */
static inline __mmask16 cnnpool_mask512_f32(ptrdiff_t n)
{
    return (__mmask16)(n <= 0 ? 0 : (n >= 16 ? 0xFFFF : (1u << n) - 1));
}
static inline __mmask8 cnnpool_mask512_f64(ptrdiff_t n)
{
    return (__mmask8)(n <= 0 ? 0 : (n >= 8 ? 0xFF : (1u << n) - 1));
}
/* Keep a broadcast weight in a register: otherwise GCC folds it into each
 * FMA as a {1to16} memory operand, four loads of it instead of one. */
#if defined(__GNUC__)
#define CNNPOOL_IN_ZMM(a) __asm__("" : "+v"(a))
#else
#define CNNPOOL_IN_ZMM(a) ((void)0)
#endif

CNNPOOL_FWD_512(float, cnnpool_conv_fwd_f32, __m512, 16, __mmask16, _mm512_loadu_ps,
                _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_setzero_ps,
                _mm512_mask_storeu_ps, cnnpool_mask512_f32)
CNNPOOL_FWD_512(double, cnnpool_conv_fwd_f64, __m512d, 8, __mmask8, _mm512_loadu_pd,
                _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd, _mm512_setzero_pd,
                _mm512_mask_storeu_pd, cnnpool_mask512_f64)

#elif CNNPOOL_CONV_SIMD

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
 * gw[o, k] += sum_{n, oh, ow} g[n*gs + o*OH*OW + oh*OW + ow]
 *                             * xp[n*xs + offs[k] + oh*Wp + ow]
 *
 * over the N images of a batch (image n of xp starts xs elements after
 * image n-1, of g gs elements).  gw is (O, K), row-major.  Blocks of 4
 * output channels times 3 taps: 12 vector accumulators of partial sums over
 * the pixels of all images, reduced once at the end in a fixed order (one
 * reduction per batch, not per image: on small maps the reductions cost as
 * much as the FMAs).  Each gw[o, k] is one accumulator's sum, whichever
 * other channels share its block, so a caller may split O between threads
 * without changing a bit.  A partial last vector of a row loads g and x masked
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
                 T *gw, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t Wp,        \
                 ptrdiff_t N, ptrdiff_t xs, ptrdiff_t gs)                             \
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
            for (ptrdiff_t n = 0; n < N; n++)                                        \
            for (ptrdiff_t oh = 0; oh < OH; oh++) {                                  \
                const ptrdiff_t gi = n * gs + oh * OW, xi = n * xs + oh * Wp;        \
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

#if CNNPOOL_CONV_AVX512

CNNPOOL_WGRAD_SIMD(float, cnnpool_conv_wgrad256_f32, __m256, 8, _mm256_loadu_ps,
                   CNNPOOL_MLOAD_PS, _mm256_fmadd_ps, _mm256_setzero_ps, cnnpool_mask_f32,
                   cnnpool_hsum_ps)
CNNPOOL_WGRAD_SIMD(double, cnnpool_conv_wgrad256_f64, __m256d, 4, _mm256_loadu_pd,
                   CNNPOOL_MLOAD_PD, _mm256_fmadd_pd, _mm256_setzero_pd, cnnpool_mask_f64,
                   cnnpool_hsum_pd)

/* Sum of the 16 (8) lanes in a fixed order: halves added pairwise. */
static inline float cnnpool_hsum512_ps(__m512 v)
{
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
static inline double cnnpool_hsum512_pd(__m512d v)
{
    __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

/* AVX-512: blocks of 8 output channels (4 for a remainder of 1-4) times 3
 * taps: 24 accumulators, each step 3 loads of x, 8 of g, 24 FMAs.  The
 * partial last vector of a row is loaded with a zeroing mask: masked lanes
 * read as 0 and are not read from memory, so no inf or NaN past a row
 * enters.  The rows of a block are spelled out by X-macros (named
 * variables: GCC leaves an accumulator array in memory). */
#define CNNPOOL_ROWS4(X, ...) X(0, __VA_ARGS__) X(1, __VA_ARGS__) X(2, __VA_ARGS__) \
                              X(3, __VA_ARGS__)
#define CNNPOOL_ROWS8(X, ...) CNNPOOL_ROWS4(X, __VA_ARGS__) X(4, __VA_ARGS__)          \
                              X(5, __VA_ARGS__) X(6, __VA_ARGS__) X(7, __VA_ARGS__)
/* Rows past O repeat the last one; their sums are not stored. */
#define CNNPOOL_WG_ROW(r, T, VT, SETZERO)                                            \
    const T *g##r = g + (o0 + r < O ? o0 + r : O - 1) * plane;                       \
    VT a##r##0 = SETZERO(), a##r##1 = SETZERO(), a##r##2 = SETZERO();
#define CNNPOOL_WG_FMA(r, VT, LOAD, FMADD)                                           \
    {                                                                                \
        VT v = LOAD(g##r + gi + ow);                                                 \
        CNNPOOL_IN_ZMM(v);                                                           \
        a##r##0 = FMADD(v, u0, a##r##0);                                             \
        a##r##1 = FMADD(v, u1, a##r##1);                                             \
        a##r##2 = FMADD(v, u2, a##r##2);                                             \
    }
#define CNNPOOL_WG_SUM(r, HSUM)                                                      \
    if (o0 + r < O) {                                                                \
        gw[(o0 + r) * K + k0] += HSUM(a##r##0);                                      \
        if (k0 + 1 < K) gw[(o0 + r) * K + k0 + 1] += HSUM(a##r##1);                  \
        if (k0 + 2 < K) gw[(o0 + r) * K + k0 + 2] += HSUM(a##r##2);                  \
    }
#define CNNPOOL_WGRAD_512_BLOCK(T, NAME, ROWS, VT, L, MT, LOADU, MLOADZ, TLOAD, FMADD,  \
                                SETZERO, MASKGEN, HSUM)                              \
static void NAME(const T *xp, const ptrdiff_t *offs, ptrdiff_t K, const T *g, T *gw, \
                 ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t Wp, ptrdiff_t N,  \
                 ptrdiff_t xs, ptrdiff_t gs, ptrdiff_t o0)                            \
{                                                                                    \
    const ptrdiff_t plane = OH * OW, full = OW - OW % L;                             \
    const MT tail = MASKGEN(OW % L);                                                 \
    for (ptrdiff_t k0 = 0; k0 < K; k0 += 3) {                                        \
        const T *x0 = xp + offs[k0];                                                 \
        const T *x1 = xp + offs[k0 + 1 < K ? k0 + 1 : K - 1];                        \
        const T *x2 = xp + offs[k0 + 2 < K ? k0 + 2 : K - 1];                        \
        ROWS(CNNPOOL_WG_ROW, T, VT, SETZERO)                                         \
        for (ptrdiff_t n = 0; n < N; n++)                                            \
        for (ptrdiff_t oh = 0; oh < OH; oh++) {                                      \
            const ptrdiff_t gi = n * gs + oh * OW, xi = n * xs + oh * Wp;            \
            ptrdiff_t ow = 0;                                                        \
            for (; ow < full; ow += L) {                                             \
                VT u0 = LOADU(x0 + xi + ow), u1 = LOADU(x1 + xi + ow);               \
                VT u2 = LOADU(x2 + xi + ow);                                         \
                CNNPOOL_IN_ZMM(u0); CNNPOOL_IN_ZMM(u1); CNNPOOL_IN_ZMM(u2);          \
                ROWS(CNNPOOL_WG_FMA, VT, LOADU, FMADD)                               \
            }                                                                        \
            if (ow < OW) {                                                           \
                VT u0 = MLOADZ(tail, x0 + xi + ow), u1 = MLOADZ(tail, x1 + xi + ow); \
                VT u2 = MLOADZ(tail, x2 + xi + ow);                                  \
                ROWS(CNNPOOL_WG_FMA, VT, TLOAD, FMADD)                               \
            }                                                                        \
        }                                                                            \
        ROWS(CNNPOOL_WG_SUM, HSUM)                                                   \
    }                                                                                \
}
#define CNNPOOL_WGRAD_512(T, NAME, VT, L, MT, LOADU, MLOADZ, TLOAD, FMADD, SETZERO,    \
                          MASKGEN, HSUM)                                             \
CNNPOOL_WGRAD_512_BLOCK(T, NAME##_8, CNNPOOL_ROWS8, VT, L, MT, LOADU, MLOADZ, TLOAD,  \
                        FMADD, SETZERO, MASKGEN, HSUM)                               \
CNNPOOL_WGRAD_512_BLOCK(T, NAME##_4, CNNPOOL_ROWS4, VT, L, MT, LOADU, MLOADZ, TLOAD,  \
                        FMADD, SETZERO, MASKGEN, HSUM)                               \
static void NAME(const T *xp, const ptrdiff_t *offs, ptrdiff_t K, const T *g,        \
                 T *gw, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t Wp,        \
                 ptrdiff_t N, ptrdiff_t xs, ptrdiff_t gs)                             \
{                                                                                    \
    ptrdiff_t o0 = 0;                                                                \
    for (; O - o0 > 4; o0 += 8)                                                      \
        NAME##_8(xp, offs, K, g, gw, O, OH, OW, Wp, N, xs, gs, o0);                  \
    if (o0 < O)                                                                      \
        NAME##_4(xp, offs, K, g, gw, O, OH, OW, Wp, N, xs, gs, o0);                  \
}
#define CNNPOOL_TLOAD_PS(p) _mm512_maskz_loadu_ps(tail, (p))
#define CNNPOOL_TLOAD_PD(p) _mm512_maskz_loadu_pd(tail, (p))
CNNPOOL_WGRAD_512(float, cnnpool_conv_wgrad512_f32, __m512, 16, __mmask16, _mm512_loadu_ps,
                  _mm512_maskz_loadu_ps, CNNPOOL_TLOAD_PS, _mm512_fmadd_ps,
                  _mm512_setzero_ps, cnnpool_mask512_f32, cnnpool_hsum512_ps)
CNNPOOL_WGRAD_512(double, cnnpool_conv_wgrad512_f64, __m512d, 8, __mmask8, _mm512_loadu_pd,
                  _mm512_maskz_loadu_pd, CNNPOOL_TLOAD_PD, _mm512_fmadd_pd,
                  _mm512_setzero_pd, cnnpool_mask512_f64, cnnpool_hsum512_pd)

/* Rows of at most half a 512-bit vector would leave half of every vector
 * empty: the 256-bit kernel is faster there (8-wide rows: 77 against 60
 * GFLOP/s on a Zen 5). */
#define CNNPOOL_WGRAD_PICK(T, NAME, NARROW, WIDE, L)                                \
static void NAME(const T *xp, const ptrdiff_t *offs, ptrdiff_t K, const T *g,       \
                 T *gw, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t Wp,       \
                 ptrdiff_t N, ptrdiff_t xs, ptrdiff_t gs)                            \
{                                                                                   \
    if (OW <= L / 2)                                                                \
        NARROW(xp, offs, K, g, gw, O, OH, OW, Wp, N, xs, gs);                       \
    else                                                                            \
        WIDE(xp, offs, K, g, gw, O, OH, OW, Wp, N, xs, gs);                         \
}
CNNPOOL_WGRAD_PICK(float, cnnpool_conv_wgrad_f32, cnnpool_conv_wgrad256_f32,
                   cnnpool_conv_wgrad512_f32, 16)
CNNPOOL_WGRAD_PICK(double, cnnpool_conv_wgrad_f64, cnnpool_conv_wgrad256_f64,
                   cnnpool_conv_wgrad512_f64, 8)

#else

CNNPOOL_WGRAD_SIMD(float, cnnpool_conv_wgrad_f32, __m256, 8, _mm256_loadu_ps,
                   CNNPOOL_MLOAD_PS, _mm256_fmadd_ps, _mm256_setzero_ps, cnnpool_mask_f32,
                   cnnpool_hsum_ps)
CNNPOOL_WGRAD_SIMD(double, cnnpool_conv_wgrad_f64, __m256d, 4, _mm256_loadu_pd,
                   CNNPOOL_MLOAD_PD, _mm256_fmadd_pd, _mm256_setzero_pd, cnnpool_mask_f64,
                   cnnpool_hsum_pd)

#endif

#else

#define CNNPOOL_WGRAD_SCALAR(T, NAME)                                               \
static void NAME(const T *xp, const ptrdiff_t *offs, ptrdiff_t K, const T *g,       \
                 T *gw, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t Wp,       \
                 ptrdiff_t N, ptrdiff_t xs, ptrdiff_t gs)                            \
{                                                                                   \
    for (ptrdiff_t o = 0; o < O; o++)                                               \
        for (ptrdiff_t k = 0; k < K; k++) {                                         \
            T s = 0;                                                                \
            for (ptrdiff_t n = 0; n < N; n++)                                       \
            for (ptrdiff_t oh = 0; oh < OH; oh++)                                   \
                for (ptrdiff_t ow = 0; ow < OW; ow++)                               \
                    s += g[n * gs + (o * OH + oh) * OW + ow]                        \
                         * xp[n * xs + offs[k] + oh * Wp + ow];                     \
            gw[o * K + k] += s;                                                     \
        }                                                                           \
}
CNNPOOL_WGRAD_SCALAR(float, cnnpool_conv_wgrad_f32)
CNNPOOL_WGRAD_SCALAR(double, cnnpool_conv_wgrad_f64)

#endif

/* ------------------------------------------------------------- depthwise
 * Depthwise convolution (groups == channels) has one kh x kw filter per
 * output plane: a register block of 4 output channels over shared inputs
 * (above) would idle 3 of its 4 rows.  These loops work one plane at a
 * time, a whole output row per tap: the innermost loop is a plain
 * element-wise update over the row, which every compiler vectorises at the
 * width of the variant it builds, so the same C serves every CPU level.
 * Each output element (and each lane of a weight-gradient row) is summed in
 * one fixed order, whatever the thread count.  Nothing here reads outside
 * the padded plane: no margin is needed. */
#if defined(_MSC_VER)
#define CNNPOOL_RESTRICT __restrict
#else
#define CNNPOOL_RESTRICT restrict
#endif

/* out (OH, OW) = bias + sum_{i,j} w[i*kw + j] * xp[(oh*sh + i*dh)*Wp + ow*sw + j*dw]
 * (the taps added row-major after the bias); with `accumulate` the sum is
 * added to out instead (bias unused).  Unit column stride is the common
 * case, and the one that vectorises: it has a copy of the loops of its own. */
#define CNNPOOL_DW_PLANE_ROWS(T, SW)                                                \
    for (ptrdiff_t oh = 0; oh < OH; oh++) {                                         \
        T *CNNPOOL_RESTRICT o = out + oh * OW;                                      \
        if (!accumulate)                                                            \
            for (ptrdiff_t ow = 0; ow < OW; ow++) o[ow] = bias;                     \
        for (ptrdiff_t i = 0; i < kh; i++)                                          \
            for (ptrdiff_t j = 0; j < kw; j++) {                                    \
                const T v = w[i * kw + j];                                          \
                const T *CNNPOOL_RESTRICT s = xp + (oh * sh + i * dh) * Wp + j * dw; \
                for (ptrdiff_t ow = 0; ow < OW; ow++) o[ow] += v * s[ow * (SW)];    \
            }                                                                       \
    }
#define CNNPOOL_DW_PLANE(T, NAME)                                                   \
static void NAME(const T *CNNPOOL_RESTRICT xp, const T *CNNPOOL_RESTRICT w, T bias,  \
                 int accumulate, T *CNNPOOL_RESTRICT out, ptrdiff_t kh, ptrdiff_t kw, \
                 ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t dh, ptrdiff_t dw, ptrdiff_t OH,  \
                 ptrdiff_t OW, ptrdiff_t Wp)                                         \
{                                                                                   \
    if (sw == 1) {                                                                  \
        CNNPOOL_DW_PLANE_ROWS(T, 1)                                                 \
    } else {                                                                        \
        CNNPOOL_DW_PLANE_ROWS(T, sw)                                                \
    }                                                                               \
}
CNNPOOL_DW_PLANE(float, cnnpool_dw_plane_f32)
CNNPOOL_DW_PLANE(double, cnnpool_dw_plane_f64)

/* Weight gradient of one plane, kept per lane: acc[(i*kw + j)*OW + ow] +=
 * sum_oh g[oh*OW + ow] * xp[(oh*sh + i*dh)*Wp + ow*sw + j*dw].  The caller
 * sums each row of acc once the whole batch is in (cnnpool_plane_sums).
 * One tap and one chunk of CNNPOOL_DW_CHUNK columns at a time, the
 * chunk's partial sums over the rows in a local array (registers), added
 * to acc once per plane: two loads per multiply-add instead of three loads
 * and a store.  The order of every sum depends on the shape only. */
#define CNNPOOL_DW_CHUNK 16
#define CNNPOOL_DW_WGRAD_TAP(T, SW, N)                                              \
    {                                                                               \
        T a[CNNPOOL_DW_CHUNK] = {0};                                                \
        for (ptrdiff_t oh = 0; oh < OH; oh++) {                                     \
            const T *CNNPOOL_RESTRICT gr = g + oh * OW + ow0;                       \
            const T *CNNPOOL_RESTRICT s = x0 + oh * sh * Wp;                        \
            for (ptrdiff_t l = 0; l < (N); l++) a[l] += gr[l] * s[l * (SW)];        \
        }                                                                           \
        for (ptrdiff_t l = 0; l < (N); l++) at[l] += a[l];                          \
    }
#define CNNPOOL_DW_WGRAD_ROWS(T, SW)                                                \
    for (ptrdiff_t i = 0; i < kh; i++)                                              \
        for (ptrdiff_t j = 0; j < kw; j++) {                                        \
            T *CNNPOOL_RESTRICT row = acc + (i * kw + j) * OW;                      \
            ptrdiff_t ow0 = 0;                                                      \
            for (; ow0 + CNNPOOL_DW_CHUNK <= OW; ow0 += CNNPOOL_DW_CHUNK) {         \
                const T *x0 = xp + i * dh * Wp + j * dw + ow0 * (SW);               \
                T *CNNPOOL_RESTRICT at = row + ow0;                                 \
                CNNPOOL_DW_WGRAD_TAP(T, SW, CNNPOOL_DW_CHUNK)                       \
            }                                                                       \
            if (ow0 < OW) {                                                         \
                const ptrdiff_t rest = OW - ow0;                                    \
                const T *x0 = xp + i * dh * Wp + j * dw + ow0 * (SW);               \
                T *CNNPOOL_RESTRICT at = row + ow0;                                 \
                CNNPOOL_DW_WGRAD_TAP(T, SW, rest)                                   \
            }                                                                       \
        }
#define CNNPOOL_DW_WGRAD(T, NAME)                                                   \
static void NAME(const T *CNNPOOL_RESTRICT xp, const T *CNNPOOL_RESTRICT g,          \
                 T *CNNPOOL_RESTRICT acc, ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t sh,  \
                 ptrdiff_t sw, ptrdiff_t dh, ptrdiff_t dw, ptrdiff_t OH, ptrdiff_t OW, \
                 ptrdiff_t Wp)                                                       \
{                                                                                   \
    if (sw == 1) {                                                                  \
        CNNPOOL_DW_WGRAD_ROWS(T, 1)                                                 \
    } else {                                                                        \
        CNNPOOL_DW_WGRAD_ROWS(T, sw)                                                \
    }                                                                               \
}
CNNPOOL_DW_WGRAD(float, cnnpool_dw_wgrad_f32)
CNNPOOL_DW_WGRAD(double, cnnpool_dw_wgrad_f64)

/* The adjoint of CNNPOOL_DW_PLANE (input gradient of one plane, any stride
 * and padding): gxp (a padded plane, row pitch Wp) += each g[oh, ow] times
 * w[i, j] at the padded position that tap read, in the order oh, i, j, ow.
 * With unit stride and padding of at most d*(k-1) the caller uses the
 * correlation with the flipped filter instead (no scatter). */
#define CNNPOOL_DW_SCATTER(T, NAME)                                                 \
static void NAME(const T *CNNPOOL_RESTRICT g, const T *CNNPOOL_RESTRICT w,           \
                 T *CNNPOOL_RESTRICT gxp, ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t sh,  \
                 ptrdiff_t sw, ptrdiff_t dh, ptrdiff_t dw, ptrdiff_t OH, ptrdiff_t OW, \
                 ptrdiff_t Wp)                                                       \
{                                                                                   \
    for (ptrdiff_t oh = 0; oh < OH; oh++) {                                         \
        const T *CNNPOOL_RESTRICT gr = g + oh * OW;                                 \
        for (ptrdiff_t i = 0; i < kh; i++)                                          \
            for (ptrdiff_t j = 0; j < kw; j++) {                                    \
                const T v = w[i * kw + j];                                          \
                T *CNNPOOL_RESTRICT d = gxp + (oh * sh + i * dh) * Wp + j * dw;     \
                if (sw == 1)                                                        \
                    for (ptrdiff_t ow = 0; ow < OW; ow++) d[ow] += v * gr[ow];      \
                else                                                                \
                    for (ptrdiff_t ow = 0; ow < OW; ow++) d[ow * sw] += v * gr[ow]; \
            }                                                                       \
    }                                                                               \
}
CNNPOOL_DW_SCATTER(float, cnnpool_dw_scatter_f32)
CNNPOOL_DW_SCATTER(double, cnnpool_dw_scatter_f64)

#endif /* CNNPOOL_CONV_DIRECT_H */
