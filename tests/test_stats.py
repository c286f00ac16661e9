"""cnnpool.experiments.stats against numbers worked out by hand."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("scipy")

from cnnpool.experiments.stats import (  # noqa: E402
    format_interval,
    format_p,
    mean_ci,
    paired_comparison,
)

# Student t critical values t_{0.975, df} from printed tables.
T975 = {1: 12.7062, 3: 3.1824, 7: 2.3646}


def t3_cdf(t):
    """Closed form of the t distribution's CDF with 3 degrees of freedom."""
    u = t / math.sqrt(3)
    return 0.5 + (u / (1 + u * u) + math.atan(u)) / math.pi


# ------------------------------------------------------------------- mean_ci
def test_mean_ci_four_values():
    iv = mean_ci([1.0, 2.0, 3.0, 4.0])
    s = math.sqrt(5 / 3)  # sum of squared deviations 5, over n - 1 = 3
    assert iv.mean == 2.5 and iv.n == 4
    assert iv.std == pytest.approx(s)
    assert iv.half_width == pytest.approx(T975[3] * s / 2, rel=1e-4)
    assert iv.low == pytest.approx(2.5 - 2.0543, abs=1e-4)
    assert iv.high == pytest.approx(2.5 + 2.0543, abs=1e-4)


def test_mean_ci_two_values_uses_one_degree_of_freedom():
    iv = mean_ci([2.0, 4.0])
    # s = sqrt(2), se = s / sqrt(2) = 1, half = t_{.975,1}
    assert iv.half_width == pytest.approx(T975[1], rel=1e-4)


def test_mean_ci_eight_values_other_confidence():
    values = [0.5, 0.7, 0.6, 0.8, 0.4, 0.6, 0.7, 0.5]
    iv = mean_ci(values)
    s = float(np.std(values, ddof=1))
    assert iv.half_width == pytest.approx(T975[7] * s / math.sqrt(8), rel=1e-4)
    assert mean_ci(values, confidence=0.99).half_width > iv.half_width


def test_mean_ci_one_value_has_no_interval():
    iv = mean_ci([0.9])
    assert iv.mean == 0.9 and iv.n == 1 and not iv.has_interval
    assert math.isnan(iv.half_width) and math.isnan(iv.low) and math.isnan(iv.std)
    assert format_interval(iv, 100, 1) == "90.0 (1 seed, no CI)"


def test_mean_ci_zero_variance_is_a_zero_width_interval():
    iv = mean_ci([0.8, 0.8, 0.8])
    assert iv.half_width == 0.0 and iv.low == iv.high == 0.8 and iv.std == 0.0


def test_mean_ci_leaves_out_and_counts_nonfinite():
    iv = mean_ci([1.0, float("nan"), 3.0, float("inf")])
    assert iv.mean == 2.0 and iv.n == 2 and iv.n_nonfinite == 2
    empty = mean_ci([float("nan")])
    assert empty.n == 0 and math.isnan(empty.mean)
    assert format_interval(empty) == "n/a"


def test_mean_ci_bad_confidence():
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1, 2], confidence=95)


# ------------------------------------------------------------------- paired
def test_paired_t_test_by_hand():
    a = [0.90, 0.80, 0.85, 0.95]
    b = [0.85, 0.80, 0.80, 0.90]
    c = paired_comparison(a, b)
    # differences in points: 5, 0, 5, 5; mean 3.75, s = 2.5, se = 1.25, t = 3
    assert c.differences == (5.0, 0.0, 5.0, 5.0)
    assert (c.wins, c.ties, c.losses) == (3, 1, 0)
    assert c.difference.mean == pytest.approx(3.75)
    assert c.difference.std == pytest.approx(2.5)
    assert c.t_statistic == pytest.approx(3.0)
    assert c.t_pvalue == pytest.approx(2 * (1 - t3_cdf(3.0)), abs=1e-9)  # 0.0577
    assert c.difference.half_width == pytest.approx(T975[3] * 1.25, rel=1e-4)
    # only 3 non-zero differences: no Wilcoxon, and it says why
    assert c.wilcoxon_pvalue is None
    assert any("Wilcoxon" in note for note in c.notes)
    assert c.pvalue == c.t_pvalue
    assert "3 of 4 seeds" in c.summary and "+3.8 points" in c.summary
    assert "p = 0.06" in c.summary and "no reliable winner" in c.summary


