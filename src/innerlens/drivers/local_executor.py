"""The local executor: a pool of worker processes on this machine, one single-threaded worker per
core by default (two single-threaded processes gave 1.6x the throughput of one two-threaded one here)."""
from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from tqdm.auto import tqdm

from innerlens.drivers.executor import Executor, TaskResult, settle

WORKER_DIED = "WorkerDied"


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


class LocalExecutor(Executor):
    """``workers`` spawned processes (0: each task runs in this process when it is submitted).

    A worker that dies (killed, out of memory, a crash in native code) breaks the whole pool. The
    tasks then in flight continue their runs from the last checkpoint (:func:`study_run`) in a fresh
    pool, one at a time, so the one that keeps dying is known: after ``max_retries`` retries it is
    reported failed (:func:`end_lost_runs` ends its run FAILED) and the study goes on. At most one
    task per worker is in flight, so a broken pool costs only the tasks that were really running.
    """

    def __init__(self, workers: int, threads: int, progress: bool = True, max_retries: int = 2, unit: str = "runs") -> None:
        self.workers, self.threads, self.progress, self.max_retries, self.unit = workers, threads, progress, max_retries, unit
        self._pool: ProcessPoolExecutor | None = None
        self._pending: dict[Future, str] = {}
        self._tasks: dict[str, tuple[Callable[[Any], Any], Any]] = {}  # in flight or waiting to be retried
        self._attempts: dict[str, int] = {}
        self._suspects: list[str] = []  # in flight when a worker died: each retried alone
        self._alone: str | None = None
        self._done: list[TaskResult] = []

    @property
    def in_process(self) -> bool:
        return self.workers == 0

    def describe(self) -> str:
        return f"{max(self.workers, 1)} local worker(s) x {self.threads} thread(s)"

    def free(self) -> int:
        if self.workers == 0:  # one at a time: the next starts once the last one's result is collected
            return 0 if self._done else 1
        if self._suspects or self._alone is not None:
            return 0
        return self.workers - len(self._pending)

    def busy(self) -> bool:
        return bool(self._pending or self._suspects or self._done)

    def submit(self, label: str, function: Callable[[Any], Any], argument: Any) -> None:
        if self.workers == 0:
            self._done.append(self._here(label, function, argument))
            return
        self._tasks[label] = (function, argument)
        self._start(label)

    def _here(self, label: str, function: Callable[[Any], Any], argument: Any) -> TaskResult:
        """In this process, with a worker's thread count, so results match a worker's bit for bit."""
        import torch

        before = torch.get_num_threads()
        _set_threads(self.threads)
        try:
            return settle(label, lambda: function(argument))
        finally:
            torch.set_num_threads(before)

    def _start(self, label: str) -> None:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # no forked torch or MLflow state
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                             initargs=(self.threads,))
        try:
            self._pending[self._pool.submit(_call, *self._tasks[label])] = label
        except BrokenProcessPool:  # it broke since the last wait: this task never started, so it is not charged
            self._suspects.append(label)
            self._broken([])

    def completed(self, timeout: float) -> list[TaskResult]:
        if not self._pending and self._suspects:  # a suspect runs alone, so a death there is its own
            self._alone = self._suspects.pop(0)
            self._start(self._alone)
        if self._pending:
            done, _ = wait(self._pending, timeout=timeout, return_when=FIRST_COMPLETED)
            lost = []
            for future in done:
                label = self._pending.pop(future)
                if isinstance(future.exception(), BrokenProcessPool):
                    lost.append(label)
                    continue
                self._finish(settle(label, future.result))
            if lost:
                self._broken(lost)
        ended, self._done = self._done, []
        return ended

    def _finish(self, result: TaskResult) -> None:
        self._tasks.pop(result.label, None)
        if result.label == self._alone:
            self._alone = None
        self._done.append(result)

    def _broken(self, lost: list[str]) -> None:
        """A worker died: every task still in flight went down with the pool; charge each an attempt."""
        wait(self._pending, timeout=30)
        for future, label in list(self._pending.items()):
            del self._pending[future]
            if future.done() and not isinstance(future.exception(), BrokenProcessPool):
                self._finish(settle(label, future.result))  # it ended just before the pool broke
            else:
                lost.append(label)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool, self._alone = None, None
        for label in lost:
            self._attempts[label] = self._attempts.get(label, 0) + 1
            if self._attempts[label] > self.max_retries:
                self._finish(TaskResult(label, error=f"{WORKER_DIED}: its worker process died {self._attempts[label]} times"))
            else:
                tqdm.write(f"{label}: a worker died; the run continues in a fresh one", file=sys.stderr)
                self._suspects.append(label)

    def cancel(self) -> None:
        """No new runs; each worker gets SIGTERM and ends its run KILLED."""
        if self._pool is None:
            return
        workers = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
        self._pool, self._pending = None, {}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
