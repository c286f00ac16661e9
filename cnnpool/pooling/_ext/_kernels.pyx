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

Files: this module holds the entry points' shared types and settings;
``_plan.pxi`` the checks, the ``Plan`` of a call, the per-thread work
space and the panels; ``_max.pxi`` and ``_mean.pxi`` the two kernels;
``_kernels.h`` the C helpers (streaming stores and two loops that must be
plain C).  The ``.pxi`` files are included, so that all of it compiles
into one C file: the kernels call the planner's small fused functions in
their inner loops, which must inline (a cimport across modules would make
each a call through a pointer).
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


# The C helpers (streaming stores, two plain-C loops): see _kernels.h.
cdef extern from "_kernels.h":
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


# The planner and the panels, shared by both strategies; then each kernel
# (included, not cimported: see the module docstring).
include "_plan.pxi"
include "_max.pxi"
include "_mean.pxi"
