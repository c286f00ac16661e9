"""A learning rate per strategy, chosen without looking at the test set (``--tune-lr``).

One shared learning rate can decide a comparison by itself: a rate that
suits max pooling may be too small for mean pooling.  With ``tune_lr``
each strategy tries every rate of a small grid on every seed, trained on
part of the seed's *training* images and scored on the rest of them (a
stratified validation split, :func:`~cnnpool.experiments.data.validation_split`);
it keeps the rate with the best mean validation accuracy over the seeds
(ties: the lower mean validation loss, then the smaller rate).  Runs that
diverge or fail count as accuracy 0.  The final runs then train on the
whole training set at the chosen rate and are tested once, as usual.

The test images never reach this module: the validation Dataset it trains
on is built from the training arrays only, and its ``x_test`` *is* the
validation part.
"""

from __future__ import annotations

import logging

import numpy as np

from .data import load_dataset, validation_split
from .strategies import resolve_strategy
from .training import train_one

log = logging.getLogger(__name__)

__all__ = ["tune_seed", "choose_rates", "tune_learning_rates"]


def tune_seed(settings, seed, strategies, grid):
    """Every strategy at every rate of ``grid`` on one seed's validation split.

    Returns a list of ``{"strategy", "seed", "lr", "status", "val_accuracy",
    "val_loss"}`` records.
    """
    strategies = [resolve_strategy(s) for s in strategies]
    val = validation_split(load_dataset(settings, seed), settings.val_fraction, seed)
    out = []
    for strategy in strategies:
        for lr in grid:
            record = train_one(settings, strategy, val, seed, lr=lr, tuning=True)
            record.pop("model", None)
            last = record["epochs"][-1] if record["epochs"] else {}
            ok = record["status"] == "ok" and last.get("test_accuracy") is not None
            out.append(
                {
                    "strategy": strategy.name,
                    "seed": seed,
                    "lr": float(lr),
                    "status": record["status"],
                    "val_accuracy": last["test_accuracy"] if ok else None,
                    "val_loss": last.get("test_loss") if ok else None,
                }
            )
    return out


def choose_rates(records, names, grid):
    """The rate per strategy from :func:`tune_seed` records, with the grid's scores.

    Returns ``{name: {"lr": chosen, "grid": [{"lr", "val_accuracy",
    "val_loss", "runs", "not_ok"}, ...]}}``; accuracies are means over the
    seeds with diverged or failed runs counted as 0.
    """
    chosen = {}
    for name in names:
        rows = []
        for lr in grid:
            runs = [r for r in records if r["strategy"] == name and r["lr"] == float(lr)]
            acc = [r["val_accuracy"] if r["val_accuracy"] is not None else 0.0 for r in runs]
            losses = [r["val_loss"] for r in runs if r["val_loss"] is not None]
            rows.append(
                {
                    "lr": float(lr),
                    "val_accuracy": float(np.mean(acc)) if acc else None,
                    "val_loss": float(np.mean(losses)) if losses else None,
                    "runs": len(runs),
                    "not_ok": sum(r["status"] != "ok" for r in runs),
                }
            )

        def rank(row):
            acc = row["val_accuracy"] if row["val_accuracy"] is not None else -1.0
            loss = row["val_loss"] if row["val_loss"] is not None else np.inf
            return (-round(acc, 12), loss, row["lr"])

        best = min(rows, key=rank)
        chosen[name] = {"lr": best["lr"], "grid": rows}
    return chosen


def tune_learning_rates(settings, strategies, jobs=1, progress=False):
    """Choose a learning rate per strategy (see the module docs).

    Parameters
    ----------
    settings : Settings
        ``settings.grid()`` gives the rates, ``settings.val_fraction`` the
        share of each class's training images held out for validation.
    strategies : list of Strategy
    jobs : int
        Seeds searched in parallel (joblib, one thread per worker).
    progress : bool
        A tqdm bar over the searched runs, on stderr.

    Returns
    -------
    dict
        ``{"grid", "val_fraction", "chosen": {name: {"lr", "grid": [...]}},
        "runs": [records]}``.
    """
    grid = settings.grid()
    names = [s.name for s in strategies]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = len(settings.seeds) * len(strategies) * len(grid)
        bar = tqdm(total=total, desc="choosing learning rates", unit="run")
    records = []
    try:
        if jobs == 1:
            for seed in settings.seeds:
                records += tune_seed(settings, seed, strategies, grid)
                if bar is not None:
                    bar.update(len(strategies) * len(grid))
        else:
            from joblib import Parallel, delayed, parallel_config

            from .runner import single_threaded_workers

            sendable = [s.origin or s for s in strategies]
            with single_threaded_workers(parallel_config):
                parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
                tasks = (
                    delayed(tune_seed)(settings, seed, sendable, grid) for seed in settings.seeds
                )
                for part in parallel(tasks):
                    records += part
                    if bar is not None:
                        bar.update(len(part))
    finally:
        if bar is not None:
            bar.close()
    records.sort(key=lambda r: (names.index(r["strategy"]), r["lr"], r["seed"]))
    chosen = choose_rates(records, names, grid)
    for name, c in chosen.items():
        log.info("%s: learning rate %g chosen on the validation split", name, c["lr"])
    return {
        "grid": list(grid),
        "val_fraction": settings.val_fraction,
        "rule": "best mean validation accuracy over seeds (diverged/failed = 0); ties: "
        "lower mean validation loss, then the smaller rate",
        "chosen": chosen,
        "runs": records,
    }
