"""The comparison's pictures, drawn with matplotlib's Agg canvas.

``curves.png`` (:func:`plot_curves`)
    Training loss and test accuracy per epoch: one colour per strategy, the
    mean over seeds as a line and the spread over seeds (min to max) shaded.
``paired.png`` (:func:`plot_paired`)
    The paired design made visible: each seed's final test accuracy and
    training loss under every strategy, one line per seed from strategy to
    strategy, so a difference that holds seed by seed shows as parallel
    slopes.
``routing.png`` (:func:`plot_routing`)
    For one feature map, where the gradient goes back through two
    strategies (max versus mean unless told otherwise): the
    winner-takes-all mask beside the even spread.  The masks are computed
    by the library's own layers, as ``layer.backward(ones)``
    (:func:`routing_maps` for max and mean).

Figures are built with ``matplotlib.figure.Figure`` and written by the Agg
canvas directly: pyplot is never imported, no window ever opens, and the
user's own matplotlib backend is left alone.  The same data always gives
the same PNG bytes (on one matplotlib version), which is how
``cnnpool-compare --replot`` is checked.  matplotlib is imported only when a
figure is drawn (``pip install "cnnpool[examples]"``).
"""

from __future__ import annotations

import os

import numpy as np

from ..pooling import MaxPool2d, MeanPool2d

__all__ = ["routing_maps", "plot_routing", "plot_curves", "plot_paired", "COLORS"]

#: Colours of the strategies, in order (matplotlib's colour-blind safe "tab" cycle).
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def _figure(figsize, layout="constrained"):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "cnnpool.experiments.plots needs matplotlib. "
            'Install it with: pip install "cnnpool[examples]"  (or: pip install matplotlib)'
        ) from exc
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, dpi):
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


# ------------------------------------------------------------------- routing
def routing_maps(feature_map, kernel_size=2, stride=None):
    """Pool one feature map with max and mean, and backpropagate ones through each.

    Parameters
    ----------
    feature_map : array_like, shape (H, W)
        One channel of one image (e.g. the first convolution's output).
    kernel_size, stride
        The pooling window, as for :class:`~cnnpool.MaxPool2d`.

    Returns
    -------
    dict of ndarray
        ``"max_pooled"``, ``"mean_pooled"`` (OH, OW); ``"max_route"``,
        ``"mean_route"`` (H, W): the gradient each input element receives
        when every pooled output has gradient 1.  For non-overlapping
        windows ``max_route`` is 1 at each window's winner and 0 elsewhere,
        and ``mean_route`` is ``1 / (kh * kw)`` everywhere a window covers.
    """
    fm = np.asarray(feature_map, dtype=np.float64)
    if fm.ndim != 2:
        raise ValueError(f"feature_map must be 2-D (H, W), got shape {fm.shape}")
    x = fm[None, None]
    out = {}
    for name, layer in (
        ("max", MaxPool2d(kernel_size, stride)),
        ("mean", MeanPool2d(kernel_size, stride)),
    ):
        pooled = layer.forward(x)
        out[f"{name}_pooled"] = pooled[0, 0]
        out[f"{name}_route"] = layer.backward(np.ones_like(pooled))[0, 0]
    return out


def _zoom_box(fm, k, windows=3):
    """Top-left corner of the ``windows*k`` square, on the window grid, with the most variance."""
    size = windows * k
    h, w = fm.shape
    if h < size or w < size:
        return 0, 0, min(h, w)
    best, best_rc = -1.0, (0, 0)
    for r in range(0, h - size + 1, k):
        for c in range(0, w - size + 1, k):
            v = float(np.var(fm[r : r + size, c : c + size]))
            if v > best:
                best, best_rc = v, (r, c)
    return best_rc[0], best_rc[1], size


def _grid(ax, origin_r, origin_c, size, k):
    for t in range(0, size + 1, k):
        ax.axhline(t - 0.5, color="white", lw=1.5)
        ax.axvline(t - 0.5, color="white", lw=1.5)


