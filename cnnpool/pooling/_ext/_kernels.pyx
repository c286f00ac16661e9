"""Compiled kernels of the built-in max and mean strategies.

Fused float32/float64, GIL released, parallel over the N*C planes (each
plane whole on one thread, so results never depend on the thread count).
The thin Python layer (``max.py``, ``mean.py``, through ``base.py``)
checks every shape, dtype and contiguity and builds the window ranges;
these loops then run with bounds checks off.

Window ranges: for output row ``oh`` the taps ``i`` in
``[row_lo[oh], row_hi[oh])`` land inside the input, at input row
``row_start[oh] + i * dil_h`` (likewise for columns).

The arithmetic is PyTorch's, operation for operation, so the numbers agree
bit for bit; everything else here is about speed.  Pooling is memory-bound
only if the loops over windows are vectorised and free of unpredictable
branches, so the forward pass works on whole output rows:

* **Direct** (2x2 stride 2, no padding: the most common layer): a fused
  loop reads the two input rows in place.
* **Panels** (every other geometry): each input row a window row needs is
  copied once (per plane, cached) into a *panel*: padded with the pad
  value (-inf for max, 0 for mean) on both sides and split into
  ``stride_w`` phases, so that tap ``j`` of window ``t`` is element
  ``t + shift_j`` of phase ``q_j``.  Every window of the row then reads
  unit-stride, with no border cases, and the row length is rounded up to
  a multiple of 8 so that no branchy scalar remainder runs.  Padded taps
  change nothing: -inf never wins a max (a window whose inside taps are
  all -inf is fixed to its first inside tap when the indices are
  written), and adding +0.0 to a sum that started at +0.0 is exact.
  3x3 stride 2 has a fused loop, any other kernel goes tap by tap.
* **Scalar**: a per-window loop, only for absurdly wide windows whose tap
  offsets are not exact in float32.

Max keeps the running best and the winner's tap number in two arrays of
the input's own type (gcc vectorises selects of equal width, not
float-to-int ones on SSE2); a second pass then writes the tap numbers,
uint8 for windows of up to 255 taps: what the backward reads again is
then a byte per window, not an int64 flat index.

Backward of non-overlapping pooling (stride = kernel, no padding or
dilation) writes every input gradient exactly once, so its output needs
no zero-fill.  Otherwise max zeroes one plane (in cache) and adds each
gradient at its winner (window origin + tap offset) in window order;
mean accumulates into zeroed panels of the whole plane and copies the
result out once.  An input element
receives its windows' shares in row-major window order, as in PyTorch:
the taps of a window row run from the last column to the first (a later
window reaches a column through an earlier tap).
"""

from cython cimport floating
from cython.parallel cimport parallel
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

cimport numpy as cnp

from cnnpool._arrays cimport checked, dims, float_type
from cnnpool._openmp cimport cnnpool_share

cnp.import_array()


# Non-temporal ("streaming") stores for the large writes of the tiled 2x2
# backward passes: a normal store first reads the line it writes (the
# read-for-ownership), so writing 16 MB costs about as much as copying it;
# a streaming store does not (W5 max backward 2.0 -> 1.3 ms on the earlier
# AVX2 benchmark machine).  It also bypasses the caches, so it is used only
# for outputs too large to stay in the last-level cache (stream_min_bytes,
# set from cnnpool.pooling.base.STREAM_MIN_BYTES), and only where every row
# starts on a cache line (the layers allocate such outputs aligned): mixed with normal stores to
# neighbouring lines, streaming stores were slower than plain ones here.
# gcc emits no streaming stores by itself, so these loops are written with
# AVX intrinsics; they do the scalar loops' very operations (compare and
# select, divide, + 0), so the bits are the same.  Without AVX (portable
# builds) the scalar loops do all the work.
cdef extern from *:
    """
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
    """
    void cnnpool_stream_fence() noexcept nogil
    const bint CNNPOOL_STREAM
    void cnnpool_flat3_row_starts_f(const float* x, float* hv, float* ho, Py_ssize_t rows,
                                    Py_ssize_t n_out) noexcept nogil
    void cnnpool_flat3_row_starts_d(const double* x, double* hv, double* ho, Py_ssize_t rows,
                                    Py_ssize_t n_out) noexcept nogil
    void cnnpool_mean_2x2_row_f(const float* r0, const float* r1, const double* div,
                                float* o, Py_ssize_t n) noexcept nogil
    void cnnpool_mean_2x2_row_d(const double* r0, const double* r1, const double* div,
                                double* o, Py_ssize_t n) noexcept nogil
    bint cnnpool_can_stream(const void* dst, size_t row_bytes) noexcept nogil
    Py_ssize_t cnnpool_max_back_2x2_stream_d(const double* grad, const double* off,
                                             double* r0, double* r1,
                                             Py_ssize_t m) noexcept nogil
    Py_ssize_t cnnpool_max_back_2x2_stream_f(const float* grad, const float* off,
                                             float* r0, float* r1,
                                             Py_ssize_t m) noexcept nogil
    Py_ssize_t cnnpool_mean_back_2x2_stream_d(const double* grad, const double* div,
                                              double* r0, double* r1,
                                              Py_ssize_t m) noexcept nogil
    Py_ssize_t cnnpool_mean_back_2x2_stream_f(const float* grad, const double* div,
                                              float* r0, float* r1,
                                              Py_ssize_t m) noexcept nogil


# What max saves for its backward: the winner's tap number in its window,
# ``i * kw + j`` in row-major window order.  uint8 for windows of up to 255
# taps (every usual layer: 8 times less memory traffic than an int64 flat
# index, written by the forward and read again by the backward), int64
# beyond.  The flat index ``ih * W + iw`` that users see is computed from
# it only when asked for (``PoolGeometry.flat_index``).
ctypedef fused tap_t:
    uint8_t
    int64_t


cdef enum:
    DIRECT_2X2 = 0
    PANELS = 1
    SCALAR = 2
    BLOCK = 256  # windows per block of the direct loops (room on the stack)


# Streaming stores for tiled-backward outputs from this many bytes on
# (set from Python: cnnpool.pooling.base.STREAM_MIN_BYTES).
cdef Py_ssize_t stream_min_bytes = 4 << 20

#: Whether this build has the streaming-store loops (AVX); without them the
#: scalar loops write every output.
STREAM_STORES = bool(CNNPOOL_STREAM)

# Backward calls that chose streaming stores, for the tests to see that the
# path ran (the bits are the same either way).
cdef Py_ssize_t streamed_calls = 0


def stream_count():
    """How many tiled backward calls have written with streaming stores (a test hook)."""
    return streamed_calls


def set_stream_min_bytes(Py_ssize_t nbytes):
    """Write tiled-backward outputs of ``nbytes`` or more with streaming stores.

    Returns the previous threshold.  Not for concurrent use: a process-wide
    setting (``cnnpool.pooling.base`` sets it once at import; tests lower it).
    """
    global stream_min_bytes
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    previous = stream_min_bytes
    stream_min_bytes = nbytes
    return previous


ctypedef struct Plan:
    # Input and output plane sizes.
    Py_ssize_t height, width, out_h, out_w
    # Kernel, stride, dilation.
    Py_ssize_t kh, kw, sh, sw, dh, dw
    # Origin of the first window (negative with padding).
    Py_ssize_t row0, col0
    int mode
    # 3x3 stride 2 without dilation: fused panel loop.
    bint fused3
    # fused3 with padding 1 on an even plane, OH = H/2, OW = W/2 ("same"
    # pooling, as in ResNet's stem): max goes row-separable, no panels.
    bint flat3
    # Windows tile the input (stride = kernel, no padding or dilation).
    bint tiled
    # The tiled backward writes its (large) output with streaming stores.
    bint stream
    # Output row length rounded up to a multiple of 8; panel phase length;
    # panels cached per plane; rows of the mean-backward accumulator.
    Py_ssize_t n8, span, slots, acc_rows
    const Py_ssize_t* row_start
    const Py_ssize_t* row_lo
    const Py_ssize_t* row_hi
    const Py_ssize_t* col_start
    const Py_ssize_t* col_lo
    const Py_ssize_t* col_hi
    # Tables made once per call by _plan_tables (integer divisions are slow):
    # per stride phase q, the panel elements [phase_lo[q], phase_hi[q]) that
    # hold input columns; per window column j, where tap j sits in a panel;
    # per input row, the panel slot that caches it.
    Py_ssize_t* phase_lo
    Py_ssize_t* phase_hi
    Py_ssize_t* tap_col
    Py_ssize_t* row_slot


