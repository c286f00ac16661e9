"""The paired max-vs-mean experiment: train one small CNN per strategy per seed.

The design, and why:

* **One architecture.**  ``conv 3x3 → ReLU → pool → conv 3x3 → ReLU → pool
  → flatten → linear`` (:func:`build_model`); the pooling layers are the
  only thing that changes between strategies.
* **Paired seeds.**  For a given seed every strategy gets the same data
  split, the same initial weights (checked: a checksum of the initial
  parameters is recorded per run) and the same order of mini-batches.
  Differences between strategies on one seed are then differences due to
  pooling, and :func:`~cnnpool.experiments.stats.paired_comparison` can
  test them seed by seed.
* **Nothing is dropped.**  A run whose loss becomes NaN or infinite stops,
  is marked ``"diverged"`` with the epoch, and keeps its per-epoch record;
  a run that raises (e.g. a user's strategy with a bug) is marked
  ``"failed"`` with the error.  Summaries count both and leave them out of
  means and tests, saying so.

:func:`run_experiment` runs everything (seeds in parallel with joblib when
``jobs > 1``) and returns a plain dict, the content of ``results.json``;
:func:`write_outputs` writes ``results.json``, ``results.md``,
``curves.png`` and ``routing.png``.  The library never prints: progress
bars (tqdm, on stderr) appear only when ``progress=True`` (the CLI's
choice), one per run, also when seeds run in parallel, and messages go
through :mod:`logging`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import math
import os
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import __version__
from ..pooling import MaxPool2d, MeanPool2d, Pool2d

log = logging.getLogger("cnnpool.experiments")

__all__ = [
    "Settings",
    "Strategy",
    "resolve_strategy",
    "build_model",
    "load_dataset",
    "run_seed",
    "run_experiment",
    "summarize",
    "results_table",
    "write_outputs",
    "SCHEMA",
]

#: Identifies the layout of ``results.json``.
SCHEMA = "cnnpool-compare/1"

#: Short names for the built-in strategies.
BUILTIN = {"max": MaxPool2d, "mean": MeanPool2d, "avg": MeanPool2d}


# ------------------------------------------------------------------ settings
@dataclass
class Settings:
    """Everything that defines an experiment; stored whole in ``results.json``.

    The defaults are the ones ``cnnpool-compare`` runs with no arguments:
    chosen, by measurement on a 2-core machine, to finish in well under a
    minute while still giving several paired seeds.
    """

    dataset: str = "textures"
    pools: tuple = ("max", "mean")
    seeds: tuple = tuple(range(10))
    epochs: int = 6
    batch_size: int = 32
    lr: float = 0.003
    optimizer: str = "adam"
    momentum: float = 0.9
    channels: tuple = (8, 16)
    kernel_size: int = 2
    dtype: str = "float32"
    standardize: bool = True
    jobs: int = 1
    dataset_options: dict = field(default_factory=dict)

    def __post_init__(self):
        self.pools = tuple(self.pools)
        self.seeds = tuple(int(s) for s in self.seeds)
        self.channels = tuple(int(c) for c in self.channels)
        if self.dataset not in ("faces", "textures"):
            raise ValueError(f"dataset must be 'faces' or 'textures', got {self.dataset!r}")
        if not self.pools:
            raise ValueError("pools must name at least one pooling strategy")
        if len(set(self.pools)) != len(self.pools):
            raise ValueError(f"pools must not repeat a strategy, got {self.pools}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative ints, got {self.seeds}")
        for name in ("epochs", "batch_size", "jobs", "kernel_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if len(self.channels) != 2 or min(self.channels) < 1:
            raise ValueError(f"channels must be two positive ints, got {self.channels}")

    def to_dict(self):
        d = asdict(self)
        d["pools"] = [p if isinstance(p, str) else resolve_strategy(p).spec for p in self.pools]
        d["seeds"] = list(self.seeds)
        d["channels"] = list(self.channels)
        return d


# ---------------------------------------------------------------- strategies
@dataclass(frozen=True)
class Strategy:
    """A pooling strategy: ``spec`` as given, ``name`` for tables, the class.

    ``origin`` is the text a worker process resolves again to find the
    class (the spec, with a file path made absolute); ``None`` when the
    class was passed as an object.
    """

    spec: str
    name: str
    cls: type
    origin: str | None = None
    registered: bool = False

    def make(self, kernel_size, seed=None):
        """A fresh layer; ``seed`` reaches strategies that draw random numbers."""
        if self.registered:
            from ..pooling.registry import make_pool

            return make_pool(self.spec, kernel_size, seed=seed)
        return self.cls(kernel_size)


def resolve_strategy(spec):
    """Turn ``"max"``, ``"mean"``, ``"module:Class"`` or ``"path/file.py:Class"`` into a Strategy.

    A user's class must be a subclass of :class:`~cnnpool.Pool2d` whose
    constructor takes the kernel size as its first argument (as
    ``MaxPool2d(2)``).  A class may also be passed directly.  Modules are
    looked up on ``sys.path`` and in the current directory.

    Raises
    ------
    ValueError
        With a message saying what was wrong and what is accepted.
    """
    origin = None
    if isinstance(spec, Strategy):
        return spec
    if isinstance(spec, type):
        cls, text = spec, f"{spec.__module__}:{spec.__qualname__}"
    elif isinstance(spec, str) and spec in _registered_names():
        cls = type(_registry().make_pool(spec, 2, seed=0))
        return Strategy(spec, spec, cls, spec, registered=True)
    elif isinstance(spec, str) and spec in BUILTIN:
        return Strategy(spec, spec, BUILTIN[spec], spec)
    elif isinstance(spec, str) and ":" in spec:
        text = origin = spec
        module_name, _, attr = spec.rpartition(":")
        if _is_path(module_name):
            origin = f"{os.path.abspath(module_name)}:{attr}"
        if not module_name or not attr:
            raise ValueError(f"pool {spec!r}: expected 'module:Class'")
        module = _import_user_module(module_name, spec)
        cls = module
        for part in attr.split("."):
            cls = getattr(cls, part, None)
            if cls is None:
                raise ValueError(f"pool {spec!r}: module {module_name!r} has no {attr!r}")
    else:
        names = ", ".join(repr(n) for n in sorted(_registered_names() | set(BUILTIN)))
        raise ValueError(
            f"pool {spec!r}: use a short name ({names}) or a Pool2d subclass as "
            "'module:Class' (for example 'my_pooling:LpPool2d' or 'path/to/file.py:LpPool2d')"
        )
    if not (isinstance(cls, type) and issubclass(cls, Pool2d)):
        raise ValueError(
            f"pool {text!r} is {cls!r}, not a subclass of cnnpool.Pool2d: a pooling "
            "strategy subclasses Pool2d and implements pool(windows) and route(windows, pooled)"
        )
    if cls is Pool2d:
        raise ValueError(f"pool {text!r}: Pool2d itself is the abstract base; name a strategy")
    try:
        cls(2)
    except Exception as exc:  # noqa: BLE001 - the user's constructor may raise anything
        raise ValueError(
            f"pool {text!r}: could not build {cls.__name__}(2); a strategy used in the "
            f"comparison must take the kernel size as its first argument ({exc})"
        ) from exc
    name = getattr(cls, "strategy_name", None) or cls.__name__
    for short, builtin in BUILTIN.items():
        if cls is builtin:
            name = short
            break
    return Strategy(text, str(name), cls, origin)


def _registry():
    try:
        from ..pooling import registry
    except ImportError:  # an older cnnpool without the registry: built-ins only
        return None
    return registry


def _registered_names():
    reg = _registry()
    return set(reg.available()) if reg is not None else set()


def _is_path(module_name):
    return module_name.endswith(".py") or os.sep in module_name or "/" in module_name


def _import_user_module(module_name, spec):
    if _is_path(module_name):
        path = os.path.abspath(module_name)
        if not os.path.isfile(path):
            raise ValueError(f"pool {spec!r}: no such file {module_name!r}")
        mod_name = "_cnnpool_user_" + hashlib.sha1(path.encode()).hexdigest()[:12]
        if mod_name in sys.modules:
            return sys.modules[mod_name]
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[mod_name]
            raise ValueError(f"pool {spec!r}: importing {path!r} failed: {exc}") from exc
        return module
    added = False
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
        added = True
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"pool {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    finally:
        if added:
            sys.path.remove(os.getcwd())


# ------------------------------------------------------------------ the model
def build_model(pool_factory, image_shape, num_classes, channels=(8, 16), dtype=np.float32, seed=0):
    """The comparison CNN: conv → ReLU → pool → conv → ReLU → pool → flatten → linear.

    Parameters
    ----------
    pool_factory : callable
        Called twice, with no arguments, for the two pooling layers.
    image_shape : (C, H, W)
    num_classes : int
    channels : (int, int)
        Output channels of the two 3x3 convolutions (padding 1).
    dtype : float32 or float64
    seed : int
        Seeds the initial weights.  Layers with weights draw from one
        generator in order, so the weights do not depend on the pooling.

    Returns
    -------
    cnnpool.Sequential
    """
    import cnnpool as cp

    rng = np.random.default_rng(seed)
    c, h, w = image_shape
    c1, c2 = channels
    pool1, pool2 = pool_factory(), pool_factory()
    conv1 = cp.Conv2d(c, c1, 3, padding=1, dtype=dtype, rng=rng)
    _, _, h1, w1 = pool1.output_shape((1, c1, h, w))
    conv2 = cp.Conv2d(c1, c2, 3, padding=1, dtype=dtype, rng=rng)
    _, _, h2, w2 = pool2.output_shape((1, c2, h1, w1))
    linear = cp.Linear(c2 * h2 * w2, num_classes, dtype=dtype, rng=rng)
    return cp.Sequential(conv1, cp.ReLU(), pool1, conv2, cp.ReLU(), pool2, cp.Flatten(), linear)


def _make_optimizer(settings, params):
    import cnnpool as cp

    if settings.optimizer == "adam":
        return cp.Adam(params, lr=settings.lr)
    return cp.SGD(params, lr=settings.lr, momentum=settings.momentum)


def _checksum(params):
    h = hashlib.sha1()
    for p in params:
        h.update(np.ascontiguousarray(p.data).tobytes())
    return h.hexdigest()[:16]


def load_dataset(settings, seed):
    """The dataset of ``settings`` for one seed (the split depends on the seed)."""
    from ..datasets import load

    options = dict(settings.dataset_options)
    options.setdefault("standardize", settings.standardize)
    return load(settings.dataset, seed=seed, **options)


# ------------------------------------------------------------------- one seed
def _evaluate(model, loss_fn, x, y, batch=256):
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


def _train_one(settings, strategy, data, seed, report=None):
    """Train one strategy on one seed's data; return its record (never raises)."""
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
    }
    try:
        x_train = data.x_train.astype(dtype, copy=False)
        x_test = data.x_test.astype(dtype, copy=False)
        made = iter(range(2))
        model = build_model(
            lambda: strategy.make(settings.kernel_size, seed=2 * seed + next(made)),
            data.image_shape,
            data.num_classes,
            settings.channels,
            dtype,
            seed,
        )
        params = model.parameters()
        # The shared weights (convolutions and linear); a learnable strategy's own
        # parameters, if any, are not shared with the other strategies.
        record["init_checksum"] = _checksum(
            [
                p
                for layer in model.layers
                if not isinstance(layer, Pool2d)
                for p in layer.parameters()
            ]
        )
        record["parameters"] = int(sum(p.data.size for p in params))
        opt = _make_optimizer(settings, params)
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
                log.warning(
                    "%s, seed %d: loss became non-finite in epoch %d (diverged)",
                    strategy.name,
                    seed,
                    epoch,
                )
                break
            test_loss, test_acc = _evaluate(model, loss_fn, x_test, data.y_test)
            record["epochs"].append(
                {
                    "epoch": epoch,
                    "train_loss": total / seen,
                    "train_accuracy": correct / seen,
                    "test_loss": _finite_or_none(test_loss),
                    "test_accuracy": test_acc,
                    "seconds": seconds,
                }
            )
            if report is not None:
                report(("epoch", strategy.name, seed, epoch, total / seen, test_acc))
        record["model"] = model
    except Exception as exc:  # noqa: BLE001 - a failed run is a result, not a crash
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
        log.warning("%s, seed %d failed: %s", strategy.name, seed, record["error"])
    return record


