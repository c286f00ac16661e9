/* C helpers of the max and mean kernels (_kernels.pyx): the SIMD intrinsics
 * gcc does not emit by itself, and two loops that must be plain C.
 *
 * Non-temporal ("streaming") stores for the large writes of the tiled 2x2
 * backward passes: a normal store first reads the line it writes (the
 * read-for-ownership), so writing 16 MB costs about as much as copying it;
 * a streaming store does not.  It also bypasses the caches, so it is used
 * only for outputs too large to stay in the last-level cache
 * (stream_min_bytes, set from cnnpool.pooling.base.STREAM_MIN_BYTES), and
 * only where every row starts on a cache line (the layers allocate such
 * outputs aligned): mixed with normal stores to neighbouring lines,
 * streaming stores were slower than plain ones.
 * gcc emits no streaming stores by itself, so these loops are written with
 * AVX intrinsics; they do the scalar loops' very operations (compare and
 * select, divide, + 0), so the bits are the same.  Without AVX (portable
 * builds) the scalar loops do all the work.
 */
#ifndef CNNPOOL_KERNELS_H
#define CNNPOOL_KERNELS_H

#include <stdint.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#define CNNPOOL_STREAM 1
#else
#define CNNPOOL_STREAM 0
#endif

/* Whether streaming stores can write rows of row_bytes from dst on:
   every row must start on a cache line.  A line written partly by
   normal and partly by streaming stores, or streaming stores mixed
   with normal ones to the lines around them, made the copy slower
   than plain stores here. */
static inline int cnnpool_can_stream(const void *dst, size_t row_bytes)
{
    return CNNPOOL_STREAM && ((uintptr_t)dst & 63) == 0 && (row_bytes & 63) == 0;
}

/* Max 2x2 backward of windows [0, m) of one output row, straight to
   the two 64-byte aligned input rows r0, r1 with streaming stores:
   window t writes grad[t] + 0 (PyTorch's accumulation into zeros) at
   its winner, tap off[t] (0..3 as a float), and +0.0 at its other
   three taps.  Returns how many windows it did (a whole number of
   vectors); the caller finishes the row. */
static inline Py_ssize_t cnnpool_max_back_2x2_stream_d(
    const double *grad, const double *off, double *r0, double *r1, Py_ssize_t m)
{
    Py_ssize_t t = 0;
#if CNNPOOL_STREAM
    const __m128d zero = _mm_setzero_pd();
    const __m256d taps0 = _mm256_set_pd(1, 0, 1, 0), taps1 = _mm256_set_pd(3, 2, 3, 2);
    for (; t + 2 <= m; t += 2) {
        __m128d g = _mm_add_pd(_mm_loadu_pd(grad + t), zero);
        __m128d o = _mm_loadu_pd(off + t);
        __m256d gg = _mm256_set_m128d(_mm_unpackhi_pd(g, g), _mm_unpacklo_pd(g, g));
        __m256d oo = _mm256_set_m128d(_mm_unpackhi_pd(o, o), _mm_unpacklo_pd(o, o));
        _mm256_stream_pd(r0 + 2 * t, _mm256_and_pd(_mm256_cmp_pd(oo, taps0, _CMP_EQ_OQ), gg));
        _mm256_stream_pd(r1 + 2 * t, _mm256_and_pd(_mm256_cmp_pd(oo, taps1, _CMP_EQ_OQ), gg));
    }
#endif
    return t;
}

static inline Py_ssize_t cnnpool_max_back_2x2_stream_f(
    const float *grad, const float *off, float *r0, float *r1, Py_ssize_t m)
{
    Py_ssize_t t = 0;
#if CNNPOOL_STREAM
    const __m128 zero = _mm_setzero_ps();
    const __m256 taps0 = _mm256_set_ps(1, 0, 1, 0, 1, 0, 1, 0);
    const __m256 taps1 = _mm256_set_ps(3, 2, 3, 2, 3, 2, 3, 2);
    for (; t + 4 <= m; t += 4) {
        __m128 g = _mm_add_ps(_mm_loadu_ps(grad + t), zero);
        __m128 o = _mm_loadu_ps(off + t);
        __m256 gg = _mm256_set_m128(_mm_unpackhi_ps(g, g), _mm_unpacklo_ps(g, g));
        __m256 oo = _mm256_set_m128(_mm_unpackhi_ps(o, o), _mm_unpacklo_ps(o, o));
        _mm256_stream_ps(r0 + 2 * t, _mm256_and_ps(_mm256_cmp_ps(oo, taps0, _CMP_EQ_OQ), gg));
        _mm256_stream_ps(r1 + 2 * t, _mm256_and_ps(_mm256_cmp_ps(oo, taps1, _CMP_EQ_OQ), gg));
    }
#endif
    return t;
}

