"""The rounding control's standing check: a contrast counts only if both float paths agree and both of its sides moved."""
from __future__ import annotations

import numpy as np
import pandas as pd

from innerlens.drivers.rounding_check import identical_runs, rounding_check

KEYS = ("llc/final_mean", "llc/final_mean_paper", "weights/std_final", "test/acc_at_best")


def study(levels: dict[str, float], seed: int) -> pd.DataFrame:
    """Run summaries of 10 seeds per group: every metric at ``level`` times (1 + noise)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame([{"group": group, "seed": s, "key": key, "value": level * (1 + 0.01 * rng.standard_normal())}
                         for group, level in levels.items() for s in range(10) for key in KEYS])


def test_a_bit_identical_arm_is_counted_and_its_agreement_is_no_finding() -> None:
    first = study({"baseline": 1.0, "cell": 0.8}, seed=0)
    moved_baseline = study({"baseline": 1.0}, seed=1)
    second = pd.concat([moved_baseline, first[first["group"] == "cell"]], ignore_index=True)  # the cell's runs unmoved
    counts = identical_runs(first, second).set_index("group")
    assert counts.loc["cell", "identical"] == 10 and counts.loc["baseline", "identical"] == 0
    table = rounding_check(first, second)
    assert len(table) == len(KEYS) and table["agree"].all()  # 20 % lower in both
    assert set(table["verdict_first"]) == {"lower"}
    assert not table["perturbed"].any() and not table["finding"].any()


def test_agreement_on_a_perturbed_path_is_a_finding_and_a_flip_is_not() -> None:
    first = study({"baseline": 1.0, "cell": 0.8, "null": 1.0}, seed=0)
    second = study({"baseline": 1.0, "cell": 0.8, "null": 1.03}, seed=2)
    table = rounding_check(first, second).set_index(["key", "group"])
    assert table["perturbed"].all()
    assert table.loc[("llc/final_mean", "cell"), "finding"]
    assert table.loc[("llc/final_mean", "cell"), "verdict_second"] == "lower"
    null = table.loc[("llc/final_mean", "null")]
    assert null["verdict_first"] == "equivalent" and null["verdict_second"] != "equivalent"
    assert not null["agree"] and not null["finding"]


def test_only_the_seeds_both_paths_ran_are_compared() -> None:
    first = study({"baseline": 1.0, "cell": 0.8}, seed=0)
    second = study({"baseline": 1.0, "cell": 0.8}, seed=3)
    second = second[second["seed"] < 5]  # the rerun covers seeds 0-4 only
    table = rounding_check(first, second)
    assert (table["n_pairs_first"] == 5).all() and (table["n_pairs_second"] == 5).all()
    # Five pairs cannot give an exact sign-flip p below 2/32: the 20 % drop is no finding on either path.
    assert set(table["verdict_first"]) == set(table["verdict_second"]) == {"inconclusive"}
    assert table["agree"].all() and not table["finding"].any()
