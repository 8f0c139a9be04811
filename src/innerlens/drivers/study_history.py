"""A study's runs epoch by epoch, whatever their status: the record of a pilot or a stopped study.

A study's run summaries hold its finished runs' end values; a run stopped midway (KILLED, resumable)
leaves only its metric history in the store, and that history is what a README line about it cites.
"""
from __future__ import annotations

import pandas as pd

from innerlens import tracking
from innerlens.configs.self_modeling_comparison import FAMILY
from innerlens.errors import ConfigError


def study_history(study: str, keys: list[str]) -> pd.DataFrame:
    """One row per run and epoch of the study named ``study`` (its --study-name): the run's name and
    status, the epoch, and a column per key (empty where a run did not log it, e.g. a baseline's
    auxiliary weight)."""
    found = tracking.named_study(FAMILY, study)
    if found is None:
        raise ConfigError(f"no study called {study!r} in this store")
    parent, _ = found
    runs = {run.info.run_id: run for run in tracking.children(parent)}
    tidy = tracking.children_history(parent)
    unknown = sorted(set(keys) - set(tidy["key"]))
    if unknown:
        raise ConfigError(f"not logged by {study}'s runs: {', '.join(unknown)}")
    table = (tidy[tidy["key"].isin(keys)].pivot_table(index=["run_id", "step"], columns="key", values="value")
             .reset_index())
    table.insert(0, "run", table["run_id"].map(lambda run_id: runs[run_id].info.run_name))
    table.insert(1, "status", table["run_id"].map(lambda run_id: runs[run_id].info.status))
    table = table.rename(columns={"step": "epoch"})[["run", "status", "epoch", *keys]]
    return table.sort_values(["run", "epoch"], ignore_index=True)
