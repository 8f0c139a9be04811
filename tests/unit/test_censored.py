"""Censored times against answers known by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from innerlens.analysis.censored import event_summary, event_table, kaplan_meier, paired_order, restricted_mean


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


def test_event_summary_gives_the_t_interval_only_when_every_event_was_observed() -> None:
    times = np.array([9_000.0, 10_500.0, 12_000.0, 11_000.0])
    row = event_summary(times, np.ones(4, bool), horizon=40_000)
    half = stats.t.ppf(0.975, 3) * times.std(ddof=1) / 2
    assert row["estimate"] == "mean" and row["mean"] == times.mean()
    assert np.isclose(row["ci_low"], times.mean() - half) and np.isclose(row["ci_high"], times.mean() + half)
    # one run never got there: the restricted mean by hand (S = 2/3 after 10, 1/3 after 20, censored at 40)
    row = event_summary(np.array([10.0, 20.0, 40.0]), np.array([True, True, False]), horizon=40)
    assert row["estimate"] == "restricted mean to 40" and np.isnan(row["ci_low"])
    assert np.isclose(row["mean"], 10 + 10 * 2 / 3 + 20 / 3) and row["km_median"] == 20 and row["events"] == 2


def test_event_table_reads_the_logged_sentinel_as_censored_at_the_horizon() -> None:
    frame = pd.DataFrame({"wd": [1, 1, 3, 3], "step": [100.0, 300.0, 200.0, -1.0]})
    table = event_table(frame, "wd", "step", horizon=1_000).set_index("wd")
    assert table.loc[1, "estimate"] == "mean" and table.loc[1, "mean"] == 200
    assert table.loc[3, "estimate"] == "restricted mean to 1000" and table.loc[3, "mean"] == 200 + 0.5 * 800
    assert table.loc[3, "events"] == 1  # the -1 is not a time of 1 step: never the fastest run