ctypedef struct Work:
    # Per-thread scratch (untyped: the same struct serves both dtypes).
    void* panels       # slots * sw * span elements
    void* fill         # sw * span elements of the pad value
    Py_ssize_t* tags   # slots: the input row each panel holds, -1 for none
    void** rows        # kh panel pointers of the current output row
    void* best         # n8: shares of one output row (mean backward)
    void* acc          # acc_rows * sw * span: mean backward accumulator
    void* flat         # flat3 only: 3*H*OW + (OH+1)*(OW+1) elements


cdef const Py_ssize_t* _windows_of(object windows, Py_ssize_t out_h,
                                   Py_ssize_t out_w) except NULL:
    """The window table of ``PoolGeometry.windows``, after checking it.

    One intp array, ``row_start, row_lo, row_hi`` (``out_h`` each) then
    ``col_start, col_lo, col_hi`` (``out_w`` each): one buffer per call
    instead of six.
    """
    cdef cnp.ndarray a = checked(windows, "windows", 1, cnp.NPY_INTP, False)
    if a.shape[0] != 3 * (out_h + out_w):
        raise ValueError(
            f"windows has {a.shape[0]} entries, but an output of (OH, OW) = "
            f"({out_h}, {out_w}) needs 3 * (OH + OW) = {3 * (out_h + out_w)}")
    return <const Py_ssize_t*>cnp.PyArray_DATA(a)


cdef int _tap_type(object taps) except -1:
    """The NumPy type number of ``taps``: uint8 or int64 tap numbers."""
    if not cnp.PyArray_Check(taps):
        raise TypeError(f"taps must be a NumPy array, got {type(taps).__name__}")
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>taps)
    if typenum != cnp.NPY_UINT8 and typenum != cnp.NPY_INT64:
        raise TypeError(f"taps must be uint8 or int64, got {taps.dtype}")
    return typenum


cdef int _same_planes(cnp.ndarray a, cnp.ndarray b, str name_a, str name_b) except -1:
    """``a`` and ``b`` (P, ., .) must hold the same number of planes."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of planes (first axis), "
            f"got shapes {dims(a)} and {dims(b)}")
    return 0


cdef int _same_shape(cnp.ndarray a, cnp.ndarray b, str name_a, str name_b) except -1:
    if dims(a) != dims(b):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {dims(a)} and {dims(b)}")
    return 0


cdef cnp.ndarray _divisor(object divisor, cnp.ndarray out):
    """The (OH, OW) float64 divisors of mean pooling, shape-checked against ``out``."""
    cdef cnp.ndarray d = checked(divisor, "divisor", 2, cnp.NPY_FLOAT64, False)
    if d.shape[0] != out.shape[1] or d.shape[1] != out.shape[2]:
        raise ValueError(
            f"divisor must have shape (OH, OW) = ({out.shape[1]}, {out.shape[2]}), "
            f"got {dims(d)}")
    return d


cdef bint _plan_call(Plan* g, cnp.ndarray planes_in, cnp.ndarray planes_out, str in_name,
                     str out_name, bint writes_input, object windows, Py_ssize_t kernel_h,
                     Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                     Py_ssize_t dil_h, Py_ssize_t dil_w) except -1:
    """Fill ``g`` for one call on (P, H, W) and (P, OH, OW) arrays whose
    planes were checked to match; False when there is nothing to write.

    ``writes_input``: the call writes the (P, H, W) side (a backward), else
    the (P, OH, OW) side (a forward).  An empty written side means nothing
    to do; an empty side that the windows would read is refused.
    """
    cdef cnp.ndarray written = planes_in if writes_input else planes_out
    if planes_in.shape[0] == 0 or written.shape[1] * written.shape[2] == 0:
        return False
    if writes_input and (planes_out.shape[1] < 1 or planes_out.shape[2] < 1):
        raise ValueError(
            f"{out_name} must have at least one window, got shape {dims(planes_out)}")
    if not writes_input and (planes_in.shape[1] < 1 or planes_in.shape[2] < 1):
        raise ValueError(
            f"{in_name} has empty planes, shape {dims(planes_in)}, but the output "
            f"{dims(planes_out)} has windows")
    g[0] = _plan(planes_in.shape[1], planes_in.shape[2], planes_out.shape[1],
                 planes_out.shape[2],
                 _windows_of(windows, planes_out.shape[1], planes_out.shape[2]),
                 kernel_h, kernel_w, stride_h, stride_w, dil_h, dil_w)
    return True


cdef bint _streams(const Plan* g, Py_ssize_t planes, const void* gin,
                   size_t itemsize) noexcept:
    """Whether a tiled backward writes its (P, H, W) output with streaming stores."""
    global streamed_calls
    cdef bint stream = (g.tiled
                        and planes * g.height * g.width * <Py_ssize_t>itemsize >= stream_min_bytes
                        and cnnpool_can_stream(gin, g.width * itemsize))
    streamed_calls += stream
    return stream


cdef Plan _plan(Py_ssize_t height, Py_ssize_t width, Py_ssize_t out_h, Py_ssize_t out_w,
                const Py_ssize_t* windows, Py_ssize_t kh, Py_ssize_t kw,
                Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw) noexcept:
    """Describe one call; the caller guarantees out_h, out_w >= 1 and that
    ``windows`` holds 3 * (out_h + out_w) entries (see _windows_of)."""
    cdef Plan g
    g.height, g.width, g.out_h, g.out_w = height, width, out_h, out_w
    g.kh, g.kw, g.sh, g.sw, g.dh, g.dw = kh, kw, sh, sw, dh, dw
    g.row_start = windows
    g.row_lo = windows + out_h
    g.row_hi = windows + 2 * out_h
    g.col_start = windows + 3 * out_h
    g.col_lo = windows + 3 * out_h + out_w
    g.col_hi = windows + 3 * out_h + 2 * out_w
    g.row0 = g.row_start[0]
    g.col0 = g.col_start[0]
    # Window starts increase, so the first and last windows show any padding.
    cdef bint inside = (g.row_lo[0] == 0 and g.row_hi[out_h - 1] == kh
                        and g.col_lo[0] == 0 and g.col_hi[out_w - 1] == kw)
    if kh == 2 and kw == 2 and sh == 2 and sw == 2 and dh == 1 and dw == 1 and inside:
        g.mode = DIRECT_2X2
    elif (kh - 1) * dh * width + (kw - 1) * dw >= (1 << 24) or kh * kw > (1 << 24) or sw > 64:
        # Windows that span that much of the plane (the panels cache every
        # row a window spans), tap numbers not exact in float32, or panels
        # of that many stride phases that would be mostly waste.
        g.mode = SCALAR
    else:
        g.mode = PANELS
    g.fused3 = kh == 3 and kw == 3 and sh == 2 and sw == 2 and dh == 1 and dw == 1
    g.flat3 = (g.fused3 and g.mode == PANELS and g.row0 == -1 and g.col0 == -1
               and height == 2 * out_h and width == 2 * out_w and out_w <= BLOCK)
    g.tiled = (sh == kh and sw == kw and dh == 1 and dw == 1 and g.row0 == 0
               and g.col0 == 0 and out_h * kh <= height and out_w * kw <= width)
    g.stream = False  # set by the callers that stream
    g.n8 = (out_w + 7) // 8 * 8
    g.span = g.n8 + (kw - 1) * dw // sw
    g.slots = (kh - 1) * dh + 1
    g.acc_rows = (out_h - 1) * sh + (kh - 1) * dh + 1
    g.phase_lo = g.phase_hi = g.tap_col = g.row_slot = NULL
    return g


cdef bint _plan_tables(Plan* g) noexcept nogil:
    """Fill the plan's tables (one allocation, freed by _plan_free); False if no memory."""
    cdef Py_ssize_t q, j, c, a, b, lo, hi, ih, sw = g.sw
    g.phase_lo = <Py_ssize_t*>malloc((2 * sw + g.kw + g.height) * sizeof(Py_ssize_t))
    if g.phase_lo == NULL:
        return False
    g.phase_hi = g.phase_lo + sw
    g.tap_col = g.phase_hi + sw
    g.row_slot = g.tap_col + g.kw
    for q in range(sw):
        # Element t of phase q is input column col0 + q + t*sw.
        a = -g.col0 - q
        b = g.width - g.col0 - q
        lo = 0 if a <= 0 else (a + sw - 1) // sw
        hi = 0 if b <= 0 else (b + sw - 1) // sw
        hi = min(hi, g.span)
        g.phase_lo[q] = min(lo, hi)
        g.phase_hi[q] = hi
    for j in range(g.kw):
        c = j * g.dw
        g.tap_col[j] = (c % sw) * g.span + c // sw
    for ih in range(g.height):
        g.row_slot[ih] = ih % g.slots
    return True