def _routing_input(model, data):
    """The first test image and the busiest channel of its first conv → ReLU map."""
    x = data.x_test[:1].astype(model.layers[0].weight.data.dtype)
    fmap = model.layers[1].forward(model.layers[0].forward(x))[0]
    channel = int(np.argmax(fmap.reshape(len(fmap), -1).var(axis=1)))
    raw = data.x_test[0, 0]
    if data.standardized:
        raw = raw * data.pixel_std + data.pixel_mean
    return {
        "image": np.asarray(raw, np.float64),
        "feature_map": fmap[channel].astype(np.float64),
        "channel": channel,
        "label": data.classes[int(data.y_test[0])],
    }


def run_seed(settings, seed, strategies=None, report=None):
    """Train every strategy on one seed: same data, weights and batch order.

    Parameters
    ----------
    settings : Settings
    seed : int
    strategies : list, optional
        Strategy specs or :class:`Strategy` objects (default ``settings.pools``).
    report : callable, optional
        Called with a small tuple at the start of each run and after each
        epoch (what the progress bars show); must not raise.

    Returns
    -------
    dict
        ``{"seed", "runs": [record per strategy], "routing": {...} or None,
        "dataset": {...}}``.  Records hold per-epoch metrics; models are not
        returned (they stay in the worker).
    """
    strategies = [resolve_strategy(s) for s in (strategies or settings.pools)]
    data = load_dataset(settings, seed)
    runs, routing = [], None
    for strategy in strategies:
        if report is not None:
            report(("start", strategy.name, seed, settings.epochs))
        record = _train_one(settings, strategy, data, seed, report)
        if report is not None:
            report(("end", strategy.name, seed, record["status"]))
        model = record.pop("model", None)
        if routing is None and model is not None and record["status"] == "ok":
            try:
                routing = _routing_input(model, data)
                routing["strategy"] = strategy.name
            except Exception as exc:  # noqa: BLE001 - a picture is not worth a crash
                log.warning("routing picture input failed: %s", exc)
        runs.append(record)
    checks = {r["init_checksum"] for r in runs if r["init_checksum"]}
    if len(checks) > 1:  # pragma: no cover - would mean the design is broken
        log.error("seed %d: strategies started from different weights: %s", seed, checks)
    return {
        "seed": seed,
        "runs": runs,
        "routing": routing,
        "dataset": {
            "name": data.name,
            "classes": list(data.classes),
            "train_size": len(data.x_train),
            "test_size": len(data.x_test),
            "image_shape": list(data.image_shape),
            "standardized": data.standardized,
            "train_class_counts": np.bincount(data.y_train).tolist(),
            "test_class_counts": np.bincount(data.y_test).tolist(),
        },
        "same_initial_weights": len(checks) <= 1,
    }