/* Mean 2x2 backward of windows [0, m) of one output row, as max's
   above: window t writes grad[t] / (type)div[t] + 0 at all four taps
   (the scalar loop's arithmetic, vectorised). */
static inline Py_ssize_t cnnpool_mean_back_2x2_stream_d(
    const double *grad, const double *div, double *r0, double *r1, Py_ssize_t m)
{
    Py_ssize_t t = 0;
#if CNNPOOL_STREAM
    const __m128d zero = _mm_setzero_pd();
    for (; t + 2 <= m; t += 2) {
        __m128d v = _mm_add_pd(_mm_div_pd(_mm_loadu_pd(grad + t), _mm_loadu_pd(div + t)), zero);
        __m256d vv = _mm256_set_m128d(_mm_unpackhi_pd(v, v), _mm_unpacklo_pd(v, v));
        _mm256_stream_pd(r0 + 2 * t, vv);
        _mm256_stream_pd(r1 + 2 * t, vv);
    }
#endif
    return t;
}

static inline Py_ssize_t cnnpool_mean_back_2x2_stream_f(
    const float *grad, const double *div, float *r0, float *r1, Py_ssize_t m)
{
    Py_ssize_t t = 0;
#if CNNPOOL_STREAM
    const __m128 zero = _mm_setzero_ps();
    for (; t + 4 <= m; t += 4) {
        __m128 d = _mm256_cvtpd_ps(_mm256_loadu_pd(div + t));
        __m128 v = _mm_add_ps(_mm_div_ps(_mm_loadu_ps(grad + t), d), zero);
        __m256 vv = _mm256_set_m128(_mm_unpackhi_ps(v, v), _mm_unpacklo_ps(v, v));
        _mm256_stream_ps(r0 + 2 * t, vv);
        _mm256_stream_ps(r1 + 2 * t, vv);
    }
#endif
    return t;
}

/* One output row of 2x2 stride-2 mean: ((r0[2t] + r0[2t+1]) + r1[2t])
   + r1[2t+1], started from 0 (as the scalar loop: -0.0 sums to +0.0),
   divided by div[t].  Plain C with restrict pointers, so gcc vectorises
   it without the aliasing checks it wraps the Cython loop in. */
#define CNNPOOL_MEAN_2X2_ROW(T, NAME)                                           \
static inline void NAME(const T *restrict r0, const T *restrict r1,             \
                        const double *restrict div, T *restrict o, Py_ssize_t n) \
{                                                                               \
    for (Py_ssize_t t = 0; t < n; t++) {                                        \
        T total = 0;                                                            \
        total = total + r0[2 * t];                                              \
        total = total + r0[2 * t + 1];                                          \
        total = total + r1[2 * t];                                              \
        total = total + r1[2 * t + 1];                                          \
        o[t] = total / (T)div[t];                                               \
    }                                                                           \
}
CNNPOOL_MEAN_2X2_ROW(float, cnnpool_mean_2x2_row_f)
CNNPOOL_MEAN_2X2_ROW(double, cnnpool_mean_2x2_row_d)

/* Flat 3x3 max, stage 1, at the first window column of each input row
   (whose left tap is padding): the winner of x[2k], x[2k+1] by the
   max rule (greater, or NaN), k = r * n_out.  Written with integer
   masks: as compare-and-branch (what gcc made of the Cython loop) it
   mispredicted half the time on random data, a third of W2's forward. */
#define CNNPOOL_FLAT3_ROW_STARTS(T, U, NAME)                                     \
static inline void NAME(const T *x, T *hv, T *ho, Py_ssize_t rows, Py_ssize_t n_out) \
{                                                                               \
    for (Py_ssize_t r = 0; r < rows; r++) {                                     \
        Py_ssize_t k = r * n_out;                                               \
        T b = x[2 * k], v = x[2 * k + 1];                                       \
        U win = (U)((v > b) | (v != v)), m = (U)0 - win, vb, bb, res;           \
        memcpy(&vb, &v, sizeof vb);                                             \
        memcpy(&bb, &b, sizeof bb);                                             \
        res = (vb & m) | (bb & ~m);                                             \
        memcpy(hv + k, &res, sizeof res);                                       \
        ho[k] = (T)(1 + win);                                                   \
    }                                                                           \
}
CNNPOOL_FLAT3_ROW_STARTS(float, uint32_t, cnnpool_flat3_row_starts_f)
CNNPOOL_FLAT3_ROW_STARTS(double, uint64_t, cnnpool_flat3_row_starts_d)

/* Order streaming stores before anything after (another thread's reads). */
static inline void cnnpool_stream_fence(void)
{
#if CNNPOOL_STREAM
    _mm_sfence();
#endif
}

#endif
