"""What is timed: each workload returns ``{pass_name: {competitor: fn}}``.

Register a new one with :func:`add` (any function of ``(cnnpool, torch)``,
``torch`` None when not installed), or, for one more convolution layer
shape, add a line to :data:`CONV_SHAPES`.  Competitor names: ``cnnpool``,
``torch``, ``numpy``, ``floor`` (a memory copy of the same input).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .baselines import (
    np_conv_forward,
    np_conv_fwdbwd,
    np_modules,
    np_pool_tiled_forward,
    np_pool_tiled_fwdbwd,
    np_pool_window_forward,
    np_pool_window_fwdbwd,
    torch_train_step,
)
from .harness import require


@dataclass(frozen=True)
class Workload:
    """A registered workload.

    ``repeats`` scales the run's samples per competitor; ``seconds`` bounds
    the time of one pass (fewer samples, at least 5, for big layers).
    """

    key: str
    description: str
    make: Callable
    repeats: float = 1.0
    seconds: float | None = None


WORKLOADS: dict[str, Workload] = {}


def add(key, description, make, **options):
    """Register ``make(cp, torch)`` under ``key`` (``--only`` selects by key prefix)."""
    WORKLOADS[key] = Workload(key, description, make, **options)


# ============================================================== pooling ====
def pool_workload(cp, torch, kind, k, s, p, dtype):
    """Competitors for one pooling workload: ``{pass: {name: fn}}`` plus the floor."""
    np, _ = np_modules()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32, 32, 32)).astype(dtype)
    if kind == "max":
        layer = require(cp, "MaxPool2d")(k, s, p)
    else:
        layer = require(cp, "MeanPool2d")(k, s, p)
    y = layer.forward(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    tiled = s == k and p == 0

    def cp_fwd():
        layer.forward(x)

    def cp_fb():
        layer.forward(x)
        layer.backward(g)

    if tiled:

        def np_fwd():
            np_pool_tiled_forward(x, k, kind)

        def np_fb():
            np_pool_tiled_fwdbwd(x, g, k, kind)
    else:

        def np_fwd():
            np_pool_window_forward(x, k, s, p, kind)

        def np_fb():
            np_pool_window_fwdbwd(x, g, k, s, p, kind)

    dst = np.empty_like(x)

    def floor():
        np.copyto(dst, x)

    fwd = {"cnnpool": cp_fwd}
    fb = {"cnnpool": cp_fb}
    if torch is not None:
        F = torch.nn.functional
        xt = torch.from_numpy(x)
        xg = torch.from_numpy(x.copy()).requires_grad_()
        gt = torch.from_numpy(g)
        if kind == "max":

            def op(t):
                return F.max_pool2d(t, k, s, p)
        else:

            def op(t):
                return F.avg_pool2d(t, k, s, p)

        def t_fwd():
            with torch.no_grad():
                op(xt)

        def t_fb():
            xg.grad = None
            op(xg).backward(gt)

        fwd["torch"] = t_fwd
        fb["torch"] = t_fb
    fwd["numpy"] = np_fwd
    fb["numpy"] = np_fb
    fwd["floor"] = floor
    fb["floor"] = floor
    return {"forward": fwd, "forward+backward": fb}


# ========================================================== convolution ====
def conv_workload(
    cp,
    torch,
    shape,
    out_channels,
    k,
    p,
    dtype="float32",
    stride=1,
    numpy=True,
    forward=True,
    groups=1,
):
    """Conv2d on ``shape`` (N, C, H, W): forward (optional) and forward+backward."""
    np, _ = np_modules()
    Conv2d = require(cp, "Conv2d")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    extra = {"groups": groups} if groups != 1 else {}  # older cnnpool: no groups argument
    conv = Conv2d(shape[1], out_channels, k, stride=stride, padding=p, dtype=dtype, rng=0, **extra)
    y = conv.forward(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    weight, bias = conv.weight.data, conv.bias.data

    def cp_fwd():
        conv.forward(x)

    def cp_fb():
        conv.forward(x)
        conv.backward(g)

    fwd = {"cnnpool": cp_fwd}
    fb = {"cnnpool": cp_fb}
    if torch is not None:
        F = torch.nn.functional
        xt, wt, bt = (torch.from_numpy(a.copy()) for a in (x, weight, bias))
        xg, wg, bg = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, weight, bias))
        gt = torch.from_numpy(g)

        def t_fwd():
            with torch.no_grad():
                F.conv2d(xt, wt, bt, stride=stride, padding=p, groups=groups)

        def t_fb():
            xg.grad = wg.grad = bg.grad = None
            F.conv2d(xg, wg, bg, stride=stride, padding=p, groups=groups).backward(gt)

        fwd["torch"] = t_fwd
        fb["torch"] = t_fb
    if numpy and stride == 1 and groups == 1:
        fwd["numpy"] = lambda: np_conv_forward(x, weight, bias, p)
        fb["numpy"] = lambda: np_conv_fwdbwd(x, weight, bias, g, p)
    passes = {"forward": fwd} if forward else {}
    passes["forward+backward"] = fb
    return passes


def tiny_net_workload(cp, torch):
    """W4: (1,1,6,6) conv 3x3 -> 2x2 max pool."""
    np, _ = np_modules()
    Conv2d, MaxPool2d = require(cp, "Conv2d"), require(cp, "MaxPool2d")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 6, 6)).astype(np.float32)
    conv, pool = Conv2d(1, 1, 3, rng=0), MaxPool2d(2)
    g = rng.standard_normal((1, 1, 2, 2)).astype(np.float32)
    weight, bias = conv.weight.data, conv.bias.data

    def cp_fwd():
        pool.forward(conv.forward(x))

    def cp_fb():
        pool.forward(conv.forward(x))
        conv.backward(pool.backward(g))

    def np_fwd():
        np_pool_tiled_forward(np_conv_forward(x, weight, bias, 0), 2, "max")

    def np_fb():
        y, _, _, _ = np_conv_fwdbwd(x, weight, bias, np.zeros((1, 1, 4, 4), np.float32), 0)
        _, gy = np_pool_tiled_fwdbwd(y, g, 2, "max")
        np_conv_fwdbwd(x, weight, bias, gy, 0)

    fwd = {"cnnpool": cp_fwd}
    fb = {"cnnpool": cp_fb}
    if torch is not None:
        F = torch.nn.functional
        xt, wt, bt = (torch.from_numpy(a.copy()) for a in (x, weight, bias))
        xg, wg, bg = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, weight, bias))
        gt = torch.from_numpy(g)

        def t_fwd():
            with torch.no_grad():
                F.max_pool2d(F.conv2d(xt, wt, bt), 2)

        def t_fb():
            xg.grad = wg.grad = bg.grad = None
            F.max_pool2d(F.conv2d(xg, wg, bg), 2).backward(gt)

        fwd["torch"] = t_fwd
        fb["torch"] = t_fb
    fwd["numpy"] = np_fwd
    fb["numpy"] = np_fb
    return {"forward": fwd, "forward+backward": fb}


def overhead_workload(cp, torch):
    """T0: MaxPool2d(2) on (1,1,4,4): nothing but per-call overhead."""
    np, _ = np_modules()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    g = rng.standard_normal((1, 1, 2, 2)).astype(np.float32)
    pool = require(cp, "MaxPool2d")(2)

    def cp_fwd():
        pool.forward(x)

    def cp_fb():
        pool.forward(x)
        pool.backward(g)

    fwd = {"cnnpool": cp_fwd}
    fb = {"cnnpool": cp_fb}
    if torch is not None:
        F = torch.nn.functional
        xt = torch.from_numpy(x)
        xg = torch.from_numpy(x.copy()).requires_grad_()
        gt = torch.from_numpy(g)

        def t_fwd():
            with torch.no_grad():
                F.max_pool2d(xt, 2)

        def t_fb():
            xg.grad = None
            F.max_pool2d(xg, 2).backward(gt)

        fwd["torch"] = t_fwd
        fb["torch"] = t_fb
    fwd["numpy"] = lambda: np_pool_tiled_forward(x, 2, "max")
    fb["numpy"] = lambda: np_pool_tiled_fwdbwd(x, g, 2, "max")
    return {"forward": fwd, "forward+backward": fb}


# ======================================================= training steps ====
@dataclass(frozen=True)
class TrainSpec:
    """A ``(conv 3x3 pad 1 -> ReLU -> max 2x2) * len(channels) -> linear`` network."""

    batch: int
    image: tuple
    classes: int
    channels: tuple


#: The comparison CNN (issue 5) and the issue-19 ``c32-p-c64-p-c128-p-fc`` network.
TRAIN_SPECS = {
    "TS": TrainSpec(16, (1, 32, 32), 3, (8, 16)),
    "TL": TrainSpec(32, (3, 64, 64), 10, (32, 64, 128)),
}


def cnnpool_train_step(cp, spec):
    """One Adam step of the network ``spec`` in cnnpool; returns the step function."""
    np, _ = np_modules()
    needed = (
        "Sequential",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Flatten",
        "Linear",
        "SoftmaxCrossEntropy",
        "Adam",
    )
    for name in needed:
        require(cp, name)
    c, h, w = spec.image
    rng = np.random.default_rng(0)
    layers, prev = [], c
    for ch in spec.channels:
        layers += [cp.Conv2d(prev, ch, 3, padding=1, rng=rng), cp.ReLU(), cp.MaxPool2d(2)]
        prev = ch
    shrink = 2 ** len(spec.channels)
    layers += [cp.Flatten(), cp.Linear(prev * (h // shrink) * (w // shrink), spec.classes, rng=rng)]
    model = cp.Sequential(*layers)
    loss_fn = cp.SoftmaxCrossEntropy()
    opt = cp.Adam(model.parameters(), lr=1e-3)
    x = rng.standard_normal((spec.batch,) + spec.image).astype(np.float32)
    y = rng.integers(0, spec.classes, spec.batch)

    def step():
        opt.zero_grad()
        loss_fn(model.forward(x), y)
        model.backward(loss_fn.backward())
        opt.step()

    return step


def step_builders(key):
    """``{"cnnpool": make(cp), "torch": make(torch)}`` for training step ``key``."""
    spec = TRAIN_SPECS[key]
    return {
        "cnnpool": partial(cnnpool_train_step, spec=spec),
        "torch": partial(torch_train_step, spec=spec),
    }


def train_workload(cp, torch, key):
    fb = {"cnnpool": cnnpool_train_step(cp, TRAIN_SPECS[key])}
    if torch is not None:
        fb["torch"] = torch_train_step(torch, TRAIN_SPECS[key])
    return {"forward+backward": fb}


# ============================================================ the list ====
def _pool(kind, k, s, p, dtype):
    return lambda cp, t: pool_workload(cp, t, kind, k, s, p, dtype)


# Issue 5's workloads (their keys and descriptions are those of earlier RESULTS.md).
add("W1 max", "max 2x2/2, (64,32,32,32) f32", _pool("max", 2, 2, 0, "float32"))
add("W1 mean", "mean 2x2/2, (64,32,32,32) f32", _pool("mean", 2, 2, 0, "float32"))
add("W2 max", "max 3x3/2 pad 1, (64,32,32,32) f32", _pool("max", 3, 2, 1, "float32"))
add("W2 mean", "mean 3x3/2 pad 1, (64,32,32,32) f32", _pool("mean", 3, 2, 1, "float32"))
add(
    "W3 conv",
    "conv 16->32 3x3 pad 1, (64,16,32,32) f32",
    lambda cp, t: conv_workload(cp, t, (64, 16, 32, 32), 32, 3, 1),
    repeats=0.5,
)
add("W4 tiny", "(1,1,6,6) conv 3x3 -> max 2x2", tiny_net_workload)
add("W5 max", "max 2x2/2, (64,32,32,32) f64", _pool("max", 2, 2, 0, "float64"))
add("W5 mean", "mean 2x2/2, (64,32,32,32) f64", _pool("mean", 2, 2, 0, "float64"))
add("T0 overhead", "MaxPool2d(2) on (1,1,4,4) f32", overhead_workload)
add(
    "TS train",
    "training step, comparison CNN, batch 16x1x32x32, Adam",
    partial(train_workload, key="TS"),
    repeats=0.5,
)

#: Issue 19: (key, input shape, out channels, kernel, stride, padding), float32,
#: forward+backward against PyTorch only.  ResNet-18 and VGG-11 at 64x64
#: input, batch 8 (every distinct conv layer shape; VGG-11's last two layers
#: share one), then the issue's table.
CONV_SHAPES = [
    ("R18 conv1", (8, 3, 64, 64), 64, 7, 2, 3),
    ("R18 layer1", (8, 64, 16, 16), 64, 3, 1, 1),
    ("R18 layer2 down", (8, 64, 16, 16), 128, 3, 2, 1),
    ("R18 layer2 skip", (8, 64, 16, 16), 128, 1, 2, 0),
    ("R18 layer2", (8, 128, 8, 8), 128, 3, 1, 1),
    ("R18 layer3 down", (8, 128, 8, 8), 256, 3, 2, 1),
    ("R18 layer3 skip", (8, 128, 8, 8), 256, 1, 2, 0),
    ("R18 layer3", (8, 256, 4, 4), 256, 3, 1, 1),
    ("R18 layer4 down", (8, 256, 4, 4), 512, 3, 2, 1),
    ("R18 layer4 skip", (8, 256, 4, 4), 512, 1, 2, 0),
    ("R18 layer4", (8, 512, 2, 2), 512, 3, 1, 1),
    ("V11 conv1", (8, 3, 64, 64), 64, 3, 1, 1),
    ("V11 conv2", (8, 64, 32, 32), 128, 3, 1, 1),
    ("V11 conv3", (8, 128, 16, 16), 256, 3, 1, 1),
    ("V11 conv4", (8, 256, 16, 16), 256, 3, 1, 1),
    ("V11 conv5", (8, 256, 8, 8), 512, 3, 1, 1),
    ("V11 conv6", (8, 512, 8, 8), 512, 3, 1, 1),
    ("V11 conv7-8", (8, 512, 4, 4), 512, 3, 1, 1),
    ("I19 a", (1, 3, 32, 32), 16, 3, 1, 1),
    ("I19 b", (64, 16, 32, 32), 32, 3, 1, 1),
    ("I19 c", (8, 64, 56, 56), 64, 3, 1, 1),
    ("I19 d", (8, 128, 28, 28), 128, 3, 1, 1),
    ("I19 e", (8, 64, 56, 56), 128, 3, 2, 1),
    ("I19 f", (8, 3, 224, 224), 64, 7, 2, 3),
]


def _shape_text(shape, out, k, s, p):
    return f"conv {shape} -> {out}, {k}x{k}/{s} pad {p}, f32"


for _key, _shape, _out, _k, _s, _p in CONV_SHAPES:
    add(
        _key,
        _shape_text(_shape, _out, _k, _s, _p),
        partial(
            conv_workload,
            shape=_shape,
            out_channels=_out,
            k=_k,
            p=_p,
            stride=_s,
            numpy=False,
            forward=False,
        ),
        seconds=6.0,
    )
# Issue 17: depthwise 3x3 (groups == channels), forward+backward no slower
# than PyTorch on one thread.
add(
    "I17 depthwise",
    "depthwise conv (64, 32, 32, 32) -> 32, 3x3/1 pad 1, groups 32, f32",
    partial(
        conv_workload,
        shape=(64, 32, 32, 32),
        out_channels=32,
        k=3,
        p=1,
        groups=32,
        numpy=False,
    ),
    seconds=6.0,
)
add(
    "I17 depthwise s2",
    "depthwise conv (64, 32, 32, 32) -> 32, 3x3/2 pad 1, groups 32, f32 (no target)",
    partial(
        conv_workload,
        shape=(64, 32, 32, 32),
        out_channels=32,
        k=3,
        p=1,
        stride=2,
        groups=32,
        numpy=False,
    ),
    seconds=6.0,
)
add(
    "TL train",
    "training step, c32-p-c64-p-c128-p-fc, batch 32x3x64x64, 10 classes, Adam",
    partial(train_workload, key="TL"),
    seconds=10.0,
)
