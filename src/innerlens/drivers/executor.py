"""What every executor shares: the :class:`Executor` shape, a task's result, and a study's run.

A study runs many independent runs at once: on local worker processes
(:mod:`innerlens.drivers.local_executor`) or as Ray tasks (:mod:`innerlens.drivers.ray_executor`);
:func:`innerlens.drivers.executor_choice.make_executor` picks one. Each task is a picklable
``(function, argument)``; a task that raises is reported as failed and the study goes on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from innerlens.results import RunResult

if TYPE_CHECKING:
    from innerlens.config import Config


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


def end_lost_runs(parent_run_id: str, results: list[TaskResult]) -> None:
    """Mark FAILED every run a failed task left RUNNING (a stacked cell's task has one run per seed):
    its worker died for good (past its retries), so no process is left to end it. A run whose code
    raised has ended FAILED already."""
    from innerlens import tracking

    for result in results:
        if result.error:
            for run_id in tracking.running_runs_of_unit(parent_run_id, result.label):
                tracking.end_run_as(run_id, "FAILED")


def study_run(run: Callable[..., RunResult], config: Config, parent_run_id: str, task: str, tags: dict[str, str],
              params: dict[str, str] | None = None, on_start: Callable[[str], None] | None = None,
              callbacks: tuple[Any, ...] = (), unit: str | None = None) -> RunResult:
    """One run of a study, nested under the parent and named ``task`` (``callbacks`` watch its fit).

    An executor may run a task again after its worker died: the attempt then continues the run the
    earlier one started, from its last checkpoint, so the study keeps one run per task with every
    metric logged once. A run that already finished is not trained again: its result carries only its id.
    ``unit`` is the executor's task the run belongs to when that is not ``task`` itself (a stacked cell).
    """
    from innerlens import tracking

    earlier = tracking.task_run(parent_run_id, task)
    if earlier is not None and earlier[1] == "FINISHED":
        return RunResult(earlier[0])
    if earlier is not None:
        config = config.replace(resume=earlier[0])
    parent = tracking.RunContext(parent_run_id, {**tags, tracking.TAG_TASK: task, tracking.TAG_UNIT: unit or task},
                                 params or {}, on_start)
    return run(config, parent=parent, callbacks=callbacks, progress=False)


def settle(label: str, produce: Callable[[], Any]) -> TaskResult:
    try:
        return TaskResult(label, produce())
    except Exception as error:  # a failed run is reported; the study continues
        lines = str(error).strip().splitlines()
        return TaskResult(label, error=f"{type(error).__name__}: {lines[0] if lines else ''}")
