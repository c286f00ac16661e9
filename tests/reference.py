"""Plain NumPy reference implementations, written for obviousness, not speed.

Independent of the library: no import from cnnpool here.  Each function
walks every window with explicit Python loops over output positions, so a
reader can check it against the textbook definition line by line.
"""

import math

import numpy as np


def pool_output_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output size along one axis."""
    eff = d * (k - 1) + 1
    if ceil_mode:
        out = math.ceil((size + 2 * p - eff) / s) + 1
        if (out - 1) * s >= size + p:
            out -= 1
    else:
        out = math.floor((size + 2 * p - eff) / s) + 1
    return out


def _window_taps(oh, ow, H, W, k, s, p, d):
    """Input coordinates of one window's taps in row-major order, None for padding."""
    taps = []
    for i in range(k[0]):
        for j in range(k[1]):
            ih = oh * s[0] - p[0] + i * d[0]
            iw = ow * s[1] - p[1] + j * d[1]
            taps.append((ih, iw) if 0 <= ih < H and 0 <= iw < W else None)
    return taps


def max_pool2d(x, k, s, p=(0, 0), d=(1, 1), ceil_mode=False):
    """Max pooling: returns (y, indices) with indices flat in H*W, PyTorch's tie rules."""
    N, C, H, W = x.shape
    OH = pool_output_size(H, k[0], s[0], p[0], d[0], ceil_mode)
    OW = pool_output_size(W, k[1], s[1], p[1], d[1], ceil_mode)
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    idx = np.empty((N, C, OH, OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    taps = [t for t in _window_taps(oh, ow, H, W, k, s, p, d) if t]
                    best, best_at = -np.inf, taps[0]
                    for ih, iw in taps:
                        v = x[n, c, ih, iw]
                        if v > best or np.isnan(v):  # NaN always replaces
                            best, best_at = v, (ih, iw)
                    y[n, c, oh, ow] = best
                    idx[n, c, oh, ow] = best_at[0] * W + best_at[1]
    return y, idx


def max_pool2d_backward(grad_y, idx, x_shape):
    """Route each output gradient to its winner, accumulating."""
    N, C, H, W = x_shape
    gx = np.zeros((N, C, H * W), dtype=grad_y.dtype)
    for n in range(N):
        for c in range(C):
            for o, i in zip(grad_y[n, c].ravel(), idx[n, c].ravel()):
                gx[n, c, i] += o
    return gx.reshape(x_shape)


def _mean_divisor(oh, ow, H, W, k, s, p, d, count_include_pad):
    count = 0
    for i in range(k[0]):
        for j in range(k[1]):
            ih = oh * s[0] - p[0] + i * d[0]
            iw = ow * s[1] - p[1] + j * d[1]
            if count_include_pad:
                count += (-p[0] <= ih < H + p[0]) and (-p[1] <= iw < W + p[1])
            else:
                count += (0 <= ih < H) and (0 <= iw < W)
    return count


def mean_pool2d(x, k, s, p=(0, 0), ceil_mode=False, count_include_pad=True, d=(1, 1)):
    """Mean pooling with PyTorch's divisor rules."""
    N, C, H, W = x.shape
    OH = pool_output_size(H, k[0], s[0], p[0], d[0], ceil_mode)
    OW = pool_output_size(W, k[1], s[1], p[1], d[1], ceil_mode)
    y = np.zeros((N, C, OH, OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            taps = [t for t in _window_taps(oh, ow, H, W, k, s, p, d) if t]
            div = _mean_divisor(oh, ow, H, W, k, s, p, d, count_include_pad)
            total = sum(x[:, :, ih, iw].astype(np.float64) for ih, iw in taps)
            y[:, :, oh, ow] = total / div
    return y


def mean_pool2d_backward(grad_y, x_shape, k, s, p=(0, 0), ceil_mode=False,
                         count_include_pad=True, d=(1, 1)):
    """Spread each output gradient evenly (1/divisor) over its window's input taps."""
    N, C, H, W = x_shape
    gx = np.zeros(x_shape, dtype=np.float64)
    OH, OW = grad_y.shape[2:]
    for oh in range(OH):
        for ow in range(OW):
            div = _mean_divisor(oh, ow, H, W, k, s, p, d, count_include_pad)
            for t in _window_taps(oh, ow, H, W, k, s, p, d):
                if t:
                    gx[:, :, t[0], t[1]] += grad_y[:, :, oh, ow] / div
    return gx.astype(grad_y.dtype)
