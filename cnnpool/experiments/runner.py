"""Running the comparison: every strategy on every seed, seeds in joblib workers.

For a given seed every strategy gets the same data split, the same initial
weights (checked: a checksum of the initial parameters is recorded per run)
and the same order of mini-batches, so that differences between strategies
on one seed are due to pooling and
:func:`~cnnpool.experiments.stats.paired_comparison` can test them seed by
seed.  :func:`run_experiment` returns a plain dict, the content of
``results.json``.

Given a ``store`` (a :class:`~cnnpool.experiments.store.RunStore`, i.e. the
``--out`` folder), every run is written to ``OUT/runs/`` the moment it
finishes, and ``resume=True`` trains only the runs that are missing.  Every
run record goes through its JSON text before it enters the results, so a
resumed sweep's results are the same, bit for bit, as an uninterrupted one.

The library never prints: progress appears only when ``progress`` is true
(the CLI's choice), and messages go through :mod:`logging`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import platform
import signal
import sys
import threading
import time

import numpy as np

from .. import __version__
from .arch import describe
from .data import dataset_info, load_dataset
from .settings import Settings
from .store import RunStore, jsonable, settings_hash
from .strategies import resolve_strategies, resolve_strategy
from .summary import run_summary, summarize
from .training import routing_input, train_one

log = logging.getLogger(__name__)

__all__ = ["SCHEMA", "run_seed", "run_experiment", "assemble", "check_routing", "routing_routes"]

#: Identifies the layout of ``results.json``.
SCHEMA = "cnnpool-compare/1"


def run_seed(settings, seed, strategies=None, report=None, lrs=None, *, save_models=False):
    """Train every strategy on one seed: same data, weights and batch order.

    Parameters
    ----------
    settings : Settings
    seed : int
    strategies : list, optional
        Strategy specs or :class:`Strategy` objects (default ``settings.pools``;
        a resumed sweep passes the ones still missing on this seed).
    report : callable, optional
        Called with a small tuple at the start of each run, after each epoch
        and at the end of each run (the end message carries the run's
        record); what the progress bars show and how finished runs reach
        the run store.  Must not raise.
    lrs : dict, optional
        A learning rate per strategy name (``--tune-lr``'s choice); others
        train at ``settings.lr``.
    save_models : bool
        Put each trained network, as the bytes of its ``.npz`` file
        (:meth:`cnnpool.Sequential.save`), in its record as ``"model_npz"``.

    Returns
    -------
    dict
        ``{"seed", "runs": [record per strategy], "dataset": {...},
        "same_initial_weights"}``.  The first strategy of
        ``settings.pools`` carries, when it finished, the input of the
        routing picture (``"routing_input"``); models stay in the worker.
    """
    strategies = [resolve_strategy(s) for s in (strategies or settings.pools)]
    first = resolve_strategy(settings.pools[0]).name
    data = load_dataset(settings, seed)
    runs = []
    for strategy in strategies:
        if report is not None:
            report(("start", strategy.name, seed, settings.epochs))
        lr = (lrs or {}).get(strategy.name)
        record = train_one(settings, strategy, data, seed, report, lr=lr)
        model = record.pop("model", None)
        record["dataset"] = dataset_info(data)
        if model is not None and record["status"] == "ok":
            if strategy.name == first:
                try:
                    record["routing_input"] = routing_input(model, data)
                except Exception as exc:  # noqa: BLE001 - a picture is not worth a crash
                    log.warning("routing picture input failed: %s", exc)
            if save_models:
                record["model_npz"] = _model_bytes(model)
        if report is not None:
            report(("end", strategy.name, seed, record["status"], record))
        runs.append(record)
    checks = {r["init_checksum"] for r in runs if r["init_checksum"]}
    if len(checks) > 1:  # pragma: no cover - would mean the design is broken
        log.error("seed %d: strategies started from different weights: %s", seed, checks)
    return {
        "seed": seed,
        "runs": runs,
        "dataset": dataset_info(data),
        "same_initial_weights": len(checks) <= 1,
    }


def _model_bytes(model):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        model.save(path)
        with open(path, "rb") as fh:
            return fh.read()


def run_experiment(
    settings=None,
    progress=False,
    *,
    store=None,
    resume=False,
    save_models=False,
    routing=None,
    **overrides,
):
    """Run the whole comparison and return the ``results.json`` content (a dict).

    Parameters
    ----------
    settings : Settings, optional
        Defaults to ``Settings(**overrides)``.
    progress : bool or callable
        True: show progress (one overall bar with the runs in flight in a
        terminal, widget bars in Jupyter, a line per finished run in a log
        file), on stderr.  A callable receives the raw progress tuples.
    store : RunStore or str, optional
        The sweep folder (``--out``): every finished run is written to
        ``store/runs/`` at once.  Without it nothing is written.
    resume : bool
        With ``store``: keep the runs it already holds (after checking that
        they were made with the same settings, see
        :meth:`RunStore.check_same`) and train only the missing ones.
    save_models : bool
        With ``store``: keep each trained network in ``store/models/``.
    routing : sequence of two str, optional
        The strategies ``routing.png`` compares (default: the first two).
    **overrides
        Fields of :class:`Settings`, when ``settings`` is not given.

    Raises
    ------
    KeyboardInterrupt
        Passed on after the workers are stopped; with a ``store`` every run
        finished so far is on disk.
    """
    if settings is None:
        settings = Settings(**overrides)
    elif overrides:
        raise TypeError("pass either settings or keyword overrides, not both")
    strategies = resolve_strategies(settings.pools)
    names = [s.name for s in strategies]
    if routing is not None:
        routing = check_routing(routing, names)
    if store is not None and not isinstance(store, RunStore):
        store = RunStore(store)
    if save_models and store is None:
        raise ValueError("save_models=True needs a store (the folder to keep the models in)")

    done = {}
    if store is not None:
        if resume and store.exists():
            store.check_same(settings)
            done = store.load_runs(names, settings.seeds)
        elif store.count_runs():
            raise ValueError(
                f"{store.runs_dir} already holds {store.count_runs()} runs; pass resume=True "
                "to continue that sweep, or use another folder"
            )
        else:
            store.start(settings)
    todo = [
        (seed, [s for s in strategies if (s.name, seed) not in done]) for seed in settings.seeds
    ]
    todo = [(seed, missing) for seed, missing in todo if missing]
    n_todo = sum(len(m) for _, m in todo)

    records = dict(done)
    lock = threading.Lock()

    def keep(record):
        """A finished run reaches the main process: to JSON, to disk, into the results."""
        key = (record["strategy"], record["seed"])
        with lock:
            if key in records:  # stored before, or brought by both the queue and the seed
                return
            record = dict(record)
            model = record.pop("model_npz", None)
            clean = json.loads(json.dumps(jsonable(run_summary(record)), allow_nan=False))
            records[key] = clean
            if store is not None:
                store.save_run(clean, model)

    started = time.time()
    t0 = time.perf_counter()
    jobs = max(1, min(settings.jobs, len(todo)))
    tuning = lrs = None
    if settings.tune_lr:  # before the final runs, on validation splits of the training data
        tuning = store.read_tuning() if store is not None and resume else None
        if tuning is None:  # a resumed sweep does not search again
            from .tuning import tune_learning_rates

            bar = progress is True and sys.stderr.isatty()  # the search's own tqdm bar
            tuning = tune_learning_rates(
                settings, strategies, min(settings.jobs, len(settings.seeds)), bar
            )
            tuning = json.loads(json.dumps(jsonable(tuning), allow_nan=False))
            if store is not None:
                store.save_tuning(tuning)
        lrs = {name: c["lr"] for name, c in tuning["chosen"].items()}
    bars = _progress(progress, n_todo, settings.epochs, jobs)
    channel = _Channel(bars, keep)
    per_seed = []
    try:
        if todo and jobs == 1:
            for seed, missing in todo:
                per_seed.append(
                    run_seed(settings, seed, missing, channel, lrs, save_models=save_models)
                )
        elif todo:
            per_seed = _run_parallel(settings, todo, jobs, channel, save_models, lrs)
        for result in per_seed:
            for r in result["runs"]:
                keep(r)
    finally:
        if bars is not None and hasattr(bars, "close"):
            bars.close()
    wall = time.perf_counter() - t0
    return assemble(
        settings,
        strategies,
        records,
        timing={
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "wall_seconds": wall,
            "jobs": jobs,
            "runs_trained": n_todo,
            "runs_resumed": len(records) - n_todo,
        },
        routing=routing,
        lrs=lrs,
        tuning=tuning,
    )


def check_routing(routing, names):
    """The two strategies ``routing.png`` compares: given ones checked, else the first two."""
    if routing is None:
        return list(names[:2])
    routing = [r.strip() for r in (routing.split(",") if isinstance(routing, str) else routing)]
    if len(routing) != 2 or routing[0] == routing[1]:
        raise ValueError(f"routing must name two different strategies, got {routing}")
    unknown = [r for r in routing if r not in names]
    if unknown:
        raise ValueError(
            f"routing names {', '.join(unknown)}, which did not run; the strategies are "
            f"{', '.join(names)}"
        )
    return routing


def assemble(settings, strategies, records, timing, routing=None, lrs=None, tuning=None):
    """The ``results.json`` dict from the finished run records (JSON-clean dicts)."""
    names = [s.name for s in strategies]
    seeds = list(settings.seeds)
    ordered = [records[(n, s)] for s in seeds for n in names if (n, s) in records]
    dataset = next((r["dataset"] for r in ordered if r.get("dataset")), None)
    if dataset is None:  # no run recorded its data set: load the first seed's
        dataset = dataset_info(load_dataset(settings, seeds[0]))
    same = True
    for seed in seeds:
        checks = {r["init_checksum"] for r in ordered if r["seed"] == seed and r["init_checksum"]}
        same = same and len(checks) <= 1
    runs = [{k: v for k, v in r.items() if k not in ("dataset", "routing_input")} for r in ordered]
    results = {
        "schema": SCHEMA,
        "settings": settings.to_dict(),
        "settings_hash": settings_hash(settings),
        "strategies": [
            {
                "name": s.name,
                "spec": s.spec,
                "class": f"{s.cls.__module__}.{s.cls.__qualname__}",
                "lr": (lrs or {}).get(s.name, settings.lr),
            }
            for s in strategies
        ],
        "dataset": dataset,
        "architecture": describe(settings, len(dataset["classes"])),
        "versions": _versions(),
        "timing": timing,
        "paired_design": {
            "same_initial_weights_per_seed": same,
            "same_batch_order_per_seed": True,
            "same_data_split_per_seed": True,
        },
        "runs": runs,
    }
    if tuning is not None:
        results["tuning"] = tuning
    if tuning is not None:
        results["tuning"] = tuning
    results.update(summarize(results))
    source = next((r for r in ordered if r.get("routing_input")), None)
    results["routing"] = None
    if source is not None:
        rin = dict(source["routing_input"])
        rin["strategy"] = source["strategy"]
        rin["seed"] = source["seed"]
        shown = list(strategies)
        if len(names) < 2:  # one strategy ran: show it beside max (or mean)
            shown.append(resolve_strategy("mean" if names[0] == "max" else "max"))
        rin["routes"] = routing_routes(
            rin["feature_map"], shown, settings.kernel_size, seed=source["seed"]
        )
        compare = check_routing(routing, [s.name for s in shown])
        rin["compare"] = [n for n in compare if n in rin["routes"]]
        results["routing"] = jsonable(rin)
    return results


def routing_routes(feature_map, strategies, kernel_size, seed=0):
    """Where each strategy routes the gradient: ``backward(ones)`` of a fresh layer.

    Parameters
    ----------
    feature_map : array_like, shape (H, W)
    strategies : list of Strategy
    kernel_size : int
    seed : int
        Reaches strategies that draw random numbers (one draw is shown).

    Returns
    -------
    dict
        ``{name: route (H, W) as nested lists}``; a strategy whose layer
        fails on the map is left out (with a warning).
    """
    x = np.asarray(feature_map, dtype=np.float64)[None, None]
    routes = {}
    for s in strategies:
        try:
            layer = s.make(kernel_size, seed=seed)
            y = layer.forward(x.copy())
            routes[s.name] = np.asarray(layer.backward(np.ones_like(y)))[0, 0].tolist()
        except Exception as exc:  # noqa: BLE001 - a picture is not worth a crash
            log.warning("routing of %s failed: %s", s.name, exc)
    return routes


class _Channel:
    """What run_seed reports, split: finished runs to ``keep``, the rest to the bars."""

    def __init__(self, bars, keep):
        self.bars, self.keep = bars, keep

    def __call__(self, msg):
        if msg[0] == "end" and len(msg) > 4:
            self.keep(msg[4])
        if self.bars is not None:
            self.bars(msg)


def _progress(progress, total_runs, epochs, jobs):
    if not progress:
        return None
    if callable(progress):
        return progress
    from .progress import SweepProgress

    return SweepProgress(total_runs, epochs, jobs)


def _run_parallel(settings, todo, jobs, channel, save_models, lrs=None):
    """Seeds in joblib workers, each worker single-threaded.

    Inside a worker the compiled kernels and BLAS get one thread each
    (``inner_max_num_threads=1``): the seeds are the parallelism, and
    several threads per worker on top would only fight over the cores.
    Local (loky) workers send each finished run back at once through a
    queue; under a Dask or Ray joblib backend (``joblib.parallel_config``)
    the same code runs on a cluster, and a seed's runs arrive when the seed
    is done.
    """
    from joblib import Parallel, delayed, parallel_config

    driver = os.getpid()
    with single_threaded_workers(parallel_config) as local:
        queue = listener = manager = None
        if local:
            from multiprocessing.managers import SyncManager

            manager = SyncManager()
            # Ctrl-C in a terminal reaches the whole process group: the driver
            # stops the sweep; the manager must not die first and lose runs.
            manager.start(_ignore_sigint)
            queue = manager.Queue()
            listener = threading.Thread(target=_listen, args=(queue, channel), daemon=True)
            listener.start()
        report = None
        if queue is not None:
            # without bars to move, only finished runs cross the process boundary
            live = channel.bars is not None and getattr(channel.bars, "mode", None) != "log"
            report = queue.put if live else _Finished(queue)

        def tasks(part):
            return (
                delayed(_seed_task)(
                    settings,
                    seed,
                    [s.origin or s for s in missing],
                    report,
                    save_models,
                    driver,
                    lrs,
                )
                for seed, missing in part
            )

        out = []
        try:
            if _yields_results():
                results = Parallel(n_jobs=jobs, return_as="generator_unordered")(tasks(todo))
            else:  # e.g. Ray's backend returns lists only: seeds in rounds of `jobs`
                results = (
                    r
                    for i in range(0, len(todo), jobs)
                    for r in Parallel(n_jobs=jobs)(tasks(todo[i : i + jobs]))
                )
            for result in results:
                out.append(result)
                if queue is None:  # no live channel: replay the runs
                    for r in result["runs"]:
                        key = (r["strategy"], result["seed"])
                        channel(("start", *key, settings.epochs))
                        for e in r["epochs"]:
                            if e["train_loss"] is not None:
                                channel(
                                    (
                                        "epoch",
                                        *key,
                                        e["epoch"],
                                        e["train_loss"],
                                        e["test_accuracy"],
                                        e["seconds"],
                                    )
                                )
                        channel(("end", *key, r["status"], r))
        finally:
            if queue is not None:
                with contextlib.suppress(Exception):
                    queue.put(None)
                listener.join(timeout=5)
                with contextlib.suppress(Exception):
                    manager.shutdown()
    return out


def _yields_results():
    """Whether the active joblib backend hands results back one by one as they finish."""
    try:
        from joblib.parallel import get_active_backend

        backend, _ = get_active_backend()
    except Exception:  # noqa: BLE001 - joblib internals moved: assume the common case
        return True
    return bool(getattr(backend, "supports_return_generator", True))


class _Finished:
    """A worker's report that forwards only the end of each run (with its record)."""

    def __init__(self, queue):
        self.queue = queue

    def __call__(self, msg):
        if msg[0] == "end":
            self.queue.put(msg)


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _listen(queue, channel):
    while True:
        try:
            msg = queue.get()
        except Exception:  # noqa: BLE001 - the manager went away: stop quietly
            return
        if msg is None:
            return
        try:
            channel(msg)
        except Exception as exc:  # noqa: BLE001 - e.g. a full disk: the seed's result retries
            log.warning("could not keep a finished run at once: %s", exc)


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


def _seed_task(settings, seed, strategies, report=None, save_models=False, driver=None, lrs=None):
    if driver is not None and os.getpid() != driver:
        # A worker process: Ctrl-C is the driver's to handle (it stops the workers),
        # and the seeds are the parallelism, so the kernels get one thread each (as
        # loky's inner_max_num_threads=1 gives local workers; this covers Dask and Ray).
        with contextlib.suppress(ValueError):  # not the main thread: nothing to do
            _ignore_sigint()
        from .. import set_num_threads

        set_num_threads(1)
    strategies = [resolve_strategy(s) for s in strategies]
    return run_seed(settings, seed, strategies, report, lrs, save_models=save_models)


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
