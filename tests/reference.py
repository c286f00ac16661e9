"""Plain NumPy reference implementations, written for obviousness, not speed.

Independent of the library: no import from cnnpool here.  Each function
walks every window with explicit Python loops over output positions, so a
reader can check it against the textbook definition line by line.
"""

import itertools
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
# Pooling on any number of spatial axes (1-D, 2-D, 3-D; issue 17).  Padding per
# axis is one int or a (before, after) pair.  Arithmetic in the input's own
# dtype, taps in scan order (first axis slowest), which is PyTorch's order:
# these give its bits, not just its values.


def _pads(padding, n):
    pads = [padding] * n if np.isscalar(padding) else list(padding)
    return [(p, p) if np.isscalar(p) else tuple(p) for p in pads]


def pool_output_size_nd(size, k, s, pads, d, ceil_mode):
    """Output size along one axis with padding ``pads = (before, after)``."""
    before, after = pads
    eff = d * (k - 1) + 1
    if ceil_mode:
        out = math.ceil((size + before + after - eff) / s) + 1
        if (out - 1) * s >= size + before:  # the last window must start inside
            out -= 1
    else:
        out = math.floor((size + before + after - eff) / s) + 1
    return out


def _windows_nd(spatial, k, s, padding, d, ceil_mode):
    """Per output position (scan order): its input taps (in scan order) and
    how many taps fall in the input or its padding."""
    n = len(spatial)
    pads = _pads(padding, n)
    outs = [pool_output_size_nd(spatial[a], k[a], s[a], pads[a], d[a], ceil_mode) for a in range(n)]
    windows = []
    for o in itertools.product(*[range(m) for m in outs]):
        taps, padded = [], 1
        for a in range(n):
            pos = [o[a] * s[a] - pads[a][0] + i * d[a] for i in range(k[a])]
            padded *= sum(-pads[a][0] <= q < spatial[a] + pads[a][1] for q in pos)
        for i in itertools.product(*[range(k[a]) for a in range(n)]):
            tap = tuple(o[a] * s[a] - pads[a][0] + i[a] * d[a] for a in range(n))
            if all(0 <= tap[a] < spatial[a] for a in range(n)):
                taps.append(tap)
        windows.append((o, taps, padded))
    return tuple(outs), windows


def max_pool_nd(x, k, s, padding=0, d=None, ceil_mode=False):
    """Max pooling of ``x`` (N, C, *spatial): ``(y, indices)``, indices flat in the
    input's spatial plane (PyTorch's), by PyTorch's rule: scanning a window's
    input taps in order, a tap replaces the best when greater or NaN; the best
    starts at -inf with the first input tap's index."""
    N, C = x.shape[:2]
    spatial = x.shape[2:]
    d = d or (1,) * len(spatial)
    outs, windows = _windows_nd(spatial, k, s, padding, d, ceil_mode)
    y = np.empty((N, C) + outs, dtype=x.dtype)
    idx = np.empty((N, C) + outs, dtype=np.int64)
    for o, taps, _ in windows:
        if not taps:
            raise ValueError(f"window {o} holds no input element")
        best = np.full((N, C), -np.inf, dtype=x.dtype)
        at = np.full((N, C), np.ravel_multi_index(taps[0], spatial), dtype=np.int64)
        for tap in taps:
            v = x[(slice(None), slice(None)) + tap]
            win = (v > best) | np.isnan(v)
            best = np.where(win, v, best)
            at = np.where(win, np.ravel_multi_index(tap, spatial), at)
        y[(slice(None), slice(None)) + o] = best
        idx[(slice(None), slice(None)) + o] = at
    return y, idx


def max_pool_nd_backward(grad_y, idx, x_shape):
    """Add each output gradient at its flat index, outputs in order, from zero."""
    N, C = x_shape[:2]
    gx = np.zeros((N, C, int(np.prod(x_shape[2:]))), dtype=grad_y.dtype)
    size = int(np.prod(grad_y.shape[2:]))  # not -1: N may be 0
    g, i = grad_y.reshape(N, C, size), idx.reshape(N, C, size)
    n, c = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    for o in range(g.shape[2]):
        gx[n, c, i[:, :, o]] += g[:, :, o]
    return gx.reshape(x_shape)


def mean_divisor_nd(
    spatial,
    k,
    s,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    d=None,
):
    """Each window's divisor, float64 of the output's spatial shape: PyTorch's rules
    (``count_include_pad`` counts taps in the input or its padding, never the
    overhang that only ceil_mode creates); ``d``: dilation (cnnpool's extension)."""
    d = d or (1,) * len(spatial)
    outs, windows = _windows_nd(spatial, k, s, padding, d, ceil_mode)
    div = np.empty(outs)
    for o, taps, padded in windows:
        if divisor_override is not None:
            div[o] = divisor_override
        else:
            div[o] = padded if count_include_pad else len(taps)
    return div


def mean_pool_nd(x, k, s, padding=0, ceil_mode=False, divisor=None, d=None):
    """Mean pooling of ``x`` (N, C, *spatial): sum of the input taps from 0 in
    scan order, in x's dtype, divided by ``divisor[o]`` as x's dtype."""
    N, C = x.shape[:2]
    spatial = x.shape[2:]
    d = d or (1,) * len(spatial)
    outs, windows = _windows_nd(spatial, k, s, padding, d, ceil_mode)
    y = np.empty((N, C) + outs, dtype=x.dtype)
    for o, taps, _ in windows:
        total = np.zeros((N, C), dtype=x.dtype)
        for tap in taps:
            total = total + x[(slice(None), slice(None)) + tap]
        y[(slice(None), slice(None)) + o] = total / x.dtype.type(divisor[o])
    return y


def mean_pool_nd_backward(grad_y, x_shape, k, s, padding=0, ceil_mode=False, divisor=None, d=None):
    """Add ``grad_y[o] / divisor[o]`` to every input tap of window o, outputs in
    order, from zero, in grad_y's dtype."""
    spatial = x_shape[2:]
    d = d or (1,) * len(spatial)
    _, windows = _windows_nd(spatial, k, s, padding, d, ceil_mode)
    gx = np.zeros(x_shape, dtype=grad_y.dtype)
    for o, taps, _ in windows:
        share = grad_y[(slice(None), slice(None)) + o] / grad_y.dtype.type(divisor[o])
        for tap in taps:
            gx[(slice(None), slice(None)) + tap] += share
    return gx


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


# ONNX's auto_pad, for the "same" padding modes.


def same_pads(size, k, s, d, lower=False):
    """ONNX ``auto_pad`` SAME_UPPER (or SAME_LOWER) padding ``(before, after)`` of one axis.

    The output has ``ceil(size / s)`` elements; the total padding is what
    the last window needs, split evenly, the odd element at the end (UPPER)
    or the start (LOWER).
    """
    out = math.ceil(size / s)
    total = max(0, (out - 1) * s + d * (k - 1) + 1 - size)
    small, large = total // 2, total - total // 2
    return (large, small) if lower else (small, large)


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