cdef void _plan_free(Plan* g) noexcept nogil:
    free(g.phase_lo)
    g.phase_lo = NULL


cdef Work _work_new(const Plan* g, size_t item, bint accumulator) noexcept nogil:
    """One thread's scratch (check it with ``_work_ok``).

    Returned by value: inside a ``parallel()`` block, assigning it makes
    the struct private to each thread.
    """
    cdef Work ws
    cdef size_t panel = g.sw * g.span * item
    ws.flat = NULL
    if g.flat3:
        ws.flat = malloc((3 * g.height * g.out_w + (g.out_h + 1) * (g.out_w + 1)) * item)
    if g.mode != PANELS:  # the other modes need no scratch
        ws.panels = ws.fill = ws.best = ws.acc = NULL
        ws.tags = NULL
        ws.rows = NULL
        return ws
    ws.panels = malloc(g.slots * panel)
    ws.fill = malloc(panel)
    ws.tags = <Py_ssize_t*>malloc(g.slots * sizeof(Py_ssize_t))
    ws.rows = <void**>malloc(g.kh * sizeof(void*))
    ws.best = malloc(g.n8 * item)
    ws.acc = malloc(g.acc_rows * panel) if accumulator else NULL
    return ws


cdef bint _work_ok(const Plan* g, const Work* ws, bint accumulator) noexcept nogil:
    return not (ws.panels == NULL or ws.fill == NULL or ws.tags == NULL
                or ws.rows == NULL or ws.best == NULL
                or (accumulator and ws.acc == NULL) or (g.flat3 and ws.flat == NULL))


cdef void _work_free(Work* ws) noexcept nogil:
    free(ws.panels)
    free(ws.fill)
    free(ws.tags)
    free(ws.rows)
    free(ws.best)
    free(ws.acc)
    free(ws.flat)


# ------------------------------------------------------------------- panels

cdef void _build_panel(const floating* src, const Plan* g, floating* panel,
                       floating pad) noexcept nogil:
    """Copy input row ``src`` into ``panel``: padded, split into stride phases."""
    cdef Py_ssize_t q, t, lo, hi, sw = g.sw, span = g.span
    cdef floating* dst
    cdef floating* odd
    cdef const floating* s
    if sw == 2 and g.phase_lo[0] == g.phase_lo[1] and g.phase_hi[0] == g.phase_hi[1]:
        # Both phases in one pass (the common stride 2 with even padding).
        lo = g.phase_lo[0]
        hi = g.phase_hi[0]
        odd = panel + span
        for t in range(lo):
            panel[t] = pad
            odd[t] = pad
        s = src + (g.col0 + lo * 2)
        for t in range(hi - lo):
            panel[lo + t] = s[2 * t]
            odd[lo + t] = s[2 * t + 1]
        for t in range(hi, span):
            panel[t] = pad
            odd[t] = pad
        return
    for q in range(sw):
        lo = g.phase_lo[q]
        hi = g.phase_hi[q]
        dst = panel + q * span
        for t in range(lo):
            dst[t] = pad
        s = src + (g.col0 + q + lo * sw)
        if sw == 1:
            for t in range(hi - lo):
                dst[lo + t] = s[t]
        else:
            for t in range(hi - lo):
                dst[lo + t] = s[t * sw]
        for t in range(hi, span):
            dst[t] = pad


cdef void _start_panels(const Plan* g, Work* ws, floating pad) noexcept nogil:
    """Fill the all-padding panel; forget cached rows (a new plane starts)."""
    cdef Py_ssize_t t
    cdef floating* fill = <floating*>ws.fill
    for t in range(g.sw * g.span):
        fill[t] = pad
    for t in range(g.slots):
        ws.tags[t] = -1


cdef void _panel_rows(const floating* x, const Plan* g, Work* ws, Py_ssize_t oh,
                      floating pad) noexcept nogil:
    """Point ``ws.rows[i]`` at the panel of window row ``i`` of output row ``oh``.

    A row already built for an earlier output row of this plane is reused:
    panel slot ``ih % slots`` holds row ``ih`` (the rows of one window are
    fewer than ``slots`` apart, so they never share a slot).
    """
    cdef Py_ssize_t i, ih, slot, size = g.sw * g.span
    cdef floating* panel
    for i in range(g.kh):
        ih = g.row_start[oh] + i * g.dh
        if ih < 0 or ih >= g.height:
            ws.rows[i] = ws.fill
            continue
        slot = g.row_slot[ih]
        panel = <floating*>ws.panels + slot * size
        if ws.tags[slot] != ih:
            _build_panel(x + ih * g.width, g, panel, pad)
            ws.tags[slot] = ih
        ws.rows[i] = panel


# ---------------------------------------------------------------------------- max
#
# PyTorch's rule, tap by tap in row-major window order: a tap replaces the
# current best when it is greater, or when it is NaN.  So the first of equal
# maxima wins, the last of several NaNs wins, and a window of -inf's reports
# its first input tap.  Starting from "best = first tap" is the same as
# PyTorch's "best = -inf, index = first input tap": the first tap always
# replaces -inf unless it is -inf itself, and then only the index differs,
# which the index pass fixes for any window whose maximum is -inf.
#
# The forward saves each winner's tap number (``tap_t``), not its flat
# index: the backward turns it back into a position with the window's
# origin, which it knows from the plan.

cdef inline bint _wins(floating v, floating best) noexcept nogil:
    return (v > best) | (v != v)


cdef inline Py_ssize_t _first_inside(const Plan* g, Py_ssize_t oh,
                                     Py_ssize_t ow) noexcept nogil:
    """Flat index of the first input tap of window (oh, ow)."""
    return ((g.row_start[oh] + g.row_lo[oh] * g.dh) * g.width
            + g.col_start[ow] + g.col_lo[ow] * g.dw)


