"""What every executor shares: the :class:`Executor` surface, a task's result, and a study's run.

A study runs many independent runs at once: on local worker processes
(:mod:`innerlens.drivers.local_executor`) or as Ray tasks (:mod:`innerlens.drivers.ray_executor`);
:func:`innerlens.drivers.executor_choice.make_executor` picks one. Each task is a picklable
``(function, argument)`` under a unique label; a task that raises is reported as failed and the
study goes on. An executor only starts tasks (``submit``) and hands back the finished ones
(``completed``); the loops over them live once: :meth:`Executor.run` for a fixed list of tasks, and
tune's ask-and-tell loop, which decides each trial as the one before it ends.

Adding an executor (Dask, a Slurm array) is one subclass with those five methods, plus one choice
in :mod:`innerlens.drivers.executor_choice`.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from tqdm.auto import tqdm

from innerlens.results import RunResult

if TYPE_CHECKING:
    from innerlens.config import Config


@dataclass(frozen=True)
class TaskResult:
    label: str
    value: Any = None
    error: str = ""  # first line of the exception; empty when the task succeeded


class Executor:
    """Runs labelled tasks somewhere; subclasses say where."""

    progress: bool = True
    unit: str = "runs"  # what one task is, on the progress bar
    in_process: bool = False  # each task runs in this process as it is submitted (its function need not pickle)

    def describe(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        """Get ready to take tasks (join a cluster, check its workers)."""

    def free(self) -> int:
        """How many more tasks may start now."""
        raise NotImplementedError

    def submit(self, label: str, function: Callable[[Any], Any], argument: Any) -> None:
        """Start one task (``label`` unique among the tasks in flight)."""
        raise NotImplementedError

    def completed(self, timeout: float) -> list[TaskResult]:
        """The tasks that ended since the last call, waiting up to ``timeout`` seconds for one."""
        raise NotImplementedError

    def busy(self) -> bool:
        """Whether a submitted task has not been handed back yet."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Ctrl-C or SIGTERM: stop every task in flight so that its run ends KILLED."""

    def close(self) -> None:
        """Release the workers."""

    def run(self, function: Callable[[Any], Any], tasks: Iterable[tuple[str, Any]]) -> list[TaskResult]:
        """Every task's result in submission order, with one progress bar over the study."""
        tasks = list(tasks)
        queue, results = list(tasks), dict[str, TaskResult]()
        bar = tqdm(total=len(tasks), desc=self.unit, disable=not self.progress)
        try:
            self.start()
            while queue or self.busy():
                while queue and self.free() > 0:
                    label, argument = queue.pop(0)
                    self.submit(label, function, argument)
                for result in self.completed(timeout=1.0):  # a timeout: signals are handled between waits
                    results[result.label] = result
                    if result.error:
                        tqdm.write(f"{result.label} failed: {result.error}", file=sys.stderr)
                    bar.set_postfix(failed=sum(bool(r.error) for r in results.values()))
                    bar.update()
        except BaseException:
            self.cancel()
            raise
        finally:
            bar.close()
            self.close()
        return [results[label] for label, _ in tasks]


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
    # The run this task continues, or none: a continued study's own --resume names its parent run,
    # which its single runs inherit and must not try to resume. (A config without --resume has neither.)
    if earlier is not None or getattr(config, "resume", None) is not None:
        config = config.replace(resume=earlier[0] if earlier is not None else None)
    parent = tracking.RunContext(parent_run_id, {**tags, tracking.TAG_TASK: task, tracking.TAG_UNIT: unit or task},
                                 params or {}, on_start)
    return run(config, parent=parent, callbacks=callbacks, progress=False)


def settle(label: str, produce: Callable[[], Any]) -> TaskResult:
    try:
        return TaskResult(label, produce())
    except Exception as error:  # a failed run is reported; the study continues
        lines = str(error).strip().splitlines()
        return TaskResult(label, error=f"{type(error).__name__}: {lines[0] if lines else ''}")
