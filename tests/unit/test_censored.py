"""Censored times against answers known by hand."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from innerlens.analysis.censored import kaplan_meier, paired_order, restricted_mean


def test_kaplan_meier_matches_the_product_limit_by_hand() -> None:
    times = np.array([2, 3, 3, 5, 8, 9])
    observed = np.array([1, 1, 0, 1, 0, 1], bool)
    event_times, survival = kaplan_meier(times, observed)
    assert event_times.tolist() == [2, 3, 5, 9]
    assert survival == pytest.approx([5 / 6, 5 / 6 * 4 / 5, 5 / 6 * 4 / 5 * 2 / 3, 0.0])


def test_restricted_mean_without_censoring_is_the_mean_of_times_capped_at_the_horizon() -> None:
    times = np.array([10.0, 20.0, 40.0, 80.0])
    assert restricted_mean(times, np.ones(4, bool), horizon=50) == pytest.approx(np.mean(np.minimum(times, 50)))


def test_restricted_mean_counts_a_censored_run_as_surviving_to_its_censoring_time() -> None:
    # Two runs: one generalises at 10, one never does by 100 (censored). Up to 100: S = 1 until 10, then 1/2.
    assert restricted_mean(np.array([10.0, 100.0]), np.array([True, False]), horizon=100) == pytest.approx(10 + 0.5 * 90)


def test_paired_order_uses_only_pairs_whose_order_censoring_allows() -> None:
    a_times, a_seen = np.array([5, 7, 50, 301, 301, 20]), np.array([1, 1, 1, 0, 0, 1], bool)
    b_times, b_seen = np.array([9, 7, 301, 40, 301, 301]), np.array([1, 1, 0, 1, 0, 0], bool)
    order = paired_order(a_times, a_seen, b_times, b_seen)
    assert (order.earlier, order.later, order.tied, order.unknown) == (3, 1, 1, 1)
    assert order.p_value == pytest.approx(stats.binomtest(3, 4).pvalue)


def test_gehan_without_censoring_is_the_mann_whitney_test_with_its_normal_approximation() -> None:
    from innerlens.analysis.censored import gehan_test

    rng = np.random.default_rng(0)
    a, b = rng.exponential(10, 12), rng.exponential(20, 15)
    reference = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=False)
    assert gehan_test(a, np.ones(12, bool), b, np.ones(15, bool)) == pytest.approx(reference.pvalue, rel=1e-9)


def test_gehan_counts_a_run_that_never_got_there_as_slower_than_every_earlier_event() -> None:
    from innerlens.analysis.censored import gehan_test

    fast, fast_seen = np.array([5.0, 6, 7, 8, 9, 10]), np.ones(6, bool)
    never, never_seen = np.full(6, 100.0), np.zeros(6, bool)
    assert gehan_test(fast, fast_seen, never, never_seen) < 0.01
