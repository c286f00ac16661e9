# The compiled extension point of cnnpool's pooling.
#
# Subclass ``WindowStrategy`` in your own .pyx file and override its
# methods; ``cnnpool.CompiledPool2d(YourStrategy(...), kernel_size, ...)``
# then runs it over every window of a batch inside the compiled driver of
# ``_strategy.pyx`` (GIL released, OpenMP over the N*C planes), for any
# geometry cnnpool supports.  This is the compiled twin of the Python
# contract of ``Pool2d``, one window at a time:
#
#   reduce(values, n, window_size) -> pooled         ~ Pool2d.pool
#   route(values, n, window_size, pooled, local)     ~ Pool2d.route
#
# ``values`` holds the window's n taps that fall inside the input, in
# row-major window order, as doubles (float32 inputs are widened, the
# result rounded back).  Padded and overhanging taps are never passed:
# ``window_size`` (kh * kw, or the largest window of an adaptive layer) is
# there for a strategy that needs to account for them.  ``n >= 1`` always.
# ``route`` writes ``d pooled / d values[i]`` into ``local[i]`` for
# i < n; ``pooled`` is the value ``reduce`` returned for this window, as
# stored in the output dtype.
#
# The driver calls the block methods ``reduce_windows``/``route_windows``,
# once per block of up to a few hundred windows of one plane: window ``w``
# of the block is ``values[w * stride : w * stride + counts[w]]`` (its
# ``local`` the same slice), ``out[w]`` / ``pooled[w]`` its pooled value.
# Their default implementations call ``reduce``/``route`` per window; a
# strategy whose speed matters overrides them too, with the per-window
# arithmetic inlined in one loop (no call per window, and a loop the C
# compiler can optimise across windows; see ``LpWindow`` in
# ``cnnpool/pooling/strategies/_lp.pyx``).  Both forms must give the same
# numbers.
#
# All run without the GIL and concurrently on several threads: treat
# ``self`` as read-only there (set attributes in __init__), allocate
# nothing, raise nothing (return NaN for "undefined").
#
#     # my_strategy.pyx
#     from cnnpool.pooling.tiers._strategy cimport WindowStrategy
#
#     cdef class Softmax(WindowStrategy):
#         cdef double reduce(self, const double* values, Py_ssize_t n,
#                            Py_ssize_t window_size) noexcept nogil: ...
#         cdef void route(self, const double* values, Py_ssize_t n,
#                         Py_ssize_t window_size, double pooled,
#                         double* local) noexcept nogil: ...

cdef class WindowStrategy:
    cdef double reduce(self, const double* values, Py_ssize_t n,
                       Py_ssize_t window_size) noexcept nogil
    cdef void route(self, const double* values, Py_ssize_t n, Py_ssize_t window_size,
                    double pooled, double* local) noexcept nogil
    cdef void reduce_windows(self, const double* values, const Py_ssize_t* counts,
                             Py_ssize_t n_windows, Py_ssize_t stride,
                             Py_ssize_t window_size, double* out) noexcept nogil
    cdef void route_windows(self, const double* values, const Py_ssize_t* counts,
                            Py_ssize_t n_windows, Py_ssize_t stride,
                            Py_ssize_t window_size, const double* pooled,
                            double* local) noexcept nogil
