"""Honest statistics over seeds: a mean with its 95% interval, and a paired test.

Every strategy in a comparison is trained once per seed, and for a given
seed all strategies start from the same weights and see the same batches.
The runs are therefore *paired*: the right question is not "do the two
clouds of accuracies overlap?" but "on each seed, which strategy did
better, and is the average difference larger than the seed-to-seed noise?"

* :func:`mean_ci` -- mean and a two-sided confidence interval from
  Student's t distribution (``mean ± t_{n-1} * s / sqrt(n)``), clipped to
  the range the quantity can take when ``bounds`` are given (an accuracy
  in [0, 1], a loss or a time >= 0) and marked as clipped.
* :func:`holm` -- Holm's step-down adjustment of several p-values, for the
  pairwise comparisons of more than two strategies.
* :func:`paired_comparison` -- per-seed differences, wins/ties/losses, the
  mean difference with its interval, the paired t-test
  (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test, the
  effect size (Cohen's ``d_z``: mean difference over the standard deviation
  of the differences), and a sentence in plain words.

What is *not* computed, and why, is said rather than faked:

* one seed gives a mean but no interval and no test;
* differences that are identical on every seed have zero variance, so a
  t statistic does not exist (scipy would report ``p = 0`` for a constant
  non-zero difference, which is not evidence of anything); no t-test p-value
  is given then;
* the Wilcoxon test is given only with at least
  :data:`MIN_WILCOXON_PAIRS` non-zero differences: below that even a
  clean sweep cannot reach ``p < 0.05`` (the smallest two-sided exact
  p-value with ``n`` pairs is ``2 / 2**n``);
* a value that is not finite (a run whose loss became NaN) is left out of
  means and tests, and the number left out is reported.

scipy is imported only when a test is run.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, replace

import numpy as np

__all__ = [
    "MIN_WILCOXON_PAIRS",
    "Interval",
    "PairedComparison",
    "mean_ci",
    "paired_comparison",
    "holm",
    "with_holm",
    "format_p",
    "format_interval",
]

#: The fewest non-zero paired differences for which a Wilcoxon test is reported.
MIN_WILCOXON_PAIRS = 6

# Differences are rounded to this many decimals before testing, so that
# 0.9 - 0.88 and 0.92 - 0.90 count as the same difference (a tie), not as
# two values a float rounding error apart.
_DECIMALS = 12


def _scipy_stats():
    try:
        from scipy import stats
    except ImportError as exc:
        raise ImportError(
            "cnnpool.experiments.stats needs scipy for confidence intervals and tests. "
            'Install it with: pip install "cnnpool[examples]"  (or: pip install scipy)'
        ) from exc
    return stats


@dataclass(frozen=True)
class Interval:
    """A mean with a two-sided confidence interval over finite values.

    Attributes
    ----------
    mean : float
        Mean of the finite values (NaN when there are none).
    low, high : float
        The interval's ends; NaN when it does not exist (fewer than two
        finite values).
    half_width : float
        ``high - mean``; 0.0 when all values are equal; NaN with one value.
    std : float
        Sample standard deviation (``ddof=1``); NaN with one value.
    n : int
        Number of finite values used.
    n_nonfinite : int
        Number of values left out because they were NaN or infinite.
    confidence : float
        The confidence level, e.g. 0.95.
    clipped : bool
        Whether ``low`` or ``high`` was moved to the bound of the valid
        range (``half_width`` is then the unclipped t half-width).
    """

    mean: float
    low: float
    high: float
    half_width: float
    std: float
    n: int
    n_nonfinite: int = 0
    confidence: float = 0.95
    clipped: bool = False

    @property
    def has_interval(self):
        return self.n >= 2

    def to_dict(self):
        return _jsonable(asdict(self))


def mean_ci(values, confidence=0.95, bounds=None):
    """Mean and a Student-t confidence interval of ``values``.

    Parameters
    ----------
    values : array_like of float
        One number per seed.  NaN and infinite values are left out and
        counted in ``n_nonfinite``.
    confidence : float
        Coverage of the interval, strictly between 0 and 1.
    bounds : (low, high), optional
        The range the quantity can take (``None`` for an open end); the
        interval is clipped to it and ``clipped`` says so.

    Returns
    -------
    Interval

    Examples
    --------
    >>> iv = mean_ci([1.0, 2.0, 3.0, 4.0])
    >>> round(iv.mean, 3), round(iv.half_width, 3)   # 3.182 * 1.291 / 2
    (2.5, 2.054)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = arr[np.isfinite(arr)]
    n, dropped = int(finite.size), int(arr.size - finite.size)
    nan = float("nan")
    if n == 0:
        return Interval(nan, nan, nan, nan, nan, 0, dropped, confidence)
    mean = float(finite.mean())
    if n == 1:
        return Interval(mean, nan, nan, nan, nan, 1, dropped, confidence)
    std = float(finite.std(ddof=1))
    if np.all(finite == finite[0]):
        mean, half, std = float(finite[0]), 0.0, 0.0  # exactly, not up to rounding
    else:
        t_crit = float(_scipy_stats().t.ppf(0.5 + confidence / 2, n - 1))
        half = t_crit * std / math.sqrt(n)
    low, high, clipped = mean - half, mean + half, False
    if bounds is not None:
        lo, hi = bounds
        if lo is not None and low < lo:
            low, clipped = float(lo), True
        if hi is not None and high > hi:
            high, clipped = float(hi), True
    return Interval(mean, low, high, half, std, n, dropped, confidence, clipped)


