"""Run many independent runs at once: a pool of worker processes on this machine, or a Ray cluster.

Small models leave cores idle when one process trains them with every thread (two
single-threaded processes gave 1.6x the throughput of one two-threaded process here), so a study
runs as ``workers`` processes with ``threads`` torch threads each. Each task is a picklable
``(function, argument)``; a task that raises is reported as failed and the study goes on.
:class:`innerlens.drivers.ray_executor.RayExecutor` implements the same :class:`Executor` shape.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from innerlens.config import Config
    from innerlens.configs.executor import ExecutorOptions


@dataclass(frozen=True)
class TaskResult:
    label: str
    value: Any = None
    error: str = ""  # first line of the exception; empty when the task succeeded


class Executor(Protocol):
    def run(self, function: Callable[[Any], Any], tasks: Iterable[tuple[str, Any]]) -> list[TaskResult]: ...

    def describe(self) -> str: ...


def default_workers(requested: int | None = None) -> tuple[int, int]:
    """(workers, torch threads per worker): one single-threaded worker per core unless told otherwise."""
    cores = os.cpu_count() or 1
    workers = requested or cores
    return workers, max(1, cores // workers)


def make_executor(options: ExecutorOptions, workers: int | None, progress: bool = True) -> Executor:
    """The executor a study's options ask for: local processes (``workers``: None one per core, 0 this
    process) or one Ray task per run."""
    if options.executor == "ray":
        from innerlens.drivers.ray_executor import RayExecutor

        return RayExecutor(options.ray_address, options.cpus_per_run, options.gpus_per_run, options.max_retries, progress)
    count, threads = default_workers(workers)
    return LocalExecutor(0 if workers == 0 else count, threads, progress)


def study_run(run: Callable[..., str], config: Config, parent_run_id: str, task: str, tags: dict[str, str],
              params: dict[str, str] | None = None, on_start: Callable[[str], None] | None = None) -> str:
    """One run of a study, nested under the parent and named ``task``; the run id.

    An executor may run a task again after its worker died: the attempt then continues the run the
    earlier one started, from its last checkpoint, so the study keeps one run per task with every
    metric logged once. A run that already finished is not trained again.
    """
    from innerlens import tracking

    earlier = tracking.task_run(parent_run_id, task)
    if earlier is not None and earlier[1] == "FINISHED":
        return earlier[0]
    if earlier is not None:
        config = config.replace(resume=earlier[0])
    with tracking.run_context(parent_run_id, {**tags, tracking.TAG_TASK: task}, params or {}, on_start):
        return run(config, progress=False)  # nested by the run context, in any process


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _start_worker(threads: int) -> None:
    """A worker's set-up: its thread count, and SIGTERM ending its run KILLED (as in the parent)."""
    from innerlens.drivers.signals import terminate_as_interrupt

    terminate_as_interrupt()
    _set_threads(threads)


def _call(function: Callable[[Any], Any], argument: Any) -> Any:
    return function(argument)


class LocalExecutor:
    """``workers`` spawned processes (0: run in this process, one after another)."""

    def __init__(self, workers: int, threads: int, progress: bool = True) -> None:
        self.workers, self.threads, self.progress = workers, threads, progress

    def describe(self) -> str:
        return f"{max(self.workers, 1)} local worker(s) x {self.threads} thread(s)"

    def run(self, function: Callable[[Any], Any], tasks: Iterable[tuple[str, Any]]) -> list[TaskResult]:
        """Every task's result in submission order, with one progress bar over the study."""
        tasks = list(tasks)
        bar = tqdm(total=len(tasks), desc="runs", disable=not self.progress)
        results: dict[int, TaskResult] = {}
        if self.workers == 0:
            import torch

            before = torch.get_num_threads()
            _set_threads(self.threads)  # the same arithmetic as a worker's, so results match bit for bit
            try:
                for index, (label, argument) in enumerate(tasks):
                    results[index] = settle(label, lambda: function(argument))
                    bar.update()
            finally:
                torch.set_num_threads(before)
            bar.close()
            return [results[i] for i in range(len(tasks))]
        context = multiprocessing.get_context("spawn")  # no forked torch or MLflow state
        pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker, initargs=(self.threads,))
        try:
            pending: dict[Future, int] = {pool.submit(_call, function, argument): i for i, (_, argument) in enumerate(tasks)}
            failed = 0
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    results[index] = settle(tasks[index][0], future.result)
                    failed += bool(results[index].error)
                    if results[index].error:
                        tqdm.write(f"{results[index].label} failed: {results[index].error}")
                    bar.set_postfix(failed=failed, running=min(len(pending), self.workers))
                    bar.update()
        except BaseException:
            # Ctrl-C or SIGTERM: no new runs; each worker gets SIGTERM and ends its run KILLED.
            workers = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()
            for worker in workers:
                worker.join(timeout=30)
                if worker.is_alive():
                    worker.kill()
            raise
        else:
            pool.shutdown()
        finally:
            bar.close()
        return [results[i] for i in range(len(tasks))]


def settle(label: str, produce: Callable[[], Any]) -> TaskResult:
    try:
        return TaskResult(label, produce())
    except Exception as error:  # a failed run is reported; the study continues
        lines = str(error).strip().splitlines()
        return TaskResult(label, error=f"{type(error).__name__}: {lines[0] if lines else ''}")
