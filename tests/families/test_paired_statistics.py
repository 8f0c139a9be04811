"""Paired statistics read from a store seeded with known values: scipy's numbers."""
from __future__ import annotations

import zlib

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from innerlens import tracking
from innerlens.analysis.stats import holm
from innerlens.drivers.self_modeling_comparison import BASELINE, TAG_WEIGHT, run_summaries, study_statistics

SEEDS = range(8)


CELLS = {(BASELINE, 0.0): 0.0, ("middle_layer", 0.1): -0.3, ("last_layer", 0.1): 0.05}


def _value(cell: tuple[str, float], seed: int, key: str) -> float:
    # zlib.crc32, not hash(): str hashes change with every interpreter (PYTHONHASHSEED), and so did this data
    noise = np.random.default_rng(zlib.crc32(repr((cell, seed, key)).encode())).normal(0, 0.2)
    return {"llc/final_mean": 20.0, "weights/std_final": 0.1, "test/acc_at_best": 0.97}[key] + CELLS[cell] + noise + 0.01 * seed


def test_study_statistics_equal_scipy_on_a_seeded_store(local_store: str) -> None:
    client = MlflowClient()
    experiment = mlflow.get_experiment_by_name("tests").experiment_id
    parent = client.create_run(experiment).info.run_id
    for seed in SEEDS:
        for (variant, weight) in CELLS:
            child = client.create_run(experiment, tags={"mlflow.parentRunId": parent, tracking.TAG_VARIANT: variant,
                                                        tracking.TAG_SEED: str(seed), TAG_WEIGHT: f"{weight:g}"}).info.run_id
            for key in ("llc/final_mean", "weights/std_final", "test/acc_at_best"):
                client.log_metric(child, key, _value((variant, weight), seed, key), step=50)
            client.set_terminated(child)
    table = study_statistics(run_summaries(parent))
    assert set(table["group"]) == {"middle_layer w=0.1", "last_layer w=0.1"}
    raw_p = {}
    for key in ("llc/final_mean", "weights/std_final", "test/acc_at_best"):
        rows = table[table["key"] == key].set_index("group")
        for group, cell in (("middle_layer w=0.1", ("middle_layer", 0.1)), ("last_layer w=0.1", ("last_layer", 0.1))):
            values = np.array([_value(cell, s, key) for s in SEEDS])
            reference = np.array([_value((BASELINE, 0.0), s, key) for s in SEEDS])
            row = rows.loc[group]
            assert row["n_pairs"] == len(SEEDS)
            assert row["mean_difference"] == pytest.approx((values - reference).mean())
            assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(values, reference).pvalue)
            assert row["paired_t_p"] == pytest.approx(stats.ttest_rel(values, reference).pvalue)
            assert row["ci_low"] < row["mean_difference"] < row["ci_high"]
            assert row["t_ci_low"] < row["mean_difference"] < row["t_ci_high"]
            raw_p[(key, group)] = row["paired_t_p"]
    # Holm over every primary contrast of the study at once (3 metrics x 2 cells), not within each metric.
    expected = dict(zip(raw_p, holm(np.array(list(raw_p.values())))))
    for (key, group), adjusted in expected.items():
        row = table[(table["key"] == key) & (table["group"] == group)]
        assert row["paired_t_p_holm"].item() == pytest.approx(adjusted)
    assert table.loc[(table["key"] == "llc/final_mean") & (table["group"] == "middle_layer w=0.1"), "wilcoxon_p"].item() < 0.05
