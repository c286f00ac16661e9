"""One training run: one strategy on one seed's data, recorded epoch by epoch.

A run whose loss becomes NaN or infinite stops, is marked ``"diverged"``
with the epoch, and keeps its per-epoch record; a run that raises (e.g. a
user's strategy with a bug) is marked ``"failed"`` with the error.  A run
never raises.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import traceback

import numpy as np

from ..pooling import Pool2d
from .arch import build_model
from .summary import finite_or_none

log = logging.getLogger(__name__)

__all__ = ["train_one", "evaluate", "routing_input"]


def make_optimizer(settings, params, lr=None):
    """The optimizer of ``settings`` over ``params``, at ``lr`` (default ``settings.lr``)."""
    import cnnpool as cp

    lr = settings.lr if lr is None else lr
    if settings.optimizer == "adam":
        return cp.Adam(params, lr=lr)
    return cp.SGD(params, lr=lr, momentum=settings.momentum)


def pool_seed(seed, index):
    """The seed of the ``index``-th pooling layer of a run (random strategies draw from it).

    The first two keep the values the comparison has always used
    (``2 * seed + index``); further layers get seeds no other run uses.
    """
    return 2 * seed + index if index < 2 else 2**33 + 64 * seed + index


def checksum(params):
    h = hashlib.sha1()
    for p in params:
        h.update(np.ascontiguousarray(p.data).tobytes())
    return h.hexdigest()[:16]


def evaluate(model, loss_fn, x, y, batch=256):
    """Mean loss and accuracy; a sample with any non-finite logit counts as wrong."""
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch):
        logits = model.forward(x[i : i + batch])
        yb = y[i : i + batch]
        with np.errstate(all="ignore"):
            total_loss += float(loss_fn(logits, yb)) * len(yb)
        finite = np.isfinite(logits).all(axis=1)
        correct += int(((np.argmax(logits, axis=1) == yb) & finite).sum())
    model.train()
    return total_loss / len(x), correct / len(x)


def train_one(settings, strategy, data, seed, report=None, lr=None, tuning=False):
    """Train one strategy on one seed's data; return its record (never raises).

    ``data.x_test`` is what the model is evaluated on after each epoch (the
    learning-rate search passes a validation split there); ``lr`` overrides
    ``settings.lr``.  ``tuning=True`` evaluates after the last epoch only
    and logs divergence at INFO level (a too-large rate in a grid is
    expected to diverge).
    """
    import cnnpool as cp

    dtype = np.dtype(settings.dtype)
    record = {
        "strategy": strategy.name,
        "spec": strategy.spec,
        "seed": seed,
        "status": "ok",
        "error": None,
        "diverged_epoch": None,
        "epochs": [],
        "init_checksum": None,
        "lr": settings.lr if lr is None else float(lr),
    }
    try:
        x_train = data.x_train.astype(dtype, copy=False)
        x_test = data.x_test.astype(dtype, copy=False)
        made = iter(range(1_000))
        model = build_model(
            lambda: strategy.make(settings.kernel_size, seed=pool_seed(seed, next(made))),
            data.image_shape,
            data.num_classes,
            settings.arch,
            dtype,
            seed,
            pool_size=settings.kernel_size,
        )
        params = model.parameters()
        # The shared weights (convolutions and linear); a learnable strategy's own
        # parameters, if any, are not shared with the other strategies.
        record["init_checksum"] = checksum(
            [
                p
                for layer in model.layers
                if not isinstance(layer, Pool2d)
                for p in layer.parameters()
            ]
        )
        record["parameters"] = int(sum(p.data.size for p in params))
        opt = make_optimizer(settings, params, lr)
        loss_fn = cp.SoftmaxCrossEntropy()
        order_rng = np.random.default_rng([seed, 7919])  # batch order: same for every strategy
        n, bs = len(x_train), settings.batch_size
        model.train()
        for epoch in range(1, settings.epochs + 1):
            perm = order_rng.permutation(n)
            start = time.perf_counter()
            seen, total, correct, bad = 0, 0.0, 0, False
            for i in range(0, n, bs):
                idx = perm[i : i + bs]
                xb, yb = x_train[idx], data.y_train[idx]
                opt.zero_grad()
                with np.errstate(all="ignore"):
                    logits = model.forward(xb)
                    loss = float(loss_fn(logits, yb))
                if not math.isfinite(loss):
                    bad = True
                    break
                with np.errstate(all="ignore"):
                    model.backward(loss_fn.backward())
                opt.step()
                seen += len(idx)
                total += loss * len(idx)
                correct += int((np.argmax(logits, axis=1) == yb).sum())
            seconds = time.perf_counter() - start
            if bad:
                record["status"] = "diverged"
                record["diverged_epoch"] = epoch
                record["epochs"].append(
                    {
                        "epoch": epoch,
                        "train_loss": None,
                        "train_accuracy": None,
                        "test_loss": None,
                        "test_accuracy": None,
                        "seconds": seconds,
                    }
                )
                log.log(
                    logging.INFO if tuning else logging.WARNING,
                    "%s, seed %d: loss became non-finite in epoch %d (diverged)",
                    strategy.name,
                    seed,
                    epoch,
                )
                break
            if tuning and epoch < settings.epochs:
                test_loss = test_acc = None
            else:
                test_loss, test_acc = evaluate(model, loss_fn, x_test, data.y_test)
            record["epochs"].append(
                {
                    "epoch": epoch,
                    "train_loss": total / seen,
                    "train_accuracy": correct / seen,
                    "test_loss": finite_or_none(test_loss),
                    "test_accuracy": test_acc,
                    "seconds": seconds,
                }
            )
            if report is not None and test_acc is not None:
                report(("epoch", strategy.name, seed, epoch, total / seen, test_acc, seconds))
        record["model"] = model
    except Exception as exc:  # noqa: BLE001 - a failed run is a result, not a crash
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
        log.warning("%s, seed %d failed: %s", strategy.name, seed, record["error"])
    return record


def routing_input(model, data):
    """The first test image and the busiest channel of its first conv → ReLU map."""
    x = data.x_test[:1].astype(model.layers[0].weight.data.dtype)
    fmap = model.layers[1].forward(model.layers[0].forward(x))[0]
    channel = int(np.argmax(fmap.reshape(len(fmap), -1).var(axis=1)))
    raw = data.x_test[0]
    raw = raw[0] if len(raw) == 1 else np.tensordot([0.2125, 0.7154, 0.0721], raw[:3], 1)
    if data.standardized:
        raw = raw * data.pixel_std + data.pixel_mean
    return {
        "image": np.asarray(raw, np.float64),
        "feature_map": fmap[channel].astype(np.float64),
        "channel": channel,
        "label": data.classes[int(data.y_test[0])],
    }