# --------------------------------------------------------------- experiment
def run_experiment(settings=None, progress=False, **overrides):
    """Run the whole comparison and return the ``results.json`` content (a dict).

    Parameters
    ----------
    settings : Settings, optional
        Defaults to ``Settings(**overrides)``.
    progress : bool
        Show a tqdm bar per run (strategy and seed), on stderr.
    **overrides
        Fields of :class:`Settings`, when ``settings`` is not given.
    """
    if settings is None:
        settings = Settings(**overrides)
    elif overrides:
        raise TypeError("pass either settings or keyword overrides, not both")
    strategies = [resolve_strategy(p) for p in settings.pools]
    names = [s.name for s in strategies]
    if len(set(names)) != len(names):
        raise ValueError(f"two strategies share a name: {names}")
    started = time.time()
    t0 = time.perf_counter()
    jobs = min(settings.jobs, len(settings.seeds))
    bars = _Bars() if progress else None
    try:
        if jobs == 1:
            per_seed = [run_seed(settings, s, strategies, bars) for s in settings.seeds]
        else:
            per_seed = _run_parallel(settings, strategies, jobs, bars)
    finally:
        if bars is not None:
            bars.close()
    wall = time.perf_counter() - t0
    per_seed.sort(key=lambda r: settings.seeds.index(r["seed"]))

    runs = [r for s in per_seed for r in s["runs"]]
    routing = next((s["routing"] for s in per_seed if s["routing"] is not None), None)
    results = {
        "schema": SCHEMA,
        "settings": settings.to_dict(),
        "strategies": [
            {"name": s.name, "spec": s.spec, "class": f"{s.cls.__module__}.{s.cls.__qualname__}"}
            for s in strategies
        ],
        "dataset": per_seed[0]["dataset"],
        "architecture": _architecture(settings, strategies[0], per_seed[0]["dataset"]),
        "versions": _versions(),
        "timing": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "wall_seconds": wall,
            "jobs": jobs,
        },
        "paired_design": {
            "same_initial_weights_per_seed": all(s["same_initial_weights"] for s in per_seed),
            "same_batch_order_per_seed": True,
            "same_data_split_per_seed": True,
        },
        "runs": [_jsonable_run(r) for r in runs],
    }
    results.update(summarize(results))
    results["_routing"] = routing  # arrays for routing.png; not written to JSON
    return results


