"""A study's paired tables from run summaries: Holm, missing partners, directions (no store)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from innerlens.analysis.stats import holm, paired_statistics
from innerlens.drivers.compare import summaries
from innerlens.drivers.self_modeling_comparison import SETTLED, study_statistics


def test_holm_by_definition() -> None:
    adjusted = holm(np.array([0.01, 0.04, 0.03, np.nan]))
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])


def test_pairs_missing_a_partner_are_left_out() -> None:
    table = pd.DataFrame([{"seed": s, "group": g, "key": "x", "value": v}
                          for s, g, v in [(0, "a", 1.0), (0, "b", 2.0), (1, "a", 1.5), (1, "b", 2.1), (2, "b", 9.0)]])
    row = paired_statistics(table, "a").iloc[0]
    assert row["n_pairs"] == 2 and row["mean_difference"] == pytest.approx(0.8)


def test_no_best_value_is_taken_of_a_test_metric_and_complexity_is_lower_is_better() -> None:
    history = pd.DataFrame({
        "run_id": "r", "step": [1, 2, 3] * 4,
        "key": ["test/acc"] * 3 + ["val/acc"] * 3 + ["weights/std"] * 3 + ["llc/mean"] * 3,
        "value": [0.5, 0.9, 0.7, 0.5, 0.9, 0.7, 0.08, 0.05, 0.06, 30.0, 20.0, 25.0],
    })
    best = summaries(history).set_index("key")["best"]
    assert np.isnan(best["test/acc"])
    assert best["val/acc"] == 0.9 and best["weights/std"] == 0.05 and best["llc/mean"] == 20.0


def test_a_group_sharing_no_seed_with_the_reference_has_no_row() -> None:
    table = pd.DataFrame([{"seed": s, "group": g, "key": "x", "value": float(s)}
                          for s, g in [(0, "a"), (1, "a"), (0, "b"), (1, "b"), (5, "c"), (6, "c")]])
    assert paired_statistics(table, "a")["group"].tolist() == ["b"]


def test_settled_counts_are_taken_over_the_seeds_both_arms_ran() -> None:
    """A baseline with seeds 0-3 against an arm with seeds 2-3: the baseline's settled count is over 2 runs, not 4."""
    settled = {("baseline", 0): 0, ("baseline", 1): 0, ("baseline", 2): 1, ("baseline", 3): 1, ("arm", 2): 0, ("arm", 3): 1}
    rows = [{"group": g, "seed": s, "key": SETTLED, "value": float(v)} for (g, s), v in settled.items()]
    rows += [{"group": g, "seed": s, "key": "weights/std_final", "value": 0.1 + 0.01 * s + (g == "arm") * 0.001}
             for (g, s) in settled]
    row = study_statistics(pd.DataFrame(rows)).query("key == 'weights/std_final'").iloc[0]
    assert (row["n_pairs"], row["settled_group"], row["settled_reference"]) == (2, "1/2", "2/2")


def test_measures_taken_after_each_runs_generalisation_are_tested_for_equivalence_like_those_at_the_end() -> None:
    """The timing-matched measures are the control for when a run generalised: a null there needs the same TOST."""
    settled = {("baseline", s): 1 for s in range(4)} | {("arm", s): 1 for s in range(4)}
    rows = [{"group": g, "seed": s, "key": SETTLED, "value": 1.0} for (g, s) in settled]
    rows += [{"group": g, "seed": s, "key": key, "value": base * (1 + 0.01 * s) + (g == "arm") * base * 0.001}
             for (g, s) in settled for key, base in (("weights/std_final", 0.1), ("weights/std_after_generalisation", 0.1),
                                                     ("llc/after_generalisation_mean_paper", 300.0))]
    table = study_statistics(pd.DataFrame(rows)).set_index("key")
    assert table.loc["weights/std_after_generalisation", "margin"] == pytest.approx(table.loc["weights/std_final", "margin"])
    assert table.loc["llc/after_generalisation_mean_paper", "tost_p"] < 0.05  # a 0.1 % shift is inside ±10 %