def test_wilcoxon_exact_by_hand():
    # differences 1..7 and -8: W- = 8; subsets of {1..8} with rank sum <= 8: 25
    a = [1, 2, 3, 4, 5, 6, 7, 0]
    b = [0, 0, 0, 0, 0, 0, 0, 8]
    c = paired_comparison(a, b, scale=1.0, unit="")
    assert c.wilcoxon_statistic == 8.0
    assert c.wilcoxon_pvalue == pytest.approx(2 * 25 / 256)
    assert (c.wins, c.losses) == (7, 1)


def test_clean_sweep_of_eight_has_wilcoxon_but_no_fake_t_test():
    c = paired_comparison([0.9] * 8, [0.88] * 8)
    # differences all +2 points: zero variance, t undefined (scipy would say p = 0)
    assert c.t_pvalue is None and c.t_statistic is None
    assert any("variance is zero" in note for note in c.notes)
    assert c.wilcoxon_pvalue == pytest.approx(2 / 2**8)
    assert c.difference.mean == pytest.approx(2.0) and c.difference.half_width == 0.0
    assert "all 8 seeds" in c.summary


def test_differences_equal_up_to_float_rounding_are_ties():
    # 0.92 - 0.90 and 0.90 - 0.88 differ in the last bits; both are 2 points
    c = paired_comparison([0.92, 0.90, 0.94], [0.90, 0.88, 0.92])
    assert c.difference.std == 0.0 and c.t_pvalue is None


def test_one_seed_gives_no_p_value():
    c = paired_comparison([0.9], [0.8])
    assert c.n_pairs == 1 and c.pvalue is None and c.t_pvalue is None
    assert math.isnan(c.difference.half_width)
    assert "anecdote" in c.summary and "p =" not in c.summary


def test_identical_results():
    c = paired_comparison([0.7, 0.8, 0.9], [0.7, 0.8, 0.9])
    assert (c.wins, c.ties, c.losses) == (0, 3, 0) and c.pvalue is None
    assert "tied on all 3 seeds" in c.summary


def test_lower_is_better_for_loss():
    c = paired_comparison(
        [0.3, 0.2, 0.25],
        [0.35, 0.3, 0.3],
        metric="final loss",
        scale=1.0,
        unit="",
        higher_is_better=False,
        digits=3,
    )
    assert (c.wins, c.losses) == (3, 0)
    assert c.difference.mean == pytest.approx(-0.2 / 3)
    assert "-0.067" in c.summary


def test_diverged_seed_is_excluded_and_reported():
    c = paired_comparison([0.9, float("nan"), 0.8, 0.7], [0.7, 0.8, 0.9, 0.6])
    assert c.n_pairs == 3 and c.n_excluded == 1
    assert "diverged" in c.summary and any("diverged" in n for n in c.notes)


def test_everything_diverged():
    c = paired_comparison([float("nan")] * 2, [0.5, 0.5])
    assert c.n_pairs == 0 and c.pvalue is None
    assert c.summary.startswith("No comparison")


def test_significant_result_in_words():
    a = [0.92, 0.90, 0.95, 0.96, 0.90, 0.93, 0.94, 0.91]
    b = [0.90, 0.86, 0.90, 0.90, 0.88, 0.90, 0.88, 0.86]
    c = paired_comparison(a, b)
    assert c.t_pvalue < 0.001 and c.wilcoxon_pvalue < 0.05
    assert "all 8 seeds" in c.summary and "max pooling did better" in c.summary


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="one value per seed"):
        paired_comparison([1, 2], [1])


def test_to_dict_is_strict_json():
    c = paired_comparison([0.9], [0.8])
    text = json.dumps(c.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["t_pvalue"] is None and back["difference"]["half_width"] is None


@pytest.mark.parametrize(
    "p, text",
    [
        (0.0123, "p = 0.01"),
        (0.0049, "p = 0.005"),
        (0.0004, "p < 0.001"),
        (0.5, "p = 0.50"),
        (None, "no p-value"),
        (float("nan"), "no p-value"),
    ],
)
def test_format_p(p, text):
    assert format_p(p) == text


def test_summary_leads_with_the_side_that_won_more_seeds():
    c = paired_comparison([0.8, 0.7, 0.9, 0.6], [0.9, 0.8, 0.9, 0.5])
    assert (c.wins, c.ties, c.losses) == (1, 1, 2)
    assert c.summary.startswith("Mean pooling beat max pooling on 2 of 4 seeds (1 tied, max won 1)")
