"""Summaries of a comparison: per-run finals, per-strategy intervals, paired comparisons."""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "BOUNDS",
    "CHANCE_MARGIN",
    "summarize",
    "did_not_learn",
    "run_summary",
    "finite_or_none",
    "nan_if_none",
]


def finite_or_none(x):
    """``float(x)``, or None for None, NaN and infinities (strict JSON)."""
    return float(x) if x is not None and math.isfinite(x) else None


def run_summary(record):
    """A run's record for ``results.json``: finals added, the model left out."""
    r = dict(record)
    r.pop("model", None)
    epochs = r["epochs"]
    finished = [e for e in epochs if e["test_accuracy"] is not None]
    ok = r["status"] == "ok" and len(finished) == len(epochs) and epochs
    r["final_test_accuracy"] = finished[-1]["test_accuracy"] if ok else None
    r["final_train_loss"] = finite_or_none(finished[-1]["train_loss"]) if ok else None
    r["final_test_loss"] = finite_or_none(finished[-1]["test_loss"]) if ok else None
    secs = [e["seconds"] for e in epochs if e["train_loss"] is not None]
    r["seconds_per_epoch"] = float(np.mean(secs)) if secs else None
    r["total_seconds"] = float(sum(e["seconds"] for e in epochs))
    return r


#: A run "did not learn" when its final test accuracy and its last epoch's
#: training accuracy are both within this of the majority-class share.
CHANCE_MARGIN = 0.02

#: The range each summarised quantity can take (intervals are clipped to it).
BOUNDS = {
    "test_accuracy": (0.0, 1.0),
    "final_train_loss": (0.0, None),
    "final_test_loss": (0.0, None),
    "seconds_per_epoch": (0.0, None),
}


# The run-record field each summarised quantity comes from.
_COLUMN = {"test_accuracy": "final_test_accuracy"}


def did_not_learn(run, chance_test, chance_train, margin=CHANCE_MARGIN):
    """Whether a finished run stayed at chance: it predicts no better than the majority class."""
    if run["status"] != "ok" or run.get("final_test_accuracy") is None or not run["epochs"]:
        return False
    train_acc = run["epochs"][-1].get("train_accuracy")
    return (
        run["final_test_accuracy"] <= chance_test + margin
        and train_acc is not None
        and train_acc <= chance_train + margin
    )


def summarize(results):
    """Per-strategy intervals and paired comparisons from ``results["runs"]``.

    Per strategy: mean and 95% t-interval over seeds of each quantity,
    clipped to its valid range (:data:`BOUNDS`; ``clipped`` says so), and
    the counts of runs that diverged, failed or did not learn.  A run that
    did not learn (accuracy at chance, :func:`did_not_learn`) is flagged in
    ``results["runs"]`` (``"did_not_learn": true``) and counted, and stays
    in the means: it is what the strategy did.  Pairwise comparisons carry
    Holm-adjusted p-values over the family of all pairs (one family per
    metric).

    Returns ``{"summary": {...}, "comparisons": [...]}`` (strict-JSON values).
    """
    from .stats import mean_ci, paired_comparison, with_holm

    seeds = results["settings"]["seeds"]
    names = [s["name"] for s in results["strategies"]]
    ds = results.get("dataset") or {}
    chance_test = _majority(ds.get("test_class_counts"))
    chance_train = _majority(ds.get("train_class_counts"))
    for r in results["runs"]:
        r["did_not_learn"] = did_not_learn(r, chance_test, chance_train)
    by = {(r["strategy"], r["seed"]): r for r in results["runs"]}

    def column(name, key):
        return np.array(
            [nan_if_none(by[(name, s)].get(key)) if (name, s) in by else np.nan for s in seeds],
            dtype=np.float64,
        )

    summary = {}
    for name in names:
        runs = [by[(name, s)] for s in seeds if (name, s) in by]
        row = {
            key: mean_ci(column(name, _COLUMN.get(key, key)), bounds=bounds).to_dict()
            for key, bounds in BOUNDS.items()
        }
        summary[name] = {
            "test_accuracy": row["test_accuracy"],
            "final_train_loss": row["final_train_loss"],
            "final_test_loss": row["final_test_loss"],
            "seconds_per_epoch": row["seconds_per_epoch"],
            "runs": len(runs),
            "diverged": sum(r["status"] == "diverged" for r in runs),
            "failed": sum(r["status"] == "failed" for r in runs),
            "did_not_learn": sum(r["did_not_learn"] for r in runs),
            "diverged_seeds": [r["seed"] for r in runs if r["status"] == "diverged"],
            "failed_seeds": [r["seed"] for r in runs if r["status"] == "failed"],
            "did_not_learn_seeds": [r["seed"] for r in runs if r["did_not_learn"]],
        }
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    acc = with_holm(
        [
            paired_comparison(
                column(a, "final_test_accuracy"), column(b, "final_test_accuracy"), a, b
            )
            for a, b in pairs
        ]
    )
    loss = with_holm(
        [
            paired_comparison(
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
            for a, b in pairs
        ]
    )
    comparisons = [
        {"a": a, "b": b, "test_accuracy": ca.to_dict(), "final_train_loss": cl.to_dict()}
        for (a, b), ca, cl in zip(pairs, acc, loss, strict=True)
    ]
    for c in comparisons:  # a verdict between runs at chance says so
        stuck = [
            f"{summary[n]['did_not_learn']} run(s) of {n}"
            for n in (c["a"], c["b"])
            if summary[n]["did_not_learn"]
        ]
        if stuck:
            c["test_accuracy"]["summary"] += (
                f" {' and '.join(stuck)} did not learn (accuracy at chance)."
            )
    return {"summary": summary, "comparisons": comparisons}


def _majority(counts):
    """The share of the largest class (the accuracy of always guessing it)."""
    if not counts or sum(counts) == 0:
        return 0.0
    return max(counts) / sum(counts)


def nan_if_none(x):
    """NaN for None (a missing value), else ``float(x)``."""
    return np.nan if x is None else float(x)