@dataclass(frozen=True)
class PairedComparison:
    """Strategy ``a`` against strategy ``b`` over paired seeds.

    Differences are ``a - b``, multiplied by ``scale`` (e.g. 100 to turn
    accuracies into percentage points).

    Attributes
    ----------
    name_a, name_b : str
    metric : str
        What was compared, e.g. ``"test accuracy"``.
    unit : str
        The unit of the scaled differences, e.g. ``"points"``.
    higher_is_better : bool
    differences : tuple of float
        Per-seed scaled differences of the pairs where both values were finite.
    n_pairs : int
        Pairs used.
    n_excluded : int
        Pairs left out because one side was not finite (a diverged run).
    wins, ties, losses : int
        Seeds on which ``a`` did better than, the same as, or worse than ``b``.
    difference : Interval
        Mean difference with its confidence interval.
    t_statistic, t_pvalue : float or None
        Paired t-test; None when it does not exist (see ``notes``).
    wilcoxon_statistic, wilcoxon_pvalue : float or None
        Wilcoxon signed-rank test; None when too few pairs (see ``notes``).
    effect_size : float or None
        Cohen's ``d_z``: the mean difference over the standard deviation of
        the differences (None when that is zero or there is one pair).
    p_holm : float or None
        :attr:`pvalue` after Holm's adjustment over ``n_comparisons``
        comparisons (:func:`with_holm`); None until adjusted.
    n_comparisons : int
        Size of the family the adjustment was over (1: not adjusted).
    notes : tuple of str
        Why a number is missing, in words.
    summary : str
        The whole result in one or two plain sentences.
    """

    name_a: str
    name_b: str
    metric: str
    unit: str
    higher_is_better: bool
    differences: tuple
    n_pairs: int
    n_excluded: int
    wins: int
    ties: int
    losses: int
    difference: Interval
    t_statistic: float | None = None
    t_pvalue: float | None = None
    wilcoxon_statistic: float | None = None
    wilcoxon_pvalue: float | None = None
    effect_size: float | None = None
    p_holm: float | None = None
    n_comparisons: int = 1
    notes: tuple = field(default_factory=tuple)
    summary: str = ""
    noun: str = "pooling"
    digits: int = 1

    @property
    def pvalue(self):
        """The paired t-test p-value when it exists, else the Wilcoxon one, else None."""
        return self.t_pvalue if self.t_pvalue is not None else self.wilcoxon_pvalue

    def to_dict(self):
        d = asdict(self)
        d["difference"] = self.difference.to_dict()
        d["pvalue"] = self.pvalue
        return _jsonable(d)


