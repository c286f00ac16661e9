"""Reporting a comparison: the tables (Markdown and terminal) and the output files."""

from __future__ import annotations

import numpy as np

__all__ = ["results_table", "text_table", "interval_text", "count_text"]


def interval_text(d, scale=1.0, digits=2, unit=""):
    """An interval's dict (``Interval.to_dict()``, None for NaN) as ``"94.3 ± 2.6"``."""
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
            f"| {name} | {interval_text(row['test_accuracy'], 100, 1)} "
            f"| {interval_text(row['final_train_loss'], 1, 3)} "
            f"| {interval_text(row['final_test_loss'], 1, 3)} "
            f"| {interval_text(row['seconds_per_epoch'], 1, 3)} | {row['runs']} "
            f"| {count_text(row['diverged'], row['diverged_seeds'])} "
            f"| {count_text(row['failed'], row['failed_seeds'])} |"
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
    routing = results.get("routing") or {}
    compare = " and ".join(routing.get("compare") or ["max", "mean"])
    lines += [
        "![training loss and test accuracy per epoch](curves.png)",
        "",
        "![each seed's result under each strategy](paired.png)",
        "",
        f"![gradient routing through {compare} pooling](routing.png)",
        "",
        "The whole report in one page: [report.html](report.html); every number: "
        "[results.json](results.json).",
        "",
    ]
    return "\n".join(lines)


def text_table(results):
    """The per-strategy table, aligned for a terminal."""
    header = [
        "strategy",
        "test accuracy %",
        "final train loss",
        "test loss",
        "s / epoch",
        "diverged",
        "failed",
    ]
    rows = [header]
    for name, row in results["summary"].items():
        rows.append(
            [
                name,
                interval_text(row["test_accuracy"], 100, 1),
                interval_text(row["final_train_loss"], 1, 3),
                interval_text(row["final_test_loss"], 1, 3),
                interval_text(row["seconds_per_epoch"], 1, 3),
                count_text(row["diverged"], row["diverged_seeds"]),
                count_text(row["failed"], row["failed_seeds"]),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for k, r in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _seed_text(seeds):
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(str(x) for x in seeds)


def count_text(n, seeds):
    """``"0"``, or the count with its seeds: ``"2 (seed 3, 7)"``."""
    return "0" if not n else f"{n} (seed {', '.join(str(x) for x in seeds)})"
