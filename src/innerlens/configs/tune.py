"""tune's options (see innerlens.drivers.tune for the study itself)."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Optional

from innerlens.config import Config, non_negative, option, positive, valid_seed
from innerlens.configs.executor import ExecutorOptions

FAMILY = "tune"


def searchable_families() -> tuple[str, ...]:
    """The families whose options declare a search space (a Config in ``innerlens.configs`` with its
    own ``search``): tune's ``--family`` choices follow the declarations, with no list to keep. Read
    from the option classes, not the registry, which sits above this layer; a test holds the two equal."""
    from innerlens import configs

    found = set()
    for module in pkgutil.iter_modules(configs.__path__):
        for value in vars(importlib.import_module(f"{configs.__name__}.{module.name}")).values():
            if isinstance(value, type) and issubclass(value, Config) and vars(value).get("search") is not None:
                found.add(value.family_name)
    return tuple(sorted(found))


TUNABLE = searchable_families()
SAMPLERS = ("tpe", "random", "cmaes")
PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class TuneConfig(ExecutorOptions):
    family_name = FAMILY
    environment_only_fields = ("storage",)  # $INNERLENS_TUNE_STORAGE

    family: str = option("self_modeling", "Family whose hyperparameters are searched.", choices=TUNABLE)
    n_trials: int = option(20, "Trials in the whole study, across every worker (finished or pruned).", check=positive)
    study_name: Optional[str] = option(None, "Optuna study name; the same name resumes or joins it (default: tune-<family>).")
    storage: Optional[str] = option(None, "Optuna storage URL: sqlite:///... or postgresql://... (default: $INNERLENS_TUNE_STORAGE, which keeps a password out of `ps`, else the journal file mlruns/optuna/journal.log, one host only).")
    sampler: str = option("tpe", "Optuna sampler.", choices=SAMPLERS)
    pruner: str = option("median", "Stop unpromising trials early from their per-evaluation validation metric.", choices=PRUNERS)
    timeout: Optional[float] = option(None, "Stop starting trials after this many seconds: trials already running finish.", check=positive)
    space: Optional[str] = option(None, "YAML search space replacing the family's own (see innerlens.search_space).")
    fixed: str = option("", "Family options fixed for every trial, space-separated name=value, e.g. 'max_epochs=5 d_model=32'.")
    n_workers: int = option(1, "Trials at once on this machine, each in a worker process (1: one after another in this process; with --executor ray the cluster's size decides).", check=positive)
    seed: int = option(0, "Sampler seed (one sampler, in the driver, decides every trial).", check=valid_seed)
    max_consecutive_failures: int = option(5, "Stop the study after this many failed trials in a row (and after n_trials failures in all).", check=positive)
    max_retries: int = option(2, "Times a trial whose worker died is retried (RDB storages by heartbeat; with --executor ray, Ray retries it and its run resumes).", check=non_negative)
    heartbeat_interval: int = option(10, "Seconds between trial heartbeats (RDB storages).", check=positive)
    register: bool = option(True, "Register the best trial's checkpoints in the Model Registry.")

    @property
    def resolved_study_name(self) -> str:
        return self.study_name or f"tune-{self.family}"

    def check(self) -> str | None:
        if self.executor == "ray" and self.n_workers > 1:
            return "--n-workers: local worker processes only; with --executor ray the cluster's size decides how many trials run at once"
        return None
