"""The rounding control as a standing check on a self-modeling study.

A headline contrast is a finding only if the same study rerun on another float path (stacked
seeds, ``--relabel-inputs``) gives it the same verdict. Agreement proves nothing for an arm whose
rerun came out bit-identical: that arm was not perturbed (a thread-count change did exactly this to
the MLP's self-modeled runs), so each contrast also says whether both of its sides moved.
"""
from __future__ import annotations

import pandas as pd

from innerlens.drivers.self_modeling_comparison import BASELINE, PRIMARY_METRICS, study_statistics, verdict

RUN = ["group", "seed"]


def identical_runs(first: pd.DataFrame, second: pd.DataFrame, keys: tuple[str, ...] = tuple(PRIMARY_METRICS)) -> pd.DataFrame:
    """Per group of two studies' run summaries (``group, seed, key, value``): the seeds in both, and
    how many of them measured exactly the same value of every one of ``keys`` (not perturbed; an
    epoch's logged loss may round differently while the training itself does not)."""
    both = first[first["key"].isin(keys)].merge(second[second["key"].isin(keys)], on=[*RUN, "key"], suffixes=("_first", "_second"))
    same = both.assign(same=both["value_first"] == both["value_second"]).groupby(RUN)["same"].all()
    return same.groupby("group").agg(runs="count", identical="sum").reset_index()


def rounding_check(first: pd.DataFrame, second: pd.DataFrame, reference: str = BASELINE) -> pd.DataFrame:
    """Every primary contrast of both studies against ``reference``: its verdict in each, whether they
    agree, whether both sides were perturbed, and ``finding``: an effect or an equivalence that agrees
    on a perturbed path (anything else is not reported as one). Only the runs both studies have are
    compared (a rerun of seeds 0-4 checks the study's seeds 0-4), so a verdict cannot change by n alone."""
    common = first[RUN].drop_duplicates().merge(second[RUN].drop_duplicates())
    first, second = (summaries.merge(common, on=RUN) for summaries in (first, second))
    verdicts = []
    for name, summaries in (("first", first), ("second", second)):
        statistics = study_statistics(summaries, reference=reference)
        primary = statistics[statistics["primary"]]
        verdicts.append(primary.assign(verdict=primary.apply(verdict, axis=1))[
            ["key", "group", "reference", "n_pairs", "mean_difference", "verdict"]].add_suffix(f"_{name}"))
    table = verdicts[0].merge(verdicts[1], left_on=["key_first", "group_first", "reference_first"],
                              right_on=["key_second", "group_second", "reference_second"])
    table = table.rename(columns={"key_first": "key", "group_first": "group", "reference_first": "reference"})
    table = table.drop(columns=["key_second", "group_second", "reference_second"])
    unmoved = identical_runs(first, second).set_index("group")["identical"]
    table["identical_runs"] = [int(unmoved.get(g, 0)) + int(unmoved.get(r, 0)) for g, r in zip(table["group"], table["reference"])]
    table["agree"] = table["verdict_first"] == table["verdict_second"]
    table["perturbed"] = table["identical_runs"] == 0
    table["finding"] = table["agree"] & table["perturbed"] & (table["verdict_first"] != "inconclusive")
    return table
