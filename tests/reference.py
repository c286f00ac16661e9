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


def mean_pool2d_backward(
    grad_y, x_shape, k, s, p=(0, 0), ceil_mode=False, count_include_pad=True, d=(1, 1)
):
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


# ---------------------------------------------------------------------------
# Convolution, linear, losses and optimizers (tests of issue 3).


def conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Cross-correlation by its definition, one output position at a time.

    ``out[n, o, oh, ow] = b[o] + sum_{c,i,j} w[o, c, i, j] *
    xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]`` with ``xpad`` zero-padded.
    """
    N, C, H, W = x.shape
    M, _, kh, kw = w.shape  # M output channels
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    OH = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((N, M, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            patch = xp[
                :,
                :,
                oh * sh : oh * sh + dh * (kh - 1) + 1 : dh,
                ow * sw : ow * sw + dw * (kw - 1) + 1 : dw,
            ]  # (N, C, kh, kw)
            out[:, :, oh, ow] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    if b is not None:
        out += b[None, :, None, None]
    return out


def conv2d_backward(x, w, grad_y, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Gradients ``(grad_x, grad_w, grad_b)`` of :func:`conv2d`, by the chain rule.

    Every output position adds ``grad_y * w`` onto the input patch it read
    and ``grad_y * patch`` onto the weights.
    """
    N, C, H, W = x.shape
    kh, kw = w.shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))).astype(np.float64)
    gxp = np.zeros_like(xp)
    gw = np.zeros(w.shape)
    OH, OW = grad_y.shape[2:]
    for oh in range(OH):
        for ow in range(OW):
            rows = slice(oh * sh, oh * sh + dh * (kh - 1) + 1, dh)
            cols = slice(ow * sw, ow * sw + dw * (kw - 1) + 1, dw)
            g = grad_y[:, :, oh, ow]  # (N, M)
            gxp[:, :, rows, cols] += np.tensordot(g, w, axes=([1], [0]))
            gw += np.tensordot(g, xp[:, :, rows, cols], axes=([0], [0]))
    gx = gxp[:, :, ph : ph + H, pw : pw + W]
    return gx, gw, grad_y.sum(axis=(0, 2, 3))


def softmax_cross_entropy(logits, labels):
    """Mean of ``-log softmax(logits)[n, labels[n]]`` and its gradient, in float64."""
    z = np.asarray(logits, np.float64)
    n = z.shape[0]
    probs = np.array([np.exp(row - row.max()) / np.exp(row - row.max()).sum() for row in z])
    loss = -np.mean([math.log(probs[i, labels[i]]) for i in range(n)])
    grad = probs.copy()
    for i in range(n):
        grad[i, labels[i]] -= 1.0
    return loss, grad / n


def sgd_step(p, g, buf, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """One ``torch.optim.SGD`` step (no dampening); returns ``(p, buf)``."""
    g = g + weight_decay * p
    if momentum:
        buf = g.copy() if buf is None else momentum * buf + g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


def adam_step(p, g, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """One ``torch.optim.Adam`` step number ``t`` (from 1); returns ``(p, m, v)``."""
    b1, b2 = betas
    g = g + weight_decay * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def grouped_conv2d(x, w, b, stride, pads, dilation, groups):
    """:func:`conv2d` with ``groups`` and padding ``(top, bottom, left, right)``.

    Group g convolves input channels ``[g*C/G, (g+1)*C/G)`` with output
    channels ``[g*M/G, (g+1)*M/G)`` (PyTorch's ``groups``); the padding is
    applied first with ``np.pad``, then an unpadded :func:`conv2d` per group.
    """
    t, bottom, left, right = pads
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (t, bottom), (left, right)))
    cg, mg = x.shape[1] // groups, w.shape[0] // groups
    out = [
        conv2d(
            xp[:, g * cg : (g + 1) * cg], w[g * mg : (g + 1) * mg], None, stride, (0, 0), dilation
        )
        for g in range(groups)
    ]
    out = np.concatenate(out, axis=1)
    if b is not None:
        out += b[None, :, None, None]
    return out


def grouped_conv2d_backward(x, w, grad_y, stride, pads, dilation, groups):
    """Gradients ``(grad_x, grad_w, grad_b)`` of :func:`grouped_conv2d`."""
    t, bottom, left, right = pads
    n, c, h, width = x.shape
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (t, bottom), (left, right)))
    cg, mg = c // groups, w.shape[0] // groups
    gxp, gw = np.zeros_like(xp), np.zeros(w.shape)
    for g in range(groups):
        gx_g, gw_g, _ = conv2d_backward(
            xp[:, g * cg : (g + 1) * cg],
            w[g * mg : (g + 1) * mg],
            grad_y[:, g * mg : (g + 1) * mg],
            stride,
            (0, 0),
            dilation,
        )
        gxp[:, g * cg : (g + 1) * cg] = gx_g
        gw[g * mg : (g + 1) * mg] = gw_g
    return gxp[:, :, t : t + h, left : left + width], gw, grad_y.sum(axis=(0, 2, 3))


def fractional_starts(u, size, out, k, dtype):
    """Window starts of fractional max pooling along one axis (Graham 2014, PyTorch's rule).

    ``alpha = (size - k) / (out - 1)``; window ``i < out - 1`` starts at
    ``int((i + u) * alpha) - int(u * alpha)``, the last at ``size - k``;
    the arithmetic in ``dtype`` (NumPy scalars of that type round as C does).
    """
    f = np.dtype(dtype).type
    starts = []
    if out > 1:
        alpha = f(size - k) / f(out - 1)
        for i in range(out - 1):
            starts.append(int((f(i) + f(u)) * alpha) - int(f(u) * alpha))
    starts.append(size - k)
    return starts


def fractional_max_pool2d(x, k, out, samples):
    """Fractional max pooling: returns (y, indices); ``samples[n, c] = (u_w, u_h)``."""
    N, C, H, W = x.shape
    y = np.empty((N, C) + tuple(out), dtype=x.dtype)
    idx = np.empty((N, C) + tuple(out), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            u_w, u_h = samples[n, c]
            rows = fractional_starts(u_h, H, out[0], k[0], x.dtype)
            cols = fractional_starts(u_w, W, out[1], k[1], x.dtype)
            for oh, r in enumerate(rows):
                for ow, s in enumerate(cols):
                    best, best_at = -np.inf, (r, s)
                    for ih in range(r, r + k[0]):
                        for iw in range(s, s + k[1]):
                            v = x[n, c, ih, iw]
                            if v > best or np.isnan(v):  # NaN always replaces
                                best, best_at = v, (ih, iw)
                    y[n, c, oh, ow] = best
                    idx[n, c, oh, ow] = best_at[0] * W + best_at[1]
    return y, idx