cdef inline Py_ssize_t _first_tap(const Plan* g, Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    """Tap number of the first input tap of window (oh, ow)."""
    return g.row_lo[oh] * g.kw + g.col_lo[ow]


cdef void _max_window(const floating* x, const Plan* g, Py_ssize_t oh, Py_ssize_t ow,
                      floating* out, tap_t* ind) noexcept nogil:
    """One window with range lookups (the scalar mode)."""
    cdef Py_ssize_t i, j, k, best_tap = _first_tap(g, oh, ow)
    cdef floating v, best = x[_first_inside(g, oh, ow)]
    for i in range(g.row_lo[oh], g.row_hi[oh]):
        for j in range(g.col_lo[ow], g.col_hi[ow]):
            k = (g.row_start[oh] + i * g.dh) * g.width + g.col_start[ow] + j * g.dw
            v = x[k]
            if _wins(v, best):
                best = v
                best_tap = i * g.kw + j
    out[ow] = best
    ind[ow] = <tap_t>best_tap


cdef inline void _max_2x2s2(const floating* x, const Plan* g, Py_ssize_t oh, Py_ssize_t ow0,
                            Py_ssize_t n, floating* o, tap_t* ind) noexcept nogil:
    """Windows ``[ow0, ow0 + n)`` of row ``oh``, 2x2 stride 2 in place (``n <= BLOCK``)."""
    cdef floating offset[BLOCK]
    cdef Py_ssize_t w = g.width
    cdef const floating* r0 = x + g.row_start[oh] * w + g.col_start[ow0]
    cdef const floating* r1 = r0 + w
    cdef Py_ssize_t t, k
    cdef floating best, v, off
    o += ow0
    ind += ow0
    for t in range(n):
        # The winner's tap number 0..3, kept in the input's type: gcc
        # vectorises selects of equal width only.
        k = 2 * t
        best = r0[k]
        off = 0
        v = r0[k + 1]
        if _wins(v, best):
            best = v
            off = 1
        v = r1[k]
        if _wins(v, best):
            best = v
            off = 2
        v = r1[k + 1]
        if _wins(v, best):
            best = v
            off = 3
        o[t] = best
        offset[t] = off
    for t in range(n):
        ind[t] = <tap_t>offset[t]


# The panel loops keep their results in stack arrays of BLOCK windows: gcc
# then knows they alias nothing and vectorises without run-time alias
# checks (it gives up beyond 10 of them).  BLOCK is a multiple of 8, so a
# chunk of a row rounded up to 8 windows never leaves a scalar remainder.
# Tap numbers are exact in float32 (the plan sends windows of more than
# 2**24 taps to the scalar mode).

cdef void _max_panel_taps(const Plan* g, Work* ws, Py_ssize_t t0, Py_ssize_t n,
                          floating* best, floating* offset) noexcept nogil:
    """Windows ``[t0, t0 + n)`` of one output row, tap by tap over its panels."""
    cdef Py_ssize_t i, j, t
    cdef const floating* r = <floating*>ws.rows[0] + t0
    cdef floating v, b, o, tap
    for t in range(n):
        best[t] = r[t]
        offset[t] = 0
    for i in range(g.kh):
        for j in range(1 if i == 0 else 0, g.kw):
            r = <floating*>ws.rows[i] + g.tap_col[j] + t0
            tap = <floating>(i * g.kw + j)
            for t in range(n):
                # Unconditional stores: gcc if-converts (vectorises) only those.
                v = r[t]
                b = best[t]
                o = offset[t]
                if _wins(v, b):
                    b = v
                    o = tap
                best[t] = b
                offset[t] = o


cdef void _max_panel_3x3s2(const Plan* g, Work* ws, Py_ssize_t t0, Py_ssize_t n,
                           floating* best, floating* offset) noexcept nogil:
    """Windows ``[t0, t0 + n)`` of one output row, 3x3 stride 2, fused.

    Phase 0 of a panel holds the even columns (taps 0 and 2 of a window),
    phase 1 the odd ones (tap 1).  Only constants inside the ifs: any
    arithmetic there stops gcc's if-conversion, and with it the
    vectorisation.
    """
    cdef Py_ssize_t span = g.span, t
    cdef const floating* e0 = <floating*>ws.rows[0] + t0
    cdef const floating* e1 = <floating*>ws.rows[1] + t0
    cdef const floating* e2 = <floating*>ws.rows[2] + t0
    cdef const floating* o0 = e0 + span
    cdef const floating* o1 = e1 + span
    cdef const floating* o2 = e2 + span
    cdef floating b, v, off
    for t in range(n):
        b = e0[t]
        off = 0
        v = o0[t]
        if _wins(v, b):
            b = v
            off = 1
        v = e0[t + 1]
        if _wins(v, b):
            b = v
            off = 2
        v = e1[t]
        if _wins(v, b):
            b = v
            off = 3
        v = o1[t]
        if _wins(v, b):
            b = v
            off = 4
        v = e1[t + 1]
        if _wins(v, b):
            b = v
            off = 5
        v = e2[t]
        if _wins(v, b):
            b = v
            off = 6
        v = o2[t]
        if _wins(v, b):
            b = v
            off = 7
        v = e2[t + 1]
        if _wins(v, b):
            b = v
            off = 8
        best[t] = b
        offset[t] = off


cdef void _max_panel_row(const Plan* g, Work* ws, Py_ssize_t oh, floating* out,
                         tap_t* ind) noexcept nogil:
    """One output row from its panels, BLOCK windows at a time."""
    cdef floating best[BLOCK]
    cdef floating offset[BLOCK]
    cdef Py_ssize_t t0, t, n, ow
    cdef floating v
    t0 = 0
    while t0 < g.out_w:
        n = min(g.n8 - t0, <Py_ssize_t>BLOCK)
        if g.fused3:
            _max_panel_3x3s2(g, ws, t0, n, best, offset)
        else:
            _max_panel_taps(g, ws, t0, n, best, offset)
        for t in range(min(n, g.out_w - t0)):
            ow = t0 + t
            v = best[t]
            out[ow] = v
            if v == -INFINITY:
                ind[ow] = <tap_t>_first_tap(g, oh, ow)  # all inside taps -inf (rare)
            else:
                ind[ow] = <tap_t>offset[t]
        t0 += n


cdef void _max_flat3(const floating* x, floating* out, tap_t* ind, const Plan* g,
                     Work* ws) noexcept nogil:
    """3x3 stride 2 padding 1 on an even plane: rows first, then columns of rows.

    The rule "a tap wins when greater, or when NaN" picks the last NaN of
    the window if it has one, else its first maximum (row-major order).
    Both come out of a two-stage scan: the winner of each input row's
    three taps (last NaN, else first maximum) and then, scanning the
    window's three row winners in order with the same rule, the row that
    holds the window's last NaN, else the first row reaching the maximum.
    Each input row's horizontal winner is computed once and shared by the
    two output rows whose windows overlap on it.

    Stage 1 runs over the whole plane as one flat loop: with ``W = 2*OW``,
    window column ``t`` of input row ``r`` is flat element ``k = r*OW + t``
    and reads input ``2k - 1, 2k, 2k + 1``; window column 0 (whose first
    tap is padding, which never wins) is redone per row.
    """
    cdef Py_ssize_t n_out = g.out_w, n = g.height * g.out_w
    cdef Py_ssize_t k, t, oh
    cdef floating* hv = <floating*>ws.flat
    cdef floating* ho = hv + n
    cdef floating best[BLOCK]
    cdef floating offset[BLOCK]
    cdef const floating* v0
    cdef const floating* v1
    cdef const floating* v2
    cdef const floating* f0
    cdef const floating* f1
    cdef const floating* f2
    cdef floating b, v, off, col, row
    cdef bint low, win
    for k in range(1, n):
        b = x[2 * k - 1]
        off = 0
        v = x[2 * k]
        if _wins(v, b):
            b = v
            off = 1
        v = x[2 * k + 1]
        if _wins(v, b):
            b = v
            off = 2
        hv[k] = b
        ho[k] = off
    # Window column 0 of each row: its left tap is padding (in C, branch-free).
    if floating is float:
        cnnpool_flat3_row_starts_f(x, hv, ho, g.height, n_out)
    else:
        cnnpool_flat3_row_starts_d(x, hv, ho, g.height, n_out)
    for oh in range(g.out_h):
        # Window rows 2oh-1 (padding for oh = 0), 2oh, 2oh+1: tap rows 0, 1, 2.
        v1 = hv + 2 * oh * n_out
        f1 = ho + 2 * oh * n_out
        v2 = v1 + n_out
        f2 = f1 + n_out
        # Selects of loaded values and constants only: an addition inside
        # them would stop gcc's if-conversion (and the vectorisation).
        if oh == 0:
            for t in range(n_out):
                b = v1[t]
                col = f1[t]
                row = 3
                v = v2[t]
                win = _wins(v, b)
                b = v if win else b
                col = f2[t] if win else col
                row = 6 if win else row
                best[t] = b
                offset[t] = row + col
        else:
            v0 = v1 - n_out
            f0 = f1 - n_out
            for t in range(n_out):
                b = v0[t]
                col = f0[t]
                row = 0
                v = v1[t]
                win = _wins(v, b)
                b = v if win else b
                col = f1[t] if win else col
                row = 3 if win else row
                v = v2[t]
                win = _wins(v, b)
                b = v if win else b
                col = f2[t] if win else col
                row = 6 if win else row
                best[t] = b
                offset[t] = row + col
        # Stack arrays, which alias nothing: gcc vectorises the loops above.
        low = False
        for t in range(n_out):
            out[t] = best[t]
            low |= best[t] == -INFINITY
        for t in range(n_out):
            ind[t] = <tap_t>offset[t]
        if low:
            for t in range(n_out):
                if out[t] == -INFINITY:
                    ind[t] = <tap_t>_first_tap(g, oh, t)  # all inside taps -inf (rare)
        out += n_out
        ind += n_out


cdef void _max_plane(const floating* x, floating* out, tap_t* ind, const Plan* g,
                     Work* ws) noexcept nogil:
    cdef Py_ssize_t oh, ow, n
    if g.flat3:
        _max_flat3(x, out, ind, g, ws)
        return
    if g.mode == PANELS:
        _start_panels(g, ws, <floating>-INFINITY)
    for oh in range(g.out_h):
        if g.mode == DIRECT_2X2:
            ow = 0
            while ow < g.out_w:
                n = min(g.out_w - ow, <Py_ssize_t>BLOCK)
                _max_2x2s2(x, g, oh, ow, n, out, ind)
                ow += n
        elif g.mode == PANELS:
            _panel_rows(x, g, ws, oh, <floating>-INFINITY)
            _max_panel_row(g, ws, oh, out, ind)
        else:
            for ow in range(g.out_w):
                _max_window(x, g, oh, ow, out, ind)
        out += g.out_w
        ind += g.out_w


cdef _check_taps(Py_ssize_t kernel_h, Py_ssize_t kernel_w, bint narrow):
    """uint8 tap numbers only for windows of at most 255 taps."""
    if narrow and kernel_h * kernel_w > 255:
        raise ValueError(
            f"uint8 tap numbers hold windows of at most 255 taps, got a "
            f"{kernel_h}x{kernel_w} kernel; pass int64 taps")


def max_forward(x, out, taps, windows, Py_ssize_t dil_h, Py_ssize_t dil_w,
                Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                Py_ssize_t stride_w, int n_threads):
    """Max over each window, and the winner's tap number ``i * kernel_w + j``.

    ``x`` is (P, H, W), ``out`` and ``taps`` are (P, OH, OW), C-contiguous;
    ``x`` and ``out`` float32 or float64 alike, ``taps`` uint8 (windows of
    at most 255 taps) or int64; ``windows`` is ``PoolGeometry.windows``.
    """
    cdef int typenum = float_type(x, "x")
    cdef int tap_typenum = _tap_type(taps)
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef cnp.ndarray ao = checked(out, "out", 3, typenum, True)
    cdef cnp.ndarray at = checked(taps, "taps", 3, tap_typenum, True)
    _same_planes(ax, ao, "x", "out")
    _same_shape(ao, at, "out", "taps")
    _check_taps(kernel_h, kernel_w, tap_typenum == cnp.NPY_UINT8)
    cdef Plan g
    if not _plan_call(&g, ax, ao, "x", "out", False, windows, kernel_h, kernel_w,
                      stride_h, stride_w, dil_h, dil_w):
        return
    cdef Py_ssize_t planes = ax.shape[0]
    cdef void* xp = cnp.PyArray_DATA(ax)
    cdef void* op = cnp.PyArray_DATA(ao)
    cdef void* tp = cnp.PyArray_DATA(at)
    if typenum == cnp.NPY_FLOAT32:
        if tap_typenum == cnp.NPY_UINT8:
            _max_forward(<const float*>xp, <float*>op, <uint8_t*>tp, &g, planes, n_threads)
        else:
            _max_forward(<const float*>xp, <float*>op, <int64_t*>tp, &g, planes, n_threads)
    elif tap_typenum == cnp.NPY_UINT8:
        _max_forward(<const double*>xp, <double*>op, <uint8_t*>tp, &g, planes, n_threads)
    else:
        _max_forward(<const double*>xp, <double*>op, <int64_t*>tp, &g, planes, n_threads)


cdef int _max_forward(const floating* x, floating* out, tap_t* ind, Plan* g,
                      Py_ssize_t planes, int n_threads) except -1:
    cdef int failed = 0
    cdef int* failed_p = &failed
    if g.mode == PANELS and not _plan_tables(g):
        raise MemoryError("no memory for the pooling plan")
    with nogil:
        if n_threads > 1:
            with parallel(num_threads=n_threads):
                _max_forward_share(x, out, ind, g, planes, failed_p)
        else:
            _max_forward_share(x, out, ind, g, planes, failed_p)
    _plan_free(g)
    if failed:
        raise MemoryError("max_forward: no memory for the row panels")
    return 0


cdef void _max_forward_share(const floating* x, floating* out, tap_t* ind, const Plan* g,
                             Py_ssize_t planes, int* failed) noexcept nogil:
    """This thread's share of the planes (all of them outside a parallel block)."""
    cdef Py_ssize_t p, lo, hi
    cdef Py_ssize_t plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    cnnpool_share(planes, &lo, &hi)
    cdef Work ws = _work_new(g, sizeof(floating), False)
    if g.mode == PANELS and not _work_ok(g, &ws, False):
        failed[0] = 1
    for p in range(lo, hi):
        if not failed[0]:
            _max_plane(x + p * plane_in, out + p * plane_out, ind + p * plane_out, g, &ws)
    _work_free(&ws)


cdef inline void _max_back_2x2(const floating* grad, const tap_t* taps, floating* gin,
                               Py_ssize_t n, Py_ssize_t w, bint stream) noexcept nogil:
    """One output row of non-overlapping 2x2 max backward: write all 4 taps.

    The tap numbers are first converted, BLOCK at a time, into a stack
    array of the gradient's own type: the four selects are then
    all-float, one vectorised pass (a uint8 pointer may alias the
    gradient, and gcc does not vectorise selects on mixed widths).  With
    ``stream`` (64-byte aligned rows) the same selects are written with
    streaming stores, in C.
    """
    cdef floating offset[BLOCK]
    cdef floating* r0
    cdef floating* r1
    cdef Py_ssize_t t, k, t0 = 0, m, done
    cdef floating v, off
    while t0 < n:
        m = min(n - t0, <Py_ssize_t>BLOCK)
        r0 = gin + 2 * t0
        r1 = r0 + w
        for t in range(m):
            offset[t] = <floating>taps[t0 + t]
        done = 0
        if stream:
            if floating is double:
                done = cnnpool_max_back_2x2_stream_d(grad + t0, offset, r0, r1, m)
            else:
                done = cnnpool_max_back_2x2_stream_f(grad + t0, offset, r0, r1, m)
        for t in range(done, m):
            k = 2 * t
            # 0 + v, as PyTorch accumulates into zeros (turns -0.0 into +0.0).
            v = grad[t0 + t] + 0
            off = offset[t]
            r0[k] = v if off == 0 else 0
            r0[k + 1] = v if off == 1 else 0
            r1[k] = v if off == 2 else 0
            r1[k + 1] = v if off == 3 else 0
        t0 += m


cdef void _max_back_tiled(const floating* grad, const tap_t* taps, floating* gin,
                          const Plan* g) noexcept nogil:
    """Non-overlapping windows (stride = kernel, no padding or dilation): no zero-fill.

    Every input element is written exactly once: its window's gradient if
    it is the winner, else 0; elements past the last window are zeroed.
    """
    cdef Py_ssize_t w = g.width, kh = g.kh, kw = g.kw
    cdef Py_ssize_t oh, ow, i, j, base, win
    cdef Py_ssize_t covered_w = g.out_w * kw, covered_h = g.out_h * kh
    cdef floating v
    cdef floating* row
    for oh in range(g.out_h):
        base = oh * kh * w
        if kh == 2 and kw == 2:
            _max_back_2x2(grad, taps, gin + base, g.out_w, w, g.stream)
        else:
            for i in range(kh):
                row = gin + base + i * w
                for ow in range(g.out_w):
                    v = grad[ow] + 0
                    win = <Py_ssize_t>taps[ow] - i * kw  # the winner's column if in row i
                    for j in range(kw):
                        row[ow * kw + j] = v if win == j else 0
        if covered_w < w:
            for i in range(kh):
                memset(gin + base + i * w + covered_w, 0, (w - covered_w) * sizeof(floating))
        grad += g.out_w
        taps += g.out_w
    if covered_h < g.height:
        memset(gin + covered_h * w, 0, (g.height - covered_h) * w * sizeof(floating))
    if g.stream:
        cnnpool_stream_fence()


cdef void _max_back_scatter(const floating* grad, const tap_t* taps, floating* gin,
                            const Plan* g, const Py_ssize_t* tap_offset) noexcept nogil:
    """Any geometry: add each gradient at its winner, in row-major window order.

    ``gin`` is zeroed.  The winner of window (oh, ow) is at the window's
    origin plus the offset of its tap, from the ``tap_offset`` table when
    there is one (one division pair per window otherwise).
    """
    cdef Py_ssize_t oh, ow, origin, tap
    for oh in range(g.out_h):
        origin = g.row_start[oh] * g.width
        for ow in range(g.out_w):
            tap = <Py_ssize_t>taps[ow]
            if tap_offset != NULL:
                gin[origin + g.col_start[ow] + tap_offset[tap]] += grad[ow]
            else:
                gin[origin + g.col_start[ow] + (tap // g.kw) * g.dh * g.width
                    + (tap % g.kw) * g.dw] += grad[ow]
        grad += g.out_w
        taps += g.out_w


def max_backward(grad_out, taps, grad_in, windows, Py_ssize_t dil_h, Py_ssize_t dil_w,
                 Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                 Py_ssize_t stride_w, int n_threads):
    """Route each output gradient to its window's winner.

    ``grad_out`` and ``taps`` (the forward's tap numbers) are (P, OH, OW),
    ``grad_in`` is (P, H, W) and need not be initialised: every element is
    written.  Overlapping windows can share a winner, which then receives
    the sum, added in row-major window order as in PyTorch.

    Trusted input: ``taps`` must be what :func:`max_forward` wrote for this
    very geometry (``MaxPool2d`` keeps them private and read-only).  They
    are not range-checked here: a tap number of ``kh*kw`` or more would
    address memory outside its window.
    """
    cdef int typenum = float_type(grad_out, "grad_out")
    cdef int tap_typenum = _tap_type(taps)
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 3, typenum, False)
    cdef cnp.ndarray at = checked(taps, "taps", 3, tap_typenum, False)
    cdef cnp.ndarray ai = checked(grad_in, "grad_in", 3, typenum, True)
    _same_shape(ag, at, "grad_out", "taps")
    _same_planes(ai, ag, "grad_in", "grad_out")
    _check_taps(kernel_h, kernel_w, tap_typenum == cnp.NPY_UINT8)
    cdef Plan g
    if not _plan_call(&g, ai, ag, "grad_in", "grad_out", True, windows, kernel_h, kernel_w,
                      stride_h, stride_w, dil_h, dil_w):
        return
    cdef Py_ssize_t planes = ai.shape[0]
    cdef void* gp = cnp.PyArray_DATA(ag)
    cdef void* tp = cnp.PyArray_DATA(at)
    cdef void* xp = cnp.PyArray_DATA(ai)
    if typenum == cnp.NPY_FLOAT32:
        if tap_typenum == cnp.NPY_UINT8:
            _max_backward(<const float*>gp, <const uint8_t*>tp, <float*>xp, &g, planes,
                          n_threads)
        else:
            _max_backward(<const float*>gp, <const int64_t*>tp, <float*>xp, &g, planes,
                          n_threads)
    elif tap_typenum == cnp.NPY_UINT8:
        _max_backward(<const double*>gp, <const uint8_t*>tp, <double*>xp, &g, planes,
                      n_threads)
    else:
        _max_backward(<const double*>gp, <const int64_t*>tp, <double*>xp, &g, planes,
                      n_threads)


cdef int _max_backward(const floating* grad, const tap_t* taps, floating* gin, Plan* g,
                       Py_ssize_t planes, int n_threads) except -1:
    cdef Py_ssize_t k, taps_n = g.kh * g.kw
    cdef Py_ssize_t* tap_offset = NULL
    g.stream = _streams(g, planes, gin, sizeof(floating))
    if not g.tiled and taps_n <= 65536:
        # Offset of each tap from its window's origin (integer divisions are slow).
        tap_offset = <Py_ssize_t*>malloc(taps_n * sizeof(Py_ssize_t))
        if tap_offset == NULL:
            raise MemoryError("max_backward: no memory for the tap offsets")
        for k in range(taps_n):
            tap_offset[k] = (k // g.kw) * g.dh * g.width + (k % g.kw) * g.dw
    with nogil:
        if n_threads > 1:
            with parallel(num_threads=n_threads):
                _max_backward_share(grad, taps, gin, g, tap_offset, planes)
        else:
            _max_backward_share(grad, taps, gin, g, tap_offset, planes)
    free(tap_offset)
    return 0


cdef void _max_backward_share(const floating* grad, const tap_t* taps, floating* gin,
                              const Plan* g, const Py_ssize_t* tap_offset,
                              Py_ssize_t planes) noexcept nogil:
    """This thread's share of the planes (all of them outside a parallel block)."""
    cdef Py_ssize_t p, lo, hi
    cdef Py_ssize_t plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    cnnpool_share(planes, &lo, &hi)
    for p in range(lo, hi):
        if g.tiled:
            _max_back_tiled(grad + p * plane_out, taps + p * plane_out, gin + p * plane_in, g)
        else:
            memset(gin + p * plane_in, 0, plane_in * sizeof(floating))
            _max_back_scatter(grad + p * plane_out, taps + p * plane_out, gin + p * plane_in,
                              g, tap_offset)


# --------------------------------------------------------------------------- mean
#
# PyTorch's arithmetic: the sum starts at 0 and adds the input taps in
# row-major window order, in the input's own precision, then is divided by
# the divisor (a small integer, exact in float32).  Dividing in float32 by
# float32(divisor) gives the same bits as dividing in float64 and rounding.

cdef void _mean_window(const floating* x, const Plan* g, const double* div,
                       Py_ssize_t oh, Py_ssize_t ow, floating* out) noexcept nogil:
    """One window with range lookups (the scalar mode)."""
    cdef Py_ssize_t i, j, ih
    cdef floating total = 0
    for i in range(g.row_lo[oh], g.row_hi[oh]):
        ih = g.row_start[oh] + i * g.dh
        for j in range(g.col_lo[ow], g.col_hi[ow]):
            total = total + x[ih * g.width + g.col_start[ow] + j * g.dw]
    out[ow] = total / <floating>div[ow]


cdef inline void _mean_2x2s2(const floating* x, const Plan* g, const double* div,
                             Py_ssize_t oh, floating* o) noexcept nogil:
    """Row ``oh`` of 2x2 stride-2 mean, in place."""
    cdef const floating* r0 = x + g.row_start[oh] * g.width
    if floating is double:
        cnnpool_mean_2x2_row_d(r0, r0 + g.width, div, o, g.out_w)
    else:
        cnnpool_mean_2x2_row_f(r0, r0 + g.width, div, o, g.out_w)


cdef void _mean_panel_taps(const Plan* g, Work* ws, Py_ssize_t t0, Py_ssize_t n,
                           floating* total) noexcept nogil:
    """Sums of windows ``[t0, t0 + n)`` of one output row, tap by tap."""
    cdef Py_ssize_t i, j, t
    cdef const floating* r
    for t in range(n):
        total[t] = 0
    for i in range(g.kh):
        for j in range(g.kw):
            r = <floating*>ws.rows[i] + g.tap_col[j] + t0
            for t in range(n):
                total[t] = total[t] + r[t]


cdef void _mean_panel_3x3s2(const Plan* g, Work* ws, Py_ssize_t t0, Py_ssize_t n,
                            floating* total) noexcept nogil:
    """Sums of windows ``[t0, t0 + n)`` of one output row, 3x3 stride 2, fused."""
    cdef Py_ssize_t span = g.span, t
    cdef const floating* e0 = <floating*>ws.rows[0] + t0
    cdef const floating* e1 = <floating*>ws.rows[1] + t0
    cdef const floating* e2 = <floating*>ws.rows[2] + t0
    cdef const floating* o0 = e0 + span
    cdef const floating* o1 = e1 + span
    cdef const floating* o2 = e2 + span
    cdef floating s
    for t in range(n):
        s = 0
        s = s + e0[t]
        s = s + o0[t]
        s = s + e0[t + 1]
        s = s + e1[t]
        s = s + o1[t]
        s = s + e1[t + 1]
        s = s + e2[t]
        s = s + o2[t]
        s = s + e2[t + 1]
        total[t] = s


cdef void _mean_panel_row(const Plan* g, Work* ws, const double* div,
                          floating* out) noexcept nogil:
    """One output row from its panels, BLOCK windows at a time."""
    cdef floating total[BLOCK]
    cdef Py_ssize_t t0 = 0, t, n
    while t0 < g.out_w:
        n = min(g.n8 - t0, <Py_ssize_t>BLOCK)
        if g.fused3:
            _mean_panel_3x3s2(g, ws, t0, n, total)
        else:
            _mean_panel_taps(g, ws, t0, n, total)
        for t in range(min(n, g.out_w - t0)):
            out[t0 + t] = total[t] / <floating>div[t0 + t]
        t0 += n


cdef void _mean_flat3(const floating* x, floating* out, const double* div, const Plan* g,
                      Work* ws) noexcept nogil:
    """3x3 stride 2 padding 1 on an even plane (``W = 2*OW``, ``H = 2*OH``).

    One flat pass splits the plane into its three tap columns: for flat
    window column ``k = r*OW + t`` of input row ``r``, ``left[k]`` is
    input column ``2t - 1`` (0 for the padding at ``t = 0``), ``mid[k]``
    column ``2t`` and ``right[k]`` column ``2t + 1``.  Each output row then
    sums its 9 taps in row-major order with unit-stride loads; the padding
    row above the first window adds nothing (PyTorch skips padded taps;
    adding +0.0 to a sum that started at +0.0 changes no bits).
    """
    cdef Py_ssize_t n_out = g.out_w, n = g.height * g.out_w, k, r, oh, t
    cdef floating* left = <floating*>ws.flat
    cdef floating* mid = left + n
    cdef floating* right = mid + n
    cdef floating total
    for k in range(n):
        mid[k] = x[2 * k]
        right[k] = x[2 * k + 1]
    for k in range(1, n):
        left[k] = right[k - 1]
    for r in range(g.height):
        left[r * n_out] = 0
    for oh in range(g.out_h):
        k = 2 * oh * n_out
        if oh > 0:
            k -= n_out
            for t in range(n_out):
                total = 0
                total = total + left[k + t]
                total = total + mid[k + t]
                total = total + right[k + t]
                total = total + left[k + n_out + t]
                total = total + mid[k + n_out + t]
                total = total + right[k + n_out + t]
                total = total + left[k + 2 * n_out + t]
                total = total + mid[k + 2 * n_out + t]
                total = total + right[k + 2 * n_out + t]
                out[t] = total / <floating>div[t]
        else:
            for t in range(n_out):
                total = 0
                total = total + left[k + t]
                total = total + mid[k + t]
                total = total + right[k + t]
                total = total + left[k + n_out + t]
                total = total + mid[k + n_out + t]
                total = total + right[k + n_out + t]
                out[t] = total / <floating>div[t]
        out += n_out
        div += n_out


cdef void _mean_plane(const floating* x, floating* out, const double* div, const Plan* g,
                      Work* ws) noexcept nogil:
    cdef Py_ssize_t oh, ow
    if g.flat3:
        _mean_flat3(x, out, div, g, ws)
        return
    if g.mode == PANELS:
        _start_panels(g, ws, <floating>0)
    for oh in range(g.out_h):
        if g.mode == DIRECT_2X2:
            _mean_2x2s2(x, g, div, oh, out)
        elif g.mode == PANELS:
            _panel_rows(x, g, ws, oh, <floating>0)
            _mean_panel_row(g, ws, div, out)
        else:
            for ow in range(g.out_w):
                _mean_window(x, g, div, oh, ow, out)
        out += g.out_w
        div += g.out_w


def mean_forward(x, out, divisor, windows, Py_ssize_t dil_h, Py_ssize_t dil_w,
                 Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                 Py_ssize_t stride_w, int n_threads):
    """Sum of each window's input taps divided by ``divisor[oh, ow]``.

    ``x`` is (P, H, W) and ``out`` (P, OH, OW), float32 or float64 alike;
    ``divisor`` is float64 (OH, OW); ``windows`` is ``PoolGeometry.windows``.
    """
    cdef int typenum = float_type(x, "x")
    cdef cnp.ndarray ax = checked(x, "x", 3, typenum, False)
    cdef cnp.ndarray ao = checked(out, "out", 3, typenum, True)
    _same_planes(ax, ao, "x", "out")
    cdef cnp.ndarray ad = _divisor(divisor, ao)
    cdef Plan g
    if not _plan_call(&g, ax, ao, "x", "out", False, windows, kernel_h, kernel_w,
                      stride_h, stride_w, dil_h, dil_w):
        return
    cdef Py_ssize_t planes = ax.shape[0]
    cdef const double* dp = <const double*>cnp.PyArray_DATA(ad)
    if typenum == cnp.NPY_FLOAT32:
        _mean_forward(<const float*>cnp.PyArray_DATA(ax), <float*>cnp.PyArray_DATA(ao), dp,
                      &g, planes, n_threads)
    else:
        _mean_forward(<const double*>cnp.PyArray_DATA(ax), <double*>cnp.PyArray_DATA(ao), dp,
                      &g, planes, n_threads)


cdef int _mean_forward(const floating* x, floating* out, const double* div, Plan* g,
                       Py_ssize_t planes, int n_threads) except -1:
    cdef int failed = 0
    cdef int* failed_p = &failed
    if g.mode == PANELS and not _plan_tables(g):
        raise MemoryError("no memory for the pooling plan")
    with nogil:
        if n_threads > 1:
            with parallel(num_threads=n_threads):
                _mean_forward_share(x, out, div, g, planes, failed_p)
        else:
            _mean_forward_share(x, out, div, g, planes, failed_p)
    _plan_free(g)
    if failed:
        raise MemoryError("mean_forward: no memory for the row panels")
    return 0


cdef void _mean_forward_share(const floating* x, floating* out, const double* div,
                              const Plan* g, Py_ssize_t planes, int* failed) noexcept nogil:
    """This thread's share of the planes (all of them outside a parallel block)."""
    cdef Py_ssize_t p, lo, hi
    cdef Py_ssize_t plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    cnnpool_share(planes, &lo, &hi)
    cdef Work ws = _work_new(g, sizeof(floating), False)
    if g.mode == PANELS and not _work_ok(g, &ws, False):
        failed[0] = 1
    for p in range(lo, hi):
        if not failed[0]:
            _mean_plane(x + p * plane_in, out + p * plane_out, div, g, &ws)
    _work_free(&ws)


cdef void _mean_back_tiled(const floating* grad, const double* div, floating* gin,
                           const Plan* g) noexcept nogil:
    """Non-overlapping windows: write every input gradient once, no zero-fill."""
    cdef Py_ssize_t w = g.width, kh = g.kh, kw = g.kw
    cdef Py_ssize_t oh, ow, i, j, t, k, done
    cdef Py_ssize_t covered_w = g.out_w * kw, covered_h = g.out_h * kh
    cdef floating v
    cdef floating* r0
    cdef floating* r1
    for oh in range(g.out_h):
        r0 = gin + oh * kh * w
        if kh == 2 and kw == 2:
            r1 = r0 + w
            done = 0
            if g.stream:  # 64-byte aligned rows: streaming stores, in C
                if floating is double:
                    done = cnnpool_mean_back_2x2_stream_d(grad, div, r0, r1, g.out_w)
                else:
                    done = cnnpool_mean_back_2x2_stream_f(grad, div, r0, r1, g.out_w)
            for t in range(done, g.out_w):
                k = 2 * t
                # 0 + share, as PyTorch accumulates into zeros (-0.0 becomes +0.0).
                v = grad[t] / <floating>div[t] + 0
                r0[k] = v
                r0[k + 1] = v
                r1[k] = v
                r1[k + 1] = v
        else:
            for ow in range(g.out_w):
                v = grad[ow] / <floating>div[ow] + 0
                for j in range(kw):
                    r0[ow * kw + j] = v
            for i in range(1, kh):
                for j in range(covered_w):
                    r0[i * w + j] = r0[j]
        if covered_w < w:
            for i in range(kh):
                memset(r0 + i * w + covered_w, 0, (w - covered_w) * sizeof(floating))
        grad += g.out_w
        div += g.out_w
    if covered_h < g.height:
        memset(gin + covered_h * w, 0, (g.height - covered_h) * w * sizeof(floating))
    if g.stream:
        cnnpool_stream_fence()


cdef void _mean_back_panels(const floating* grad, const double* div, floating* gin,
                            const Plan* g, Work* ws) noexcept nogil:
    """Any geometry: accumulate into zeroed panels of the whole plane, copy out once.

    Accumulator row ``ih - row0`` is a panel (padded, split into stride
    phases) of input row ``ih``, so every tap of a row of windows is one
    unit-stride pass.  Shares past the last window are 0 and land on
    columns no window covers, or in the padding, which is dropped.
    """
    cdef Py_ssize_t oh, i, j, t, c, q, ih
    cdef Py_ssize_t n = g.n8, span = g.span, sw = g.sw, size = g.sw * g.span
    cdef floating* acc = <floating*>ws.acc
    cdef floating* share = <floating*>ws.best
    cdef floating* arow
    cdef floating* r
    cdef floating* dst
    memset(acc, 0, g.acc_rows * size * sizeof(floating))
    for t in range(g.out_w, n):
        share[t] = 0
    for oh in range(g.out_h):
        for t in range(g.out_w):
            share[t] = grad[t] / <floating>div[t]
        for i in range(g.kh):
            arow = acc + (g.row_start[oh] + i * g.dh - g.row0) * size
            for j in range(g.kw - 1, -1, -1):
                r = arow + g.tap_col[j]
                for t in range(n):
                    r[t] += share[t]
        grad += g.out_w
        div += g.out_w
    for ih in range(g.height):
        dst = gin + ih * g.width
        if ih - g.row0 >= g.acc_rows:
            memset(dst, 0, g.width * sizeof(floating))
            continue
        arow = acc + (ih - g.row0) * size
        if g.col0 + span * sw < g.width:  # columns right of every window
            memset(dst + g.col0 + span * sw, 0,
                   (g.width - g.col0 - span * sw) * sizeof(floating))
        for q in range(sw):
            r = arow + q * span
            c = g.col0 + q
            for t in range(g.phase_lo[q], g.phase_hi[q]):
                dst[c + t * sw] = r[t]


cdef void _mean_back_flat3(const floating* grad, const double* div, floating* gin,
                           const Plan* g, Work* ws) noexcept nogil:
    """3x3 stride 2 padding 1 on an even plane: every input gradient written once.

    Input row ``2m`` lies in window row ``m`` only, row ``2m + 1`` in
    window rows ``m`` and ``m + 1`` (likewise for columns), so each input
    element sums 1, 2 or 4 shares, and does so here in row-major window
    order from 0, as PyTorch's accumulation into zeros.  The shares have a
    row and a column of zeros past the last window: adding +0.0 to a sum
    that started at +0.0 changes no bits.  No zero-fill, no accumulator.
    """
    cdef Py_ssize_t n_out = g.out_w, st = g.out_w + 1, w = g.width, oh, t, m
    cdef floating* share = <floating*>ws.flat
    cdef const floating* s0
    cdef const floating* s1
    cdef floating* r0
    cdef floating* r1
    cdef floating a
    for oh in range(g.out_h):
        for t in range(n_out):
            share[oh * st + t] = grad[t] / <floating>div[t]
        share[oh * st + n_out] = 0
        grad += n_out
        div += n_out
    for t in range(st):
        share[g.out_h * st + t] = 0
    for m in range(g.out_h):
        s0 = share + m * st
        s1 = s0 + st
        r0 = gin + 2 * m * w
        r1 = r0 + w
        for t in range(n_out):
            a = 0
            a = a + s0[t]
            r0[2 * t] = a
            r0[2 * t + 1] = a + s0[t + 1]
        for t in range(n_out):
            a = 0
            a = a + s0[t]
            r1[2 * t] = a + s1[t]
            a = a + s0[t + 1]
            a = a + s1[t]
            r1[2 * t + 1] = a + s1[t + 1]


cdef void _mean_back_scalar(const floating* grad, const double* div, floating* gin,
                            const Plan* g) noexcept nogil:
    """Any geometry, window by window with range lookups (the scalar mode)."""
    cdef Py_ssize_t oh, ow, i, j, ih
    cdef floating share
    memset(gin, 0, g.height * g.width * sizeof(floating))
    for oh in range(g.out_h):
        for ow in range(g.out_w):
            share = grad[ow] / <floating>div[ow]
            for i in range(g.row_lo[oh], g.row_hi[oh]):
                ih = g.row_start[oh] + i * g.dh
                for j in range(g.col_lo[ow], g.col_hi[ow]):
                    gin[ih * g.width + g.col_start[ow] + j * g.dw] += share
        grad += g.out_w
        div += g.out_w


def mean_backward(grad_out, grad_in, divisor, windows, Py_ssize_t dil_h, Py_ssize_t dil_w,
                  Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                  Py_ssize_t stride_w, int n_threads):
    """Spread ``grad_out[oh, ow] / divisor[oh, ow]`` over the window's input taps.

    The same ``divisor`` array as the forward, so the two can never disagree.
    ``grad_out`` is (P, OH, OW), ``grad_in`` (P, H, W), float32 or float64
    alike; ``grad_in`` need not be initialised: every element is written.
    """
    cdef int typenum = float_type(grad_out, "grad_out")
    cdef cnp.ndarray ag = checked(grad_out, "grad_out", 3, typenum, False)
    cdef cnp.ndarray ai = checked(grad_in, "grad_in", 3, typenum, True)
    _same_planes(ai, ag, "grad_in", "grad_out")
    cdef cnp.ndarray ad = _divisor(divisor, ag)
    cdef Plan g
    if not _plan_call(&g, ai, ag, "grad_in", "grad_out", True, windows, kernel_h, kernel_w,
                      stride_h, stride_w, dil_h, dil_w):
        return
    cdef Py_ssize_t planes = ai.shape[0]
    cdef const double* dp = <const double*>cnp.PyArray_DATA(ad)
    if typenum == cnp.NPY_FLOAT32:
        _mean_backward(<const float*>cnp.PyArray_DATA(ag), dp, <float*>cnp.PyArray_DATA(ai),
                       &g, planes, n_threads)
    else:
        _mean_backward(<const double*>cnp.PyArray_DATA(ag), dp, <double*>cnp.PyArray_DATA(ai),
                       &g, planes, n_threads)


cdef int _mean_backward(const floating* grad, const double* div, floating* gin, Plan* g,
                        Py_ssize_t planes, int n_threads) except -1:
    cdef int failed = 0
    cdef int* failed_p = &failed
    g.stream = _streams(g, planes, gin, sizeof(floating))
    if not g.tiled and g.mode == PANELS and not _plan_tables(g):
        raise MemoryError("no memory for the pooling plan")
    with nogil:
        if n_threads > 1:
            with parallel(num_threads=n_threads):
                _mean_backward_share(grad, div, gin, g, planes, failed_p)
        else:
            _mean_backward_share(grad, div, gin, g, planes, failed_p)
    _plan_free(g)
    if failed:
        raise MemoryError("mean_backward: no memory for the accumulator")
    return 0


cdef void _mean_backward_share(const floating* grad, const double* div, floating* gin,
                               const Plan* g, Py_ssize_t planes, int* failed) noexcept nogil:
    """This thread's share of the planes (all of them outside a parallel block)."""
    cdef Py_ssize_t p, lo, hi
    cdef Py_ssize_t plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    cdef Work ws
    cnnpool_share(planes, &lo, &hi)
    if g.tiled:  # no scratch
        for p in range(lo, hi):
            _mean_back_tiled(grad + p * plane_out, div, gin + p * plane_in, g)
        return
    ws = _work_new(g, sizeof(floating), True)
    if g.mode == PANELS and not _work_ok(g, &ws, True):
        failed[0] = 1
    for p in range(lo, hi):
        if failed[0]:
            break
        elif g.flat3:
            _mean_back_flat3(grad + p * plane_out, div, gin + p * plane_in, g, &ws)
        elif g.mode == PANELS:
            _mean_back_panels(grad + p * plane_out, div, gin + p * plane_in, g, &ws)
        else:
            _mean_back_scalar(grad + p * plane_out, div, gin + p * plane_in, g)
    _work_free(&ws)
