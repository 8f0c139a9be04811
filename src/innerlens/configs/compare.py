"""compare's options (see innerlens.drivers.compare for the comparison itself)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from innerlens.config import Config, option, positive

FAMILY = "compare"
RUN_STATES = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")


@dataclass(frozen=True)
class CompareConfig(Config):
    family_name = FAMILY

    experiments: tuple[str, ...] = option((), "Experiment names to search (default: MLFLOW_EXPERIMENT_NAME or innerlens).")
    filter: Optional[str] = option(None, "MLflow search filter, e.g. \"params.lr = '0.001'\".")
    family: Optional[str] = option(None, "Only runs of this family (tag innerlens.family).")
    variant: Optional[str] = option(None, "Only runs of this variant (tag innerlens.variant).")
    study: Optional[str] = option(None, "Only trials of this tune study (tag innerlens.study).")
    states: tuple[str, ...] = option(("FINISHED",), "Run states to include.", choices=RUN_STATES)
    group_by: tuple[str, ...] = option(("variant",), "Params or tags to group by: a name (innerlens tag, else param), params.X or tags.X.")
    metrics: tuple[str, ...] = option((), "Metric keys to compare (default: the family's headline metrics, else every metric).")
    reference: Optional[str] = option(None, "Group the others are tested against (default: the first group).")
    paired_by: Optional[str] = option(None, "Pair runs that share this param or tag (e.g. seed): paired tests on final values instead of unpaired ones.")
    individual_runs: bool = option(False, "Draw each run as a thin line under its group's mean and band.")
    scatter: tuple[str, ...] = option((), "Two summary values to scatter, e.g. final:val/acc,best:train/loss.")
    output_dir: Optional[str] = option(None, "Also write the report and figures here.")
    max_runs: int = option(5000, "Most runs to compare.", check=positive)
    workers: int = option(16, "Parallel requests when fetching histories.", check=positive)

    def check(self) -> str | None:
        if self.scatter and (len(self.scatter) != 2 or any(not s.startswith(("final:", "best:")) for s in self.scatter)):
            return "--scatter takes two summary values, each final:KEY or best:KEY"
        return None
