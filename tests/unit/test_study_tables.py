"""A study's paired tables from run summaries: Holm, missing partners, directions (no store)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from innerlens.analysis.stats import holm, paired_statistics
from innerlens.drivers.compare import summaries


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
