"""Reporting a comparison: the tables (Markdown and terminal) and the output files."""

from __future__ import annotations

import numpy as np

__all__ = [
    "results_table",
    "text_table",
    "difference_matrix",
    "any_clipped",
    "tuning_text",
    "interval_text",
    "count_text",
]

#: Sentences the tables end with.
NOTES = {
    "did_not_learn": "Did not learn: a finished run whose final test accuracy and last-epoch "
    "training accuracy are both within 2 points of always guessing the largest class; "
    "counted, and kept in the means.",
    "clipped": "An interval written (low to high) is the t-interval clipped to the range the "
    "quantity can take (accuracy 0-100%, losses and times >= 0).",
    "holm": "p-values of the pairwise comparisons are Holm-adjusted over all pairs of "
    "strategies (one family per metric), so that the chance of any false 'larger than the "
    "noise' stays at 5%; with two strategies there is one pair and nothing to adjust.",
}


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
        f"batch {s['batch_size']}, {s['optimizer']} {_lr_text(results)}; "
        f"{ds['train_size']} training / {ds['test_size']} test images "
        f"{'x'.join(str(v) for v in ds['image_shape'][1:])}, "
        f"{len(ds['classes'])} classes (chance {100 / len(ds['classes']):.0f}%).",
        *_own_data_lines(ds),
        f"Model: {results['architecture']['description']}. Same initial weights, data split "
        f"and batch order for every strategy on a seed.",
        "",
        "| strategy | test accuracy (%) | final training loss | test loss | time / epoch (s) "
        "| runs | diverged | failed | did not learn |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results["summary"].items():
        lines.append(
            f"| {name} | {interval_text(row['test_accuracy'], 100, 1)} "
            f"| {interval_text(row['final_train_loss'], 1, 3)} "
            f"| {interval_text(row['final_test_loss'], 1, 3)} "
            f"| {interval_text(row['seconds_per_epoch'], 1, 3)} | {row['runs']} "
            f"| {count_text(row['diverged'], row['diverged_seeds'])} "
            f"| {count_text(row['failed'], row['failed_seeds'])} "
            f"| {count_text(row.get('did_not_learn', 0), row.get('did_not_learn_seeds', []))} |"
        )
    lines += [
        "",
        "Values are mean ± 95% confidence interval over seeds (Student t); diverged or "
        "failed runs are counted above and left out of the means. Final training loss: "
        "mean cross-entropy over the last epoch's mini-batches. Time per epoch: wall-clock "
        f"seconds of training (no evaluation), {results['timing']['jobs']} seed(s) at a time. "
        f"{NOTES['did_not_learn']}",
        "",
    ]
    if any_clipped(results):
        lines += [NOTES["clipped"], ""]
    if "tuning" in results:
        lines += _tuning_lines(results["tuning"])
    if results["comparisons"]:
        lines.append("## Paired differences")
        lines.append("")
        if len(results["strategies"]) > 2:
            lines += difference_matrix(results, markdown=True) + [""]
        lines += [NOTES["holm"], ""]
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
        "did not learn",
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
                count_text(row.get("did_not_learn", 0), row.get("did_not_learn_seeds", [])),
            ]
        )
    return _align(rows)


def _own_data_lines(ds):
    """How your own images were read: the split, the size, the files skipped."""
    if not ds.get("split"):  # a built-in set: described by its name
        return []
    parts = [f"Data: {ds['source']} ({ds['split']}"]
    if ds.get("fit"):
        how = "resized" if ds["fit"] == "resize" else "scaled and centre-cropped"
        parts.append(
            f"; {ds['color']} pictures {how} to {'x'.join(map(str, ds['image_shape'][1:]))}"
        )
    if ds.get("files_skipped"):
        parts.append(
            f"; {ds['files_skipped']} file(s) skipped as unreadable, listed in results.json"
        )
    return ["".join(parts) + ")."]


def _lr_text(results):
    tuning = results.get("tuning")
    if tuning is None:
        return f"lr {results['settings']['lr']:g}"
    chosen = ", ".join(f"{n} {c['lr']:g}" for n, c in tuning["chosen"].items())
    return f"lr chosen per strategy on a validation split ({chosen})"


def any_clipped(results):
    """Whether any per-strategy interval was clipped to its valid range."""
    return any(
        iv.get("clipped")
        for row in results["summary"].values()
        for iv in row.values()
        if isinstance(iv, dict)
    )


def tuning_text(tuning):
    """The learning-rate search as a small aligned table: one row per strategy."""
    grid = tuning["grid"]
    header = ["strategy", "chosen lr"] + [f"val acc % @ {lr:g}" for lr in grid]
    rows = [header]
    for name, c in tuning["chosen"].items():
        cells = []
        for g in c["grid"]:
            acc = g["val_accuracy"]
            cell = "n/a" if acc is None else f"{100 * acc:.1f}"
            if g["not_ok"]:
                cell += f" ({g['not_ok']} not ok)"
            cells.append(cell)
        rows.append([name, f"{c['lr']:g}"] + cells)
    return _align(rows)


def _tuning_lines(tuning):
    grid = ", ".join(f"{v:g}" for v in tuning["grid"])
    lines = [
        "## Learning rates",
        "",
        f"Each strategy chose its learning rate from {grid} by {tuning['rule']}, on a "
        f"validation split of {tuning['val_fraction']:g} of each class's training images; "
        "the test images were not used until the final runs.",
        "",
        "| strategy | chosen lr | "
        + " | ".join(f"validation accuracy at {v:g} (%)" for v in tuning["grid"])
        + " |",
        "|---|---|" + "---|" * len(tuning["grid"]),
    ]
    for name, c in tuning["chosen"].items():
        cells = [
            ("n/a" if g["val_accuracy"] is None else f"{100 * g['val_accuracy']:.1f}")
            + (f" ({g['not_ok']} diverged/failed)" if g["not_ok"] else "")
            for g in c["grid"]
        ]
        lines.append(f"| {name} | {c['lr']:g} | " + " | ".join(cells) + " |")
    return lines + [""]


def difference_matrix(results, markdown=False):
    """Pairwise test-accuracy differences as a matrix (lines of text).

    Cell (row, column): mean difference row − column in points, with ``*``
    when its Holm-adjusted p-value is below 0.05.
    """
    names = [s["name"] for s in results["strategies"]]
    cell = {}
    for c in results["comparisons"]:
        acc = c["test_accuracy"]
        mean = acc["difference"]["mean"]
        p = acc.get("p_holm")
        star = "*" if p is not None and p < 0.05 else ""
        cell[(c["a"], c["b"])] = "n/a" if mean is None else f"{mean:+.1f}{star}"
        cell[(c["b"], c["a"])] = "n/a" if mean is None else f"{-mean:+.1f}{star}"
    rows = [["row − column"] + names]
    for a in names:
        rows.append([a] + ["·" if a == b else cell.get((a, b), "") for b in names])
    legend = (
        "Mean test accuracy difference, row − column, in points over paired seeds; "
        "* Holm-adjusted p < 0.05 (paired t-test, else Wilcoxon)."
    )
    if markdown:
        out = ["| " + " | ".join(rows[0]) + " |", "|---" * len(rows[0]) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return out + ["", legend]
    return _align(rows).splitlines() + [legend]


def _align(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
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