def plot_routing(
    feature_map,
    path,
    *,
    kernel_size=2,
    image=None,
    title=None,
    feature_label="feature map",
    routes=None,
    dpi=110,
):
    """Draw ``routing.png``: a feature map and where two poolings route its gradient.

    Parameters
    ----------
    feature_map : array_like, shape (H, W)
        The map the pooling layer sees (e.g. conv → ReLU output, one channel).
    path : str or path-like
        Where to write the PNG.
    kernel_size : int
        Pooling window (non-overlapping, stride = kernel).
    image : array_like, shape (H0, W0), optional
        The input image the feature map came from, shown first.
    title : str, optional
        A title over the whole figure.
    feature_label : str
        Caption of the feature-map panel.
    routes : dict, optional
        ``{name: route}`` for two strategies, each route an (H, W) array:
        the gradient each element of ``feature_map`` receives when every
        pooled output has gradient 1.  Default: max and mean pooling's
        (:func:`routing_maps`).

    Returns
    -------
    str
        The path written.

    Notes
    -----
    The top row shows whole maps, both routings on one colour scale, so
    the 1's of max pooling and the ``1/k²`` of mean pooling compare
    directly.  The bottom row zooms into ``3x3`` windows (white grid) where
    the feature map varies most, with every value written in.
    """
    fm = np.asarray(feature_map, dtype=np.float64)
    k = int(kernel_size)
    if routes is None:
        maps = routing_maps(fm, k)
        routes = {"max": maps["max_route"], "mean": maps["mean_route"]}
    routes = {name: np.asarray(r, dtype=np.float64) for name, r in routes.items()}
    if len(routes) != 2 or any(r.shape != fm.shape for r in routes.values()):
        raise ValueError(
            f"routes must hold two maps of the feature map's shape {fm.shape}, got "
            f"{ {n: r.shape for n, r in routes.items()} }"
        )
    share = 1.0 / (k * k)
    r0, c0, size = _zoom_box(fm, k)
    vmax = max(1.0, *(float(np.nanmax(r)) for r in routes.values()))

    ncols = 4 if image is not None else 3
    fig = _figure((3.2 * ncols, 6.6))
    axes = fig.subplots(2, ncols)
    col = 0
    if image is not None:
        ax = axes[0, 0]
        ax.imshow(np.asarray(image), cmap="gray")
        ax.set_title("input image")
        axes[1, 0].axis("off")
        axes[1, 0].text(0.0, 0.5, _routing_caption(list(routes), k, share), va="center", fontsize=9)
        col = 1
    panels = [(fm, feature_label, "viridis", None, None)] + [
        (r, f"{name} pooling: gradient routing", "magma", 0.0, vmax) for name, r in routes.items()
    ]
    for j, (arr, label, cmap, vmin, vtop) in enumerate(panels):
        ax = axes[0, col + j]
        im = ax.imshow(arr, cmap=cmap, vmin=vmin, vmax=vtop, interpolation="nearest")
        ax.set_title(label, fontsize=10)
        ax.add_patch(_rect(r0, c0, size))
        fig.colorbar(im, ax=ax, shrink=0.8)
        zoom = arr[r0 : r0 + size, c0 : c0 + size]
        axz = axes[1, col + j]
        axz.imshow(
            zoom,
            cmap=cmap,
            vmin=vmin if vmin is not None else fm.min(),
            vmax=vtop if vtop is not None else fm.max(),
            interpolation="nearest",
        )
        _grid(axz, r0, c0, size, k)
        for (i, jj), v in np.ndenumerate(zoom):
            axz.text(
                jj,
                i,
                _short(v),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if (j > 0 and v < 0.5 * vmax) else "black",
                bbox=None
                if j > 0
                else dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.6),
            )
        axz.set_title(f"zoom: rows {r0}-{r0 + size - 1}, cols {c0}-{c0 + size - 1}", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


#: What the routing picture's caption says about a strategy it shows.
_ROUTING_WORDS = {
    "max": "max: each window's gradient\ngoes to its largest element\n(winner takes all)",
    "mean": "mean: every element of the\nwindow gets 1/{kk} = {share:g}",
    "avg": "avg: every element of the\nwindow gets 1/{kk} = {share:g}",
    "stochastic": "stochastic: one element per\nwindow, drawn with probability\n"
    "proportional to its value\n(one draw shown)",
}


def _routing_caption(names, k, share):
    lines = [f"Backward of ones through\n{k}x{k} pooling, stride {k}:"]
    for name in names:
        words = _ROUTING_WORDS.get(name)
        if words is None:
            words = f"{name}: the gradient a\nfresh {name} layer sends\nto each element"
        lines.append(words.format(kk=k * k, share=share))
    if "max" in names:
        lines.append(
            "A window of equal values (all\nzero after ReLU) routes to its\n"
            "first element: ties go to the\nfirst maximum, as in PyTorch"
        )
    return "\n\n".join(lines)


def _short(v):
    if abs(v) >= 100:
        return f"{v:.0f}"
    text = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _rect(r0, c0, size):
    from matplotlib.patches import Rectangle

    return Rectangle((c0 - 0.5, r0 - 0.5), size, size, fill=False, ec="cyan", lw=1.5)


# -------------------------------------------------------------------- curves
def plot_curves(curves, path, *, title=None, chance=None, dpi=110):
    """Draw ``curves.png``: training loss and test accuracy per epoch.

    Parameters
    ----------
    curves : dict
        ``{strategy: {"train_loss": array (seeds, epochs),
        "test_accuracy": array (seeds, epochs)}}``, accuracy as a fraction.
        NaN marks an epoch after a run diverged; such seeds are counted in
        the legend and left out of the mean at those epochs.
    path : str or path-like
        Where to write the PNG.
    title : str, optional
    chance : float, optional
        Accuracy of guessing (e.g. 1/classes), drawn as a dashed line.

    Returns
    -------
    str
        The path written.
    """
    fig = _figure((11, 4.2))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for i, (name, c) in enumerate(curves.items()):
        color = COLORS[i % len(COLORS)]
        loss = np.atleast_2d(np.asarray(c["train_loss"], dtype=np.float64))
        if "diverged" in c:
            diverged = int(np.sum(c["diverged"]))
        else:
            diverged = int((~np.isfinite(loss)).any(axis=1).sum())
        n_seeds = loss.shape[0]
        label = f"{name} ({n_seeds} seed{'s' if n_seeds != 1 else ''}"
        label += f", {diverged} diverged)" if diverged else ")"
        for ax, key, scale in ((ax_loss, "train_loss", 1.0), (ax_acc, "test_accuracy", 100.0)):
            arr = np.atleast_2d(np.asarray(c[key], dtype=np.float64)) * scale
            epochs = np.arange(1, arr.shape[1] + 1)
            arr = np.where(np.isfinite(arr), arr, np.nan)
            with _quiet():
                mean = np.nanmean(arr, axis=0)
                lo = np.nanmin(arr, axis=0)
                hi = np.nanmax(arr, axis=0)
            ax.plot(epochs, mean, color=color, lw=2, marker="o", ms=3, label=label)
            if arr.shape[0] > 1:
                ax.fill_between(epochs, lo, hi, color=color, alpha=0.2, lw=0)
    ax_loss.set_title("training loss (mean over seeds, min–max shaded)", fontsize=10)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_acc.set_title("test accuracy (mean over seeds, min–max shaded)", fontsize=10)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    if chance is not None:
        ax_acc.axhline(100 * chance, color="gray", ls="--", lw=1, label="chance")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


# -------------------------------------------------------------------- paired
def plot_paired(paired, path, *, seeds, title=None, dpi=110):
    """Draw ``paired.png``: every seed's result under every strategy, one line per seed.

    Parameters
    ----------
    paired : dict
        ``{strategy: {"test_accuracy": array (seeds,), "final_train_loss":
        array (seeds,)}}``, accuracy as a fraction; NaN for a run that
        diverged, failed or is missing (the seed's line then skips it).
    path : str or path-like
        Where to write the PNG.
    seeds : sequence of int
        The seeds, in the order of the arrays (labels at the line ends).
    title : str, optional

    Returns
    -------
    str
        The path written.

    Notes
    -----
    The strategies sit side by side on the x axis in their order; a grey
    line joins one seed's values, and each strategy's mean is a coloured
    bar.  A difference that holds seed by seed shows as lines that all
    slope the same way, which the per-strategy means alone cannot show.
    """
    names = list(paired)
    seeds = list(seeds)
    # A fixed layout: the constrained one costs more than drawing the lines.
    fig = _figure((max(6.0, 2.2 * len(names) + 3.0) * 1.6, 4.2), layout=None)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.84, wspace=0.22)
    axes = fig.subplots(1, 2)
    x = np.arange(len(names))
    for ax, key, scale, label in (
        (axes[0], "test_accuracy", 100.0, "final test accuracy (%)"),
        (axes[1], "final_train_loss", 1.0, "final training loss"),
    ):
        values = np.array(
            [np.asarray(paired[n][key], dtype=np.float64) * scale for n in names]
        ).reshape(len(names), len(seeds))
        values = np.where(np.isfinite(values), values, np.nan)
        for j, seed in enumerate(seeds):
            column = values[:, j]
            ax.plot(x, column, color="0.55", lw=1, marker="o", ms=3, alpha=0.8, zorder=2)
            finite = np.flatnonzero(np.isfinite(column))
            if len(seeds) <= 30 and len(finite):
                last = finite[-1]
                ax.annotate(
                    str(seed),
                    (x[last], column[last]),
                    xytext=(4, 0),
                    textcoords="offset points",
                    fontsize=6,
                    color="0.4",
                    va="center",
                )
        for i in range(len(names)):
            with _quiet():
                mean = np.nanmean(values[i])
            if np.isfinite(mean):
                ax.hlines(mean, i - 0.25, i + 0.25, color=COLORS[i % len(COLORS)], lw=3, zorder=3)
        ax.set_xticks(x, names)
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_ylabel(label)
        ax.set_title(f"{label}: one line per seed, bar = mean", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


class _quiet:
    """Silence NumPy's 'all-NaN slice' warnings for epochs where every seed diverged."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
