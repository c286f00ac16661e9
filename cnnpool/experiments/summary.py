"""Summaries of a comparison: per-run finals, per-strategy intervals, paired comparisons."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["summarize", "run_summary", "finite_or_none", "nan_if_none"]


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
            [nan_if_none(by[(name, s)].get(key)) if (name, s) in by else np.nan for s in seeds],
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


def nan_if_none(x):
    """NaN for None (a missing value), else ``float(x)``."""
    return np.nan if x is None else float(x)