def _run_parallel(settings, strategies, jobs, bars):
    """Seeds in joblib workers, each worker single-threaded.

    Inside a worker the compiled kernels and BLAS get one thread each
    (``inner_max_num_threads=1``): the seeds are the parallelism, and
    several threads per worker on top would only fight over the cores.
    Under a Dask or Ray joblib backend (``joblib.parallel_config``) the
    same code runs on a cluster (progress is then shown per seed).
    """
    from joblib import Parallel, delayed, parallel_config

    # Workers re-import strategies by name; a class passed as an object travels pickled.
    sendable = [s.origin or s for s in strategies]
    with _single_threaded_workers(parallel_config) as local:
        queue = listener = manager = None
        if bars is not None and local:
            import multiprocessing
            import threading

            manager = multiprocessing.Manager()
            queue = manager.Queue()
            listener = threading.Thread(target=_listen, args=(queue, bars), daemon=True)
            listener.start()
        report = queue.put if queue is not None else None
        tasks = (delayed(_seed_task)(settings, seed, sendable, report) for seed in settings.seeds)
        out = []
        try:
            parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
            for result in parallel(tasks):
                out.append(result)
                if bars is not None and queue is None:  # no live channel: replay the run
                    for r in result["runs"]:
                        key = (r["strategy"], result["seed"])
                        bars(("start", *key, settings.epochs))
                        for e in r["epochs"]:
                            if e["train_loss"] is not None:
                                bars(
                                    ("epoch", *key, e["epoch"], e["train_loss"], e["test_accuracy"])
                                )
                        bars(("end", *key, r["status"]))
        finally:
            if queue is not None:
                queue.put(None)
                listener.join(timeout=5)
                manager.shutdown()
    return out


