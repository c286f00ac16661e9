"""The competitors that are not cnnpool.

Plain NumPy: the best simple version of each layer (reshape tricks for
non-overlapping windows, ``sliding_window_view`` otherwise, ``tensordot``
for convolution).  PyTorch: the models of the training steps.
"""

from __future__ import annotations


def np_modules():
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    return np, sliding_window_view


def np_pool_tiled_forward(x, k, kind):
    """Non-overlapping k x k pooling by reshape (no padding, floor mode)."""
    n, c, h, w = x.shape
    oh, ow = h // k, w // k
    blocks = x[:, :, : oh * k, : ow * k].reshape(n, c, oh, k, ow, k)
    return blocks.max(axis=(3, 5)) if kind == "max" else blocks.mean(axis=(3, 5))


def np_pool_tiled_fwdbwd(x, g, k, kind):
    np, _ = np_modules()
    n, c, h, w = x.shape
    oh, ow = h // k, w // k
    if kind == "mean":
        y = x.reshape(n, c, oh, k, ow, k).mean(axis=(3, 5))
        share = (g / (k * k))[:, :, :, None, :, None]
        gx = np.broadcast_to(share, (n, c, oh, k, ow, k)).reshape(n, c, h, w)
        return y, gx
    win = x.reshape(n, c, oh, k, ow, k).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh, ow, k * k)
    arg = win.argmax(axis=-1)[..., None]
    y = np.take_along_axis(win, arg, -1)[..., 0]
    gw = np.zeros_like(win)
    np.put_along_axis(gw, arg, g[..., None], -1)
    gx = gw.reshape(n, c, oh, ow, k, k).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)
    return y, gx


def _windows(x, k, s, p, fill):
    np, swv = np_modules()
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill)
    return xp, swv(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]


def np_pool_window_forward(x, k, s, p, kind):
    """Overlapping pooling by sliding_window_view (count_include_pad for mean)."""
    _, win = _windows(x, k, s, p, -float("inf") if kind == "max" else 0.0)
    return win.max(axis=(4, 5)) if kind == "max" else win.sum(axis=(4, 5)) / (k * k)


def np_pool_window_fwdbwd(x, g, k, s, p, kind):
    np, _ = np_modules()
    n, c, h, w = x.shape
    xp, win = _windows(x, k, s, p, -np.inf if kind == "max" else 0.0)
    oh, ow = win.shape[2:4]
    gp = np.zeros(xp.shape, x.dtype)
    if kind == "max":
        flat = win.reshape(n, c, oh, ow, k * k)
        arg = flat.argmax(axis=-1)
        y = np.take_along_axis(flat, arg[..., None], -1)[..., 0]
        for t in range(k * k):
            i, j = divmod(t, k)
            gp[:, :, i : i + s * oh : s, j : j + s * ow : s] += np.where(arg == t, g, 0)
    else:
        y = win.sum(axis=(4, 5)) / (k * k)
        share = g / (k * k)
        for i in range(k):
            for j in range(k):
                gp[:, :, i : i + s * oh : s, j : j + s * ow : s] += share
    return y, gp[:, :, p : p + h, p : p + w]


def np_conv_forward(x, weight, bias, p):
    np, _ = np_modules()
    _, win = _windows(x, weight.shape[2], 1, p, 0.0)
    out = np.tensordot(win, weight, axes=([1, 4, 5], [1, 2, 3]))  # (n, oh, ow, O)
    return out.transpose(0, 3, 1, 2) + bias[:, None, None]


def np_conv_fwdbwd(x, weight, bias, g, p):
    np, _ = np_modules()
    k = weight.shape[2]
    xp, win = _windows(x, k, 1, p, 0.0)
    y = np.tensordot(win, weight, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
    y = y + bias[:, None, None]
    grad_w = np.tensordot(g, win, axes=([0, 2, 3], [0, 2, 3]))
    grad_b = g.sum(axis=(0, 2, 3))
    cols = np.tensordot(g, weight, axes=([1], [0]))  # (n, oh, ow, C, k, k)
    gp = np.zeros(xp.shape, x.dtype)
    oh, ow = g.shape[2:]
    for i in range(k):
        for j in range(k):
            gp[:, :, i : i + oh, j : j + ow] += cols[..., i, j].transpose(0, 3, 1, 2)
    h, w = x.shape[2:]
    return y, gp[:, :, p : p + h, p : p + w], grad_w, grad_b


# ============================================================== PyTorch ====
def torch_train_step(torch, spec):
    """One Adam step of the network ``spec`` (a :class:`~.workloads.TrainSpec`) in PyTorch."""
    import numpy as np

    nn = torch.nn
    c, h, w = spec.image
    torch.manual_seed(0)
    layers, prev = [], c
    for ch in spec.channels:
        layers += [nn.Conv2d(prev, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        prev = ch
    shrink = 2 ** len(spec.channels)
    layers += [nn.Flatten(), nn.Linear(prev * (h // shrink) * (w // shrink), spec.classes)]
    model = nn.Sequential(*layers)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((spec.batch,) + spec.image).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, spec.classes, spec.batch))

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return step
