/* The window driver's gather and scatter, in C for one reason: these loops
 * must stay scalar.
 *
 * Vectorised, GCC turns `values[i] = x[taps[i]]` and `grad_x[taps[i]] = ...`
 * into AVX-512 gather and scatter instructions, which on AMD Zen
 * (microcoded) are slower than one load or store per element; the driver
 * spends most of its time in these loops, so they are compiled without the
 * loop vectoriser. */
#ifndef CNNPOOL_STRATEGY_H
#define CNNPOOL_STRATEGY_H

#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__)
#define CNNPOOL_SCALAR __attribute__((optimize("no-tree-vectorize")))
#else
#define CNNPOOL_SCALAR
#endif

#define CNNPOOL_GATHER(NAME, T)                                                          \
    static CNNPOOL_SCALAR void NAME(const T *x, const Py_ssize_t *taps,                 \
                                    const Py_ssize_t *counts, Py_ssize_t n_windows,     \
                                    Py_ssize_t k, int full, double *values)             \
    {                                                                                    \
        if (full) { /* every row of the table is K taps: one flat loop */                \
            for (Py_ssize_t i = 0; i < n_windows * k; i++)                               \
                values[i] = (double)x[taps[i]];                                          \
            return;                                                                      \
        }                                                                                \
        for (Py_ssize_t w = 0; w < n_windows; w++)                                       \
            for (Py_ssize_t i = 0; i < counts[w]; i++)                                   \
                values[w * k + i] = (double)x[taps[w * k + i]];                          \
    }

CNNPOOL_GATHER(cnnpool_gather_f32, float)
CNNPOOL_GATHER(cnnpool_gather_f64, double)

/* grad_x[tap] (+)= local * grad_out for the taps of n_windows windows.  With
 * `disjoint` (no element in two windows) a store: `0 +` keeps the sign of a
 * zero exactly as accumulating into a zeroed array would. */
#define CNNPOOL_SCATTER(NAME, T)                                                         \
    static CNNPOOL_SCALAR void NAME(const double *local, const T *grad_out,             \
                                    const Py_ssize_t *taps, const Py_ssize_t *counts,   \
                                    Py_ssize_t n_windows, Py_ssize_t k, int disjoint,   \
                                    T *grad_x)                                           \
    {                                                                                    \
        for (Py_ssize_t w = 0; w < n_windows; w++) {                                     \
            const double g = (double)grad_out[w];                                        \
            if (disjoint)                                                                \
                for (Py_ssize_t i = 0; i < counts[w]; i++)                               \
                    grad_x[taps[w * k + i]] = (T)0 + (T)(local[w * k + i] * g);          \
            else                                                                         \
                for (Py_ssize_t i = 0; i < counts[w]; i++)                               \
                    grad_x[taps[w * k + i]] += (T)(local[w * k + i] * g);                \
        }                                                                                \
    }

CNNPOOL_SCATTER(cnnpool_scatter_f32, float)
CNNPOOL_SCATTER(cnnpool_scatter_f64, double)

#endif
