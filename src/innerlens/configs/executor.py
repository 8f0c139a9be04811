"""Options every command that runs many runs shares: where the runs execute (see innerlens.drivers)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from innerlens.config import Config, non_negative, option, positive

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorOptions(Config):
    executor: str = option("local", "Where the runs execute: local worker processes, or one Ray task per run on a Ray cluster.", choices=EXECUTORS)
    ray_address: Optional[str] = option(None, "Ray cluster to join with --executor ray, e.g. ray://head:10001 or head:6379 (default: $RAY_ADDRESS, else a Ray instance started on this machine).")
    cpus_per_run: float = option(1.0, "CPUs each run reserves on the Ray cluster (also its torch threads).", check=positive)
    gpus_per_run: float = option(0.0, "GPUs each run reserves on the Ray cluster; fractions pack runs, e.g. 0.25 puts four on one GPU.", check=non_negative)
    max_retries: int = option(2, "Times a run whose worker or node died is retried; the retry resumes its MLflow run from the last checkpoint.", check=non_negative)

    def check(self) -> str | None:
        """Ray options need --executor ray."""
        if self.executor == "local" and (self.ray_address or self.gpus_per_run):
            return "--ray-address/--gpus-per-run: only with --executor ray"
        return None
