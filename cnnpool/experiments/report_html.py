"""``report.html``: the whole comparison in one self-contained page.

Everything is inside the one file: the verdict sentences, the per-strategy
table, the paired comparisons, the figures (PNG, embedded as base64 data
URIs), every run, the settings, the data set and the library versions.  It
opens from disk in any browser, without a server and without the network;
links point to the raw ``results.json`` and ``results.md`` beside it.
"""

from __future__ import annotations

import base64
import html
import json
import os

__all__ = ["report_html", "summary_html"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1150px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em;
       border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.verdict { background: #f6f9ff; border-left: 4px solid #1f77b4; padding: .5em 1em;
       margin: .5em 0; }
.bad { color: #b00; } figure { margin: 1em 0; } figcaption { color: #555; font-size: .9em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
dl.kv { display: grid; grid-template-columns: max-content auto; gap: .15em 1.2em; }
dl.kv dt { font-weight: 600; } dl.kv dd { margin: 0; font-family: monospace; }
details { margin: .6em 0; } code { background: #f3f3f3; padding: 0 .2em; }
"""

_FIGURES = (
    ("curves.png", "Training loss and test accuracy per epoch: mean over seeds, min–max shaded."),
    (
        "paired.png",
        "Each seed's final result under each strategy: one line per seed (the paired design).",
    ),
    ("routing.png", "Where the gradient goes back through two strategies, on one test image."),
)


def report_html(results, figures):
    """The report page for ``results`` (results.json's content) as a str.

    Parameters
    ----------
    results : dict
    figures : dict
        ``{file name: path of the PNG}`` (``curves.png``, ``paired.png``,
        ``routing.png``); each is embedded.
    """
    from .report import interval_text

    e = html.escape
    s = results["settings"]
    ds = results["dataset"]
    names = [x["name"] for x in results["strategies"]]
    title = f"Pooling comparison: {', '.join(names)} on {ds['name']}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{len(s['seeds'])} paired seeds, {s['epochs']} epochs, batch {s['batch_size']}, "
        f"{e(s['optimizer'])} lr {s['lr']:g}; {ds['train_size']} training / "
        f"{ds['test_size']} test images, {len(ds['classes'])} classes "
        f"({e(', '.join(ds['classes']))}). Model: {e(results['architecture']['description'])}. "
        "Same initial weights, data split and batch order for every strategy on a seed.</p>",
        '<p>Raw data: <a href="results.json">results.json</a> (every number) · '
        '<a href="results.md">results.md</a> · <a href="runs/">runs/</a> (one file per run)</p>',
    ]

    out.append('<h2 id="verdict">Verdict</h2>')
    if results.get("comparisons"):
        for c in results["comparisons"]:
            for key in ("test_accuracy", "final_train_loss"):
                text = (c.get(key) or {}).get("summary")
                if text:
                    out.append(f'<p class="verdict">{e(text)}</p>')
    else:
        out.append("<p>One strategy ran: nothing to compare.</p>")

    out.append('<h2 id="summary">Per strategy</h2>')
    out.append(summary_html(results))
    out.append(
        "<p>Mean ± 95% confidence interval over seeds (Student t); diverged or failed runs "
        "are counted and left out of the means.</p>"
    )

    if results.get("comparisons"):
        out.append('<h2 id="paired">Paired differences</h2>')
        out.append(
            "<table><thead><tr><th>pair</th><th>metric</th><th>mean difference ± 95% CI</th>"
            "<th>wins / ties / losses</th><th>effect size d<sub>z</sub></th>"
            "<th>paired t-test p</th><th>Wilcoxon p</th><th>Holm-adjusted p</th></tr>"
            "</thead><tbody>"
        )
        for c in results["comparisons"]:
            for key, label, scale, digits in (
                ("test_accuracy", "test accuracy (points)", 1, 1),  # already in points
                ("final_train_loss", "final training loss", 1, 3),
            ):
                d = c.get(key) or {}
                diff = d.get("difference")
                out.append(
                    f"<tr><td>{e(c['a'])} − {e(c['b'])}</td><td>{label}</td>"
                    f"<td>{e(interval_text(diff, scale, digits)) if diff else '–'}</td>"
                    f"<td>{_num(d.get('wins'))} / {_num(d.get('ties'))} / "
                    f"{_num(d.get('losses'))}</td>"
                    f"<td>{_num(d.get('effect_size'))}</td>"
                    f"<td>{_num(d.get('t_pvalue'))}</td>"
                    f"<td>{_num(d.get('wilcoxon_pvalue'))}</td>"
                    f"<td>{_num(d.get('p_holm'))}</td></tr>"
                )
        out.append("</tbody></table>")

    out.append('<h2 id="figures">Figures</h2>')
    for file, caption in _FIGURES:
        path = figures.get(file)
        if path is None or not os.path.isfile(path):
            continue
        with open(path, "rb") as fh:
            data = base64.b64encode(fh.read()).decode("ascii")
        out.append(
            f'<figure><img alt="{e(file)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{e(file)}: {e(caption)}</figcaption></figure>"
        )

    out.append('<h2 id="runs">Every run</h2>')
    out.append(
        "<table><thead><tr><th>strategy</th><th>seed</th><th>status</th>"
        "<th>test accuracy (%)</th><th>final training loss</th><th>test loss</th>"
        "<th>s / epoch</th><th>initial weights</th></tr></thead><tbody>"
    )
    for r in results["runs"]:
        status = e(r["status"])
        if r["status"] != "ok":
            detail = r.get("error") or (
                f"epoch {r['diverged_epoch']}" if r.get("diverged_epoch") else ""
            )
            status = f'<span class="bad">{status}</span> {e(str(detail))}'
        acc = r.get("final_test_accuracy")
        out.append(
            f"<tr><td>{e(r['strategy'])}</td><td>{r['seed']}</td><td>{status}</td>"
            f"<td>{'' if acc is None else f'{100 * acc:.1f}'}</td>"
            f"<td>{_num(r.get('final_train_loss'))}</td><td>{_num(r.get('final_test_loss'))}</td>"
            f"<td>{_num(r.get('seconds_per_epoch'))}</td>"
            f"<td><code>{e(str(r.get('init_checksum') or ''))}</code></td></tr>"
        )
    out.append("</tbody></table>")

    out.append('<h2 id="settings">Settings</h2>')
    out.append(_kv(s))
    if results.get("settings_hash"):
        out.append(
            f"<p>Settings hash (what <code>--resume</code> checks): "
            f"<code>{e(results['settings_hash'])}</code></p>"
        )
    out.append("<h3>Strategies</h3>")
    out.append(_kv({x["name"]: f"{x['spec']} ({x['class']})" for x in results["strategies"]}))
    out.append("<h3>Data set</h3>")
    out.append(_kv(ds))
    out.append("<h3>Timing</h3>")
    out.append(_kv(results.get("timing", {})))
    out.append('<h2 id="versions">Library versions</h2>')
    out.append(_kv(results.get("versions", {})))
    out.append("</body>")
    out.append("</html>")
    return "\n".join(out) + "\n"


def summary_html(results):
    """The per-strategy table as an HTML ``<table>`` (what a notebook displays).

    In Jupyter: ``IPython.display.HTML(summary_html(results))``.
    """
    from .report import count_text, interval_text

    e = html.escape
    rows = [
        "<table><thead><tr><th>strategy</th><th>test accuracy (%)</th>"
        "<th>final training loss</th><th>test loss</th><th>time / epoch (s)</th>"
        "<th>runs</th><th>diverged</th><th>failed</th></tr></thead><tbody>"
    ]
    for name, row in results["summary"].items():
        rows.append(
            f"<tr><td>{e(name)}</td>"
            f"<td>{e(interval_text(row['test_accuracy'], 100, 1))}</td>"
            f"<td>{e(interval_text(row['final_train_loss'], 1, 3))}</td>"
            f"<td>{e(interval_text(row['final_test_loss'], 1, 3))}</td>"
            f"<td>{e(interval_text(row['seconds_per_epoch'], 1, 3))}</td>"
            f"<td>{row['runs']}</td>"
            f"<td>{e(count_text(row['diverged'], row['diverged_seeds']))}</td>"
            f"<td>{e(count_text(row['failed'], row['failed_seeds']))}</td></tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def _kv(d):
    rows = "".join(
        f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(_plain(v))}</dd>" for k, v in d.items()
    )
    return f'<dl class="kv">{rows}</dl>'


def _plain(v):
    if isinstance(v, str):
        return v
    return json.dumps(v)


def _num(v):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 0.001 and v != 0 else f"{v:.4g}"
    return html.escape(str(v))