def _listen(queue, bars):
    while True:
        try:
            msg = queue.get()
        except Exception:  # noqa: BLE001 - the manager went away: stop quietly
            return
        if msg is None:
            return
        bars(msg)


class _Bars:
    """One tqdm bar per run (strategy, seed), fed by run_seed's report tuples."""

    def __init__(self):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._bars = {}

    def __call__(self, msg):
        kind, name, seed = msg[:3]
        key = (name, seed)
        if kind == "start":
            self._bars[key] = self._tqdm(
                total=msg[3],
                desc=f"{name:>10} seed {seed:<3}",
                unit="epoch",
                position=len(self._bars),
                leave=True,
                dynamic_ncols=True,
            )
        elif kind == "epoch" and key in self._bars:
            _, _, _, _, loss, acc = msg
            bar = self._bars[key]
            bar.set_postfix_str(f"loss {loss:.3f}, test acc {100 * acc:.1f}%", refresh=False)
            bar.update(1)
        elif kind == "end" and key in self._bars:
            bar = self._bars[key]
            if msg[3] != "ok":
                bar.set_postfix_str(msg[3].upper())
            bar.refresh()

    def close(self):
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


@contextlib.contextmanager
def _single_threaded_workers(parallel_config):
    """One thread per loky worker, unless the user chose another joblib backend.

    Yields True when the workers are local loky processes (so that a
    multiprocessing queue can carry progress back), False otherwise.
    """
    local = False
    try:
        from joblib.parallel import get_active_backend

        backend, _ = get_active_backend()
        local = type(backend).__name__ == "LokyBackend"
    except Exception:  # noqa: BLE001 - joblib internals moved: just run as configured
        pass
    if local:
        with parallel_config(backend="loky", inner_max_num_threads=1):
            yield True
    else:
        yield False


