"""grokking_sweep's options: one grokking hyperparameter x seeds (see innerlens.drivers.grokking_sweep)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from innerlens.config import distinct_seeds, non_negative, option
from innerlens.configs.executor import ExecutorOptions
from innerlens.configs.grokking import GrokkingConfig

FAMILY = "grokking_sweep"
SWEEPABLE = ("none", "lr", "batch_size", "weight_decay", "train_fraction")


@dataclass(frozen=True)
class GrokkingSweepConfig(ExecutorOptions, GrokkingConfig):
    family_name = FAMILY
    hidden_fields = ("seed", "resume")
    unchecked_bases = (GrokkingConfig,)

    sweep: str = option("none", "Hyperparameter to sweep (none: seeds only).", choices=SWEEPABLE)
    values: tuple[float, ...] = option((), "Values of --sweep, comma-separated (train_fraction splits the rest evenly into val/test).")
    seeds: tuple[int, ...] = option((0, 1, 2), "Seeds; every value is trained once per seed (each its own nested run).", check=distinct_seeds)
    study_name: Optional[str] = option(None, "Name of the sweep's parent run. Re-running under the same name continues that sweep: finished runs are kept, unfinished ones resume from their last checkpoint (the options must match).")
    workers: Optional[int] = option(0, "Local worker processes (empty: one per core; 0: in this process, with a progress bar per run).", check=non_negative)
    skip_training: bool = option(False, "Draw the figures from the latest existing sweep instead of training.")

    def check(self) -> str | None:
        if (self.sweep == "none") != (not self.values):
            return "--values: give values exactly when --sweep names a hyperparameter (e.g. --sweep weight_decay --values 0.3,1,3)"
        if self.sweep == "batch_size" and any(v != int(v) for v in self.values):
            return "--values: batch sizes must be whole numbers"
        if len(set(self.values)) != len(self.values):
            return "--values: values must be distinct"
        self.single_runs()  # each single run checks itself in full as it is built
        return None

    def single_runs(self) -> list[GrokkingConfig]:
        own = {f.name for f in dataclasses.fields(GrokkingSweepConfig)} - {f.name for f in dataclasses.fields(GrokkingConfig)}
        shared = {k: v for k, v in self.to_dict().items() if k not in own}
        configs = []
        for value in self.values or (None,):
            changes = {} if value is None else _changes(self.sweep, value)
            configs += [GrokkingConfig(**{**shared, **changes, "seed": seed}) for seed in self.seeds]
        return configs


def _changes(parameter: str, value: float) -> dict[str, float | int]:
    if parameter == "batch_size":
        return {"batch_size": int(value)}
    if parameter == "train_fraction":
        rest = (1.0 - value) / 2
        return {"train_fraction": value, "val_fraction": rest, "test_fraction": rest}
    return {parameter: value}