def paired_comparison(
    a,
    b,
    name_a="max",
    name_b="mean",
    *,
    metric="test accuracy",
    scale=100.0,
    unit="points",
    higher_is_better=True,
    confidence=0.95,
    noun="pooling",
    digits=1,
):
    """Compare two strategies run on the same seeds, seed by seed.

    Parameters
    ----------
    a, b : array_like of float, same length
        The metric per seed, in the same seed order.
    name_a, name_b : str
        Names used in the summary ("max pooling beat mean pooling ...").
    metric : str
        Name of the metric, for the summary.
    scale : float
        Differences are multiplied by this (100 turns fractions into points).
    unit : str
        Unit of the scaled difference.
    higher_is_better : bool
        Whether a larger value is a win (accuracy) or a loss (loss).
    confidence : float
        Coverage of the interval of the mean difference.
    noun : str
        Appended to names in the summary (``"max pooling"``); ``""`` for none.
    digits : int
        Decimals of the differences in the summary.

    Returns
    -------
    PairedComparison

    Notes
    -----
    The t-test is ``scipy.stats.ttest_rel`` (two-sided); the Wilcoxon test
    is ``scipy.stats.wilcoxon`` (two-sided, zero differences dropped,
    scipy's choice of exact or normal-approximation method).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must hold one value per seed each, got {a.size} and {b.size} values"
        )
    both = np.isfinite(a) & np.isfinite(b)
    n_excluded = int(a.size - both.sum())
    d = np.round((a[both] - b[both]) * scale, _DECIMALS)
    n = int(d.size)
    better = d if higher_is_better else -d
    wins, losses = int((better > 0).sum()), int((better < 0).sum())
    ties = n - wins - losses
    diff = mean_ci(d, confidence)
    notes = []
    t_stat = t_p = w_stat = w_p = None

    if n_excluded:
        notes.append(
            f"{n_excluded} seed(s) left out because a run did not finish with a finite "
            f"{metric} (diverged)"
        )
    if n == 0:
        notes.append("no seed where both runs have a finite value: nothing to compare")
    elif n == 1:
        notes.append("only one seed: no interval and no test are possible")
    elif diff.std == 0.0:
        notes.append(
            "the difference was the same on every seed, so its variance is zero and a "
            "t-test is undefined (no p-value reported)"
        )
    else:
        stats = _scipy_stats()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ttest_rel(d, np.zeros_like(d))
        t_stat, t_p = float(res.statistic), float(res.pvalue)

    nonzero = int(np.count_nonzero(d))
    if n >= 2 and nonzero < MIN_WILCOXON_PAIRS:
        notes.append(
            f"Wilcoxon signed-rank test not reported: it needs at least "
            f"{MIN_WILCOXON_PAIRS} seeds with a non-zero difference (got {nonzero}); "
            f"with fewer, even a clean sweep cannot reach p < 0.05"
        )
    elif nonzero >= MIN_WILCOXON_PAIRS:
        stats = _scipy_stats()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        w_stat, w_p = float(res.statistic), float(res.pvalue)

    comp = PairedComparison(
        name_a=name_a,
        name_b=name_b,
        metric=metric,
        unit=unit,
        higher_is_better=bool(higher_is_better),
        differences=tuple(float(x) for x in d),
        n_pairs=n,
        n_excluded=n_excluded,
        wins=wins,
        ties=ties,
        losses=losses,
        difference=diff,
        t_statistic=t_stat,
        t_pvalue=t_p,
        wilcoxon_statistic=w_stat,
        wilcoxon_pvalue=w_p,
        effect_size=float(diff.mean / diff.std) if n >= 2 and diff.std > 0 else None,
        notes=tuple(notes),
        noun=noun,
        digits=digits,
    )
    return _with_summary(comp, noun, digits)


def holm(pvalues):
    """Holm's step-down adjustment of a family of p-values.

    The ``i``-th smallest of ``m`` p-values is multiplied by ``m - i``
    (``i`` from 0), capped at 1, and made non-decreasing in that order.
    ``None`` (no test) stays ``None`` and does not count in ``m``.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03])   # m = 3: 0.01*3, then max(0.03*2, 0.03), max(0.04*1, 0.06)
    [0.03, 0.06, 0.06]
    """
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None and np.isfinite(p)]
    m = len(present)
    out = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = round(running, 15)
    return out


def with_holm(comparisons):
    """The comparisons of one family with Holm-adjusted p-values and sentences saying so."""
    adjusted = holm([c.pvalue for c in comparisons])
    m = sum(p is not None for p in adjusted)
    return [
        _with_summary(replace(c, p_holm=p, n_comparisons=max(m, 1)), c.noun, c.digits)
        for c, p in zip(comparisons, adjusted, strict=True)
    ]


# ------------------------------------------------------------------ wording
def format_p(p):
    """``"p = 0.013"``, ``"p < 0.001"``, or ``"no p-value"`` for None/NaN."""
    if p is None or not np.isfinite(p):
        return "no p-value"
    if p < 0.001:
        return "p < 0.001"
    if p < 0.01:
        return f"p = {p:.3f}"
    return f"p = {p:.2f}"


def format_interval(iv, scale=1.0, digits=2, unit=""):
    """``"91.3 ± 2.1"`` from an :class:`Interval`; says so when there is no interval.

    A clipped interval is not symmetric: ``"98.0 (93.0 to 100.0)"``.
    """
    if iv.n == 0:
        return "n/a"
    mean = iv.mean * scale
    text = f"{mean:.{digits}f}"
    if iv.n == 1:
        text += f"{unit} (1 seed, no CI)"
    elif iv.clipped:
        text += f" ({iv.low * scale:.{digits}f} to {iv.high * scale:.{digits}f}){unit}"
    else:
        text += f" ± {iv.half_width * scale:.{digits}f}{unit}"
    return text


def _signed(x, digits=1):
    return f"{x:+.{digits}f}"


def _with_summary(c, noun, digits):
    label_a = f"{c.name_a} {noun}".strip()
    label_b = f"{c.name_b} {noun}".strip()
    if c.n_pairs == 0:
        text = (
            f"No comparison of {c.metric}: no seed where both {label_a} and {label_b} "
            "finished with a finite value."
        )
        if c.n_excluded:
            text += f" {c.n_excluded} seed(s) left out: a run diverged."
        return _replace_summary(c, text)

    n = c.n_pairs
    every = {1: "the only seed", 2: "both seeds"}.get(n, f"all {n} seeds")
    if c.wins == n:
        head = f"{label_a} beat {label_b} on {every}"
    elif c.losses == n:
        head = f"{label_b} beat {label_a} on {every}"
    elif c.ties == n:
        head = f"{label_a} and {label_b} tied on {every}"
    else:
        # Lead with whichever side won more seeds.
        if c.losses > c.wins:
            head = f"{label_b} beat {label_a} on {c.losses} of {n} seeds"
            other, other_name = c.wins, c.name_a
        else:
            head = f"{label_a} beat {label_b} on {c.wins} of {n} seeds"
            other, other_name = c.losses, c.name_b
        extra = []
        if c.ties:
            extra.append(f"{c.ties} tied")
        if other:
            extra.append(f"{other_name} won {other}")
        head += " (" + ", ".join(extra) + ")"

    iv = c.difference
    unit = f" {c.unit}" if c.unit else ""
    body = f"mean {c.metric} difference {c.name_a} − {c.name_b} {_signed(iv.mean, digits)}{unit}"
    if iv.n >= 2:
        pct = int(round(iv.confidence * 100))
        body += f" ({pct}% CI {_signed(iv.low, digits)} to {_signed(iv.high, digits)})"
    tests = []
    if c.t_pvalue is not None:
        tests.append(f"paired t-test {format_p(c.t_pvalue)}")
    if c.wilcoxon_pvalue is not None:
        tests.append(f"Wilcoxon {format_p(c.wilcoxon_pvalue)}")
    if tests:
        body += ", " + ", ".join(tests)
    if c.effect_size is not None:
        body += f", effect size d_z = {c.effect_size:.2f}"
    adjusted = c.p_holm is not None and c.n_comparisons > 1
    if adjusted:
        body += f"; Holm-adjusted over {c.n_comparisons} comparisons {format_p(c.p_holm)}"
    text = f"{head}; {body}."

    p = c.p_holm if adjusted else c.pvalue
    level = "Holm-adjusted p" if adjusted else "p"
    split = (
        c.t_pvalue is not None
        and c.wilcoxon_pvalue is not None
        and (c.t_pvalue < 0.05) != (c.wilcoxon_pvalue < 0.05)
    )
    if split:
        text += (
            " The two tests disagree about the 5% level: treat this as weak evidence "
            "and run more seeds."
        )
    elif p is not None:
        if p < 0.05:
            better = label_a if (iv.mean > 0) == c.higher_is_better else label_b
            text += (
                f" The difference is larger than the seed-to-seed noise ({level} < 0.05): "
                f"{better} did better on {c.metric} here."
            )
        else:
            text += (
                f" The difference is within the seed-to-seed noise ({level} ≥ 0.05): these "
                "seeds show no reliable winner (which is not proof that there is none)."
            )
    elif n == 1:
        text += " One seed is an anecdote, not evidence: run more seeds for a test."
    elif iv.std == 0.0 and iv.mean == 0.0:
        text += " Identical on every seed: there is nothing to test."
    elif iv.std == 0.0:
        text += (
            " The difference was identical on every seed (zero variance), so no "
            "t-test p-value exists."
        )
    if c.n_excluded:
        text += f" {c.n_excluded} seed(s) left out: a run diverged."
    return _replace_summary(c, text[0].upper() + text[1:])


def _replace_summary(c, text):
    return replace(c, summary=text)


def _jsonable(obj):
    """Replace NaN/inf by None and tuples by lists, recursively, for strict JSON."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
