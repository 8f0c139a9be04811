"""The paired statistics against reference computations: scipy's permutation test, TOST by its
definition (the 90 % t interval inside the margin), the t interval, Holm over a declared family."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from innerlens.analysis.stats import paired_statistics, sign_flip_p, t_interval, tost_p


def _differences(n: int, shift: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, n)


@pytest.mark.parametrize("n,shift,seed", [(5, 0.0, 0), (8, 0.8, 1), (10, 0.3, 2), (12, -1.0, 3)])
def test_sign_flip_p_equals_scipys_exact_paired_permutation_test(n: int, shift: float, seed: int) -> None:
    d = _differences(n, shift, seed)
    reference = stats.permutation_test((d, np.zeros(n)), lambda a, b, axis: np.mean(a - b, axis=axis),
                                       permutation_type="samples", n_resamples=np.inf, alternative="two-sided")
    assert sign_flip_p(d) == pytest.approx(reference.pvalue, rel=1e-9)


def test_sign_flip_p_of_five_same_signed_pairs_is_its_floor_two_in_thirty_two() -> None:
    assert sign_flip_p(np.array([1.0, 2.0, 3.0, 4.0, 5.0])) == pytest.approx(2 / 32)


@pytest.mark.parametrize("shift,margin", [(0.0, 0.8), (0.1, 0.5), (1.0, 0.5), (-0.4, 1.0)])
def test_tost_p_is_below_alpha_exactly_when_the_90_percent_interval_lies_inside_the_margin(shift: float, margin: float) -> None:
    d = _differences(10, shift, 7)
    low, high = t_interval(d, level=0.90)
    p = tost_p(d, margin)
    assert (p < 0.05) == (-margin < low and high < margin)
    se = d.std(ddof=1) / np.sqrt(len(d))  # the two one-sided tests by hand
    by_hand = max(1 - stats.t.cdf((d.mean() + margin) / se, 9), stats.t.cdf((d.mean() - margin) / se, 9))
    assert p == pytest.approx(by_hand, rel=1e-9)


def test_t_interval_is_scipys_one_sample_t_interval() -> None:
    d = _differences(7, 0.5, 4)
    reference = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert t_interval(d) == pytest.approx((reference.low, reference.high), rel=1e-9)


def test_holm_over_all_contrasts_corrects_across_metrics_not_within_each() -> None:
    rng = np.random.default_rng(0)
    rows = [{"group": group, "seed": seed, "key": key, "value": rng.normal(1.0 if group == "x" else 0.0, 0.3)}
            for key in ("a", "b") for group in ("ref", "x") for seed in range(8)]
    table = pd.DataFrame(rows)
    per_key = paired_statistics(table, "ref")
    together = paired_statistics(table, "ref", holm_family="all", margins={"a": ("relative", 0.1), "b": ("absolute", 0.2)})
    assert (per_key["permutation_p_holm"] == per_key["permutation_p"]).all()  # one contrast per key: nothing to correct
    assert together["permutation_p_holm"].tolist() == pytest.approx([2 * min(together["permutation_p"])] * 2)
    assert together.set_index("key").loc["b", "margin"] == 0.2
    assert together.set_index("key").loc["a", "margin"] == pytest.approx(0.1 * abs(together.set_index("key").loc["a", "mean_reference"]))


def test_a_bounded_interval_stays_inside_its_bounds_where_a_t_interval_does_not() -> None:
    """Five AUCs, one at chance: the plain t-interval passes 1, the logit-scale one cannot."""
    from innerlens.analysis.stats import bounded_interval, t_interval

    aucs = np.array([0.50, 0.87, 0.95, 0.99, 0.98])
    assert t_interval(aucs)[1] > 1.0
    low, high = bounded_interval(aucs)
    assert 0.0 < low < np.median(aucs) < high < 1.0
    assert bounded_interval(np.array([0.2, 0.3, 0.25, 0.35]), low=0.0, high=1.0)[0] > 0.0
