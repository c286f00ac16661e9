"""Running the comparison: every strategy on every seed, seeds in joblib workers.

For a given seed every strategy gets the same data split, the same initial
weights (checked: a checksum of the initial parameters is recorded per run)
and the same order of mini-batches, so that differences between strategies
on one seed are due to pooling and
:func:`~cnnpool.experiments.stats.paired_comparison` can test them seed by
seed.  :func:`run_experiment` returns a plain dict, the content of
``results.json``.  The library never prints: progress bars appear only when
``progress=True`` (the CLI's choice), and messages go through
:mod:`logging`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import platform
import time

import numpy as np

from .. import __version__
from .arch import describe
from .data import dataset_info, load_dataset
from .progress import ProgressBars
from .settings import Settings
from .strategies import resolve_strategies, resolve_strategy
from .summary import run_summary, summarize
from .training import routing_input, train_one

log = logging.getLogger(__name__)

__all__ = ["SCHEMA", "run_seed", "run_experiment"]

#: Identifies the layout of ``results.json``.
SCHEMA = "cnnpool-compare/1"


def run_seed(settings, seed, strategies=None, report=None, lrs=None):
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
    lrs : dict, optional
        A learning rate per strategy name (``--tune-lr``'s choice); others
        train at ``settings.lr``.

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
        lr = (lrs or {}).get(strategy.name)
        record = train_one(settings, strategy, data, seed, report, lr=lr)
        if report is not None:
            report(("end", strategy.name, seed, record["status"]))
        model = record.pop("model", None)
        if routing is None and model is not None and record["status"] == "ok":
            try:
                routing = routing_input(model, data)
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
        "dataset": dataset_info(data),
        "same_initial_weights": len(checks) <= 1,
    }


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
    strategies = resolve_strategies(settings.pools)
    started = time.time()
    t0 = time.perf_counter()
    jobs = min(settings.jobs, len(settings.seeds))
    tuning = lrs = None
    if settings.tune_lr:  # before the final runs, on validation splits of the training data
        from .tuning import tune_learning_rates

        tuning = tune_learning_rates(settings, strategies, jobs, progress)
        lrs = {name: c["lr"] for name, c in tuning["chosen"].items()}
    bars = ProgressBars() if progress else None
    try:
        if jobs == 1:
            per_seed = [run_seed(settings, s, strategies, bars, lrs) for s in settings.seeds]
        else:
            per_seed = _run_parallel(settings, strategies, jobs, bars, lrs)
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
            {
                "name": s.name,
                "spec": s.spec,
                "class": f"{s.cls.__module__}.{s.cls.__qualname__}",
                "lr": (lrs or {}).get(s.name, settings.lr),
            }
            for s in strategies
        ],
        "dataset": per_seed[0]["dataset"],
        "architecture": describe(settings, len(per_seed[0]["dataset"]["classes"])),
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
        "runs": [run_summary(r) for r in runs],
    }
    if tuning is not None:
        results["tuning"] = tuning
    results.update(summarize(results))
    results["_routing"] = routing  # arrays for routing.png; not written to JSON
    return results


def _run_parallel(settings, strategies, jobs, bars, lrs=None):
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
    with single_threaded_workers(parallel_config) as local:
        queue = listener = manager = None
        if bars is not None and local:
            import multiprocessing
            import threading

            manager = multiprocessing.Manager()
            queue = manager.Queue()
            listener = threading.Thread(target=_listen, args=(queue, bars), daemon=True)
            listener.start()
        report = queue.put if queue is not None else None
        tasks = (
            delayed(_seed_task)(settings, seed, sendable, report, lrs) for seed in settings.seeds
        )
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


@contextlib.contextmanager
def single_threaded_workers(parallel_config):
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


def _seed_task(settings, seed, strategies, report=None, lrs=None):
    return run_seed(settings, seed, [resolve_strategy(s) for s in strategies], report, lrs)


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
