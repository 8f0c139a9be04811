"""The executor a study's options ask for: local worker processes, or one Ray task per run."""
from __future__ import annotations

from typing import TYPE_CHECKING

from innerlens.drivers.executor import Executor, default_workers
from innerlens.drivers.local_executor import LocalExecutor

if TYPE_CHECKING:
    from innerlens.configs.executor import ExecutorOptions


def make_executor(options: ExecutorOptions, workers: int | None, progress: bool = True, unit: str = "runs") -> Executor:
    """The executor a study's options ask for: local processes (``workers``: None one per core, 0 this
    process) or one Ray task per run. ``unit`` names a task on the progress bar."""
    if options.executor == "ray":
        from innerlens.drivers.ray_executor import RayExecutor

        return RayExecutor(options.ray_address, options.cpus_per_run, options.gpus_per_run, options.max_retries, progress, unit)
    count, threads = default_workers(workers)
    return LocalExecutor(0 if workers == 0 else count, threads, progress, options.max_retries, unit)