def _seed_task(settings, seed, strategies, report=None):
    return run_seed(settings, seed, [resolve_strategy(s) for s in strategies], report)


def _architecture(settings, strategy, dataset):
    c1, c2 = settings.channels
    k = settings.kernel_size
    return {
        "description": f"conv3x3({c1}) → ReLU → pool{k}x{k} → conv3x3({c2}) → ReLU → "
        f"pool{k}x{k} → flatten → linear({len(dataset['classes'])})",
        "pool": "the strategy under comparison",
        "kernel_size": k,
        "stride": k,
        "conv_padding": 1,
    }


def _versions():
    versions = {
        "cnnpool": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    for mod in ("scipy", "skimage", "matplotlib", "joblib", "tqdm"):
        try:
            versions[mod] = importlib.import_module(mod).__version__
        except Exception:  # noqa: BLE001 - optional
            versions[mod] = None
    return versions


def _finite_or_none(x):
    return float(x) if x is not None and math.isfinite(x) else None


def _jsonable_run(record):
    r = dict(record)
    r.pop("model", None)
    epochs = r["epochs"]
    finished = [e for e in epochs if e["test_accuracy"] is not None]
    ok = r["status"] == "ok" and len(finished) == len(epochs) and epochs
    r["final_test_accuracy"] = finished[-1]["test_accuracy"] if ok else None
    r["final_train_loss"] = _finite_or_none(finished[-1]["train_loss"]) if ok else None
    r["final_test_loss"] = _finite_or_none(finished[-1]["test_loss"]) if ok else None
    secs = [e["seconds"] for e in epochs if e["train_loss"] is not None]
    r["seconds_per_epoch"] = float(np.mean(secs)) if secs else None
    r["total_seconds"] = float(sum(e["seconds"] for e in epochs))
    return r


# --------------------------------------------------------------- statistics
def summarize(results):
    """Per-strategy intervals and paired comparisons from ``results["runs"]``.

    Returns ``{"summary": {...}, "comparisons": [...]}`` (strict-JSON values).
    """
    from .stats import mean_ci, paired_comparison

    seeds = results["settings"]["seeds"]
    names = [s["name"] for s in results["strategies"]]
    by = {(r["strategy"], r["seed"]): r for r in results["runs"]}

    def column(name, key):
        return np.array(
            [_nan(by[(name, s)].get(key)) if (name, s) in by else np.nan for s in seeds],
            dtype=np.float64,
        )

    summary = {}
    for name in names:
        runs = [by[(name, s)] for s in seeds if (name, s) in by]
        summary[name] = {
            "test_accuracy": mean_ci(column(name, "final_test_accuracy")).to_dict(),
            "final_train_loss": mean_ci(column(name, "final_train_loss")).to_dict(),
            "final_test_loss": mean_ci(column(name, "final_test_loss")).to_dict(),
            "seconds_per_epoch": mean_ci(column(name, "seconds_per_epoch")).to_dict(),
            "runs": len(runs),
            "diverged": sum(r["status"] == "diverged" for r in runs),
            "failed": sum(r["status"] == "failed" for r in runs),
            "diverged_seeds": [r["seed"] for r in runs if r["status"] == "diverged"],
            "failed_seeds": [r["seed"] for r in runs if r["status"] == "failed"],
        }
    comparisons = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            acc = paired_comparison(
                column(a, "final_test_accuracy"), column(b, "final_test_accuracy"), a, b
            )
            loss = paired_comparison(
                column(a, "final_train_loss"),
                column(b, "final_train_loss"),
                a,
                b,
                metric="final training loss",
                scale=1.0,
                unit="",
                higher_is_better=False,
                digits=3,
            )
            comparisons.append(
                {"a": a, "b": b, "test_accuracy": acc.to_dict(), "final_train_loss": loss.to_dict()}
            )
    return {"summary": summary, "comparisons": comparisons}


def _nan(x):
    return np.nan if x is None else float(x)


def _iv(d, scale=1.0, digits=2, unit=""):
    from .stats import Interval, format_interval

    fields = {k: (np.nan if v is None else v) for k, v in d.items()}
    return format_interval(Interval(**fields), scale, digits, unit)


def results_table(results):
    """The results as Markdown: settings line, per-strategy table, paired comparisons."""
    s = results["settings"]
    ds = results["dataset"]
    lines = [
        f"# Pooling comparison: {', '.join(x['name'] for x in results['strategies'])} "
        f"on {ds['name']}",
        "",
        f"{len(s['seeds'])} paired seeds ({_seed_text(s['seeds'])}), {s['epochs']} epochs, "
        f"batch {s['batch_size']}, {s['optimizer']} lr {s['lr']:g}; "
        f"{ds['train_size']} training / {ds['test_size']} test images "
        f"{'x'.join(str(v) for v in ds['image_shape'][1:])}, "
        f"{len(ds['classes'])} classes (chance {100 / len(ds['classes']):.0f}%).",
        f"Model: {results['architecture']['description']}. Same initial weights, data split "
        f"and batch order for every strategy on a seed.",
        "",
        "| strategy | test accuracy (%) | final training loss | test loss | time / epoch (s) "
        "| runs | diverged | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results["summary"].items():
        lines.append(
            f"| {name} | {_iv(row['test_accuracy'], 100, 1)} "
            f"| {_iv(row['final_train_loss'], 1, 3)} | {_iv(row['final_test_loss'], 1, 3)} "
            f"| {_iv(row['seconds_per_epoch'], 1, 3)} | {row['runs']} "
            f"| {_count_text(row['diverged'], row['diverged_seeds'])} "
            f"| {_count_text(row['failed'], row['failed_seeds'])} |"
        )
    lines += [
        "",
        "Values are mean ± 95% confidence interval over seeds (Student t); diverged or "
        "failed runs are counted above and left out of the means. Final training loss: "
        "mean cross-entropy over the last epoch's mini-batches. Time per epoch: wall-clock "
        f"seconds of training (no evaluation), {results['timing']['jobs']} seed(s) at a time.",
        "",
    ]
    if results["comparisons"]:
        lines.append("## Paired differences")
        lines.append("")
        for c in results["comparisons"]:
            lines.append(
                f"- **{c['a']} − {c['b']}, test accuracy:** {c['test_accuracy']['summary']}"
            )
            lines.append(
                f"- **{c['a']} − {c['b']}, final training loss:** "
                f"{c['final_train_loss']['summary']}"
            )
        lines.append("")
    failed = [r for r in results["runs"] if r["status"] == "failed"]
    if failed:
        lines.append("## Failed runs")
        lines.append("")
        for r in failed:
            lines.append(f"- {r['strategy']}, seed {r['seed']}: `{r['error']}`")
        lines.append("")
    lines += [
        "![training loss and test accuracy per epoch](curves.png)",
        "",
        "![gradient routing through max and mean pooling](routing.png)",
        "",
    ]
    return "\n".join(lines)


def _seed_text(seeds):
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(str(x) for x in seeds)


def _count_text(n, seeds):
    return "0" if not n else f"{n} (seed {', '.join(str(x) for x in seeds)})"


# ------------------------------------------------------------------ outputs
def write_outputs(results, out_dir):
    """Write results.json, results.md, curves.png and routing.png into ``out_dir``.

    Returns a dict of the paths written.  The PNGs need matplotlib.
    """
    from .plots import plot_curves, plot_routing

    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    clean = {k: v for k, v in results.items() if not k.startswith("_")}
    paths["json"] = os.path.join(out_dir, "results.json")
    _atomic_write(paths["json"], json.dumps(_strict(clean), indent=1, allow_nan=False))
    paths["md"] = os.path.join(out_dir, "results.md")
    _atomic_write(paths["md"], results_table(results) + "\n")

    names = [s["name"] for s in results["strategies"]]
    seeds = results["settings"]["seeds"]
    epochs = results["settings"]["epochs"]
    curves = {}
    for name in names:
        loss = np.full((len(seeds), epochs), np.nan)
        acc = np.full((len(seeds), epochs), np.nan)
        diverged = []
        for i, seed in enumerate(seeds):
            run = next(
                (r for r in results["runs"] if r["strategy"] == name and r["seed"] == seed), None
            )
            if run is None:
                continue
            diverged.append(run["status"] != "ok")
            for e in run["epochs"]:
                loss[i, e["epoch"] - 1] = _nan(e["train_loss"])
                acc[i, e["epoch"] - 1] = _nan(e["test_accuracy"])
        curves[name] = {"train_loss": loss, "test_accuracy": acc, "diverged": diverged}
    ds = results["dataset"]
    title = (
        f"{ds['name']}: {len(seeds)} seeds, {epochs} epochs "
        f"({results['settings']['optimizer']}, lr {results['settings']['lr']:g})"
    )
    paths["curves"] = plot_curves(
        curves, os.path.join(out_dir, "curves.png"), title=title, chance=1 / len(ds["classes"])
    )
    routing = results.get("_routing")
    paths["routing"] = os.path.join(out_dir, "routing.png")
    if routing is not None:
        plot_routing(
            routing["feature_map"],
            paths["routing"],
            image=routing["image"],
            kernel_size=results["settings"]["kernel_size"],
            feature_label=f"conv1 → ReLU, channel {routing['channel']}",
            title=f"Where the gradient goes: one {ds['name']} test image "
            f"({routing['label']}), first layer of the trained "
            f"{routing['strategy']}-pooling model",
        )
    else:  # every run failed: still show the routing of the raw image
        from ..datasets import load

        img = load(ds["name"], seed=seeds[0]).x_test[0, 0]
        plot_routing(
            img,
            paths["routing"],
            kernel_size=results["settings"]["kernel_size"],
            feature_label="input image (no trained model)",
            title="Where the gradient goes (no run finished)",
        )
    return paths


def _atomic_write(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _strict(obj):
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _strict(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj
