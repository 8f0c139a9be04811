"""The local executor: a pool of worker processes on this machine, one single-threaded worker per
core by default (two single-threaded processes gave 1.6x the throughput of one two-threaded one here)."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Callable, Iterable

from tqdm.auto import tqdm

if TYPE_CHECKING:
    pass


from innerlens.drivers.executor import TaskResult, settle


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


WORKER_DIED = "WorkerDied"


class LocalExecutor:
    """``workers`` spawned processes (0: run in this process, one after another).

    A worker that dies (killed, out of memory, a crash in native code) breaks the whole pool. The
    tasks then in flight continue their runs from the last checkpoint (:func:`study_run`) in a fresh
    worker, one at a time, so the one that keeps dying is known: after ``max_retries`` retries it is
    reported failed (:func:`end_lost_runs` ends its run FAILED) and the study goes on.
    """

    def __init__(self, workers: int, threads: int, progress: bool = True, max_retries: int = 2, unit: str = "runs") -> None:
        self.workers, self.threads, self.progress, self.max_retries, self.unit = workers, threads, progress, max_retries, unit

    def describe(self) -> str:
        return f"{max(self.workers, 1)} local worker(s) x {self.threads} thread(s)"

    def run(self, function: Callable[[Any], Any], tasks: Iterable[tuple[str, Any]]) -> list[TaskResult]:
        """Every task's result in submission order, with one progress bar over the study."""
        tasks = list(tasks)
        bar = tqdm(total=len(tasks), desc=self.unit, disable=not self.progress)
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
        queue, suspects, attempts = list(range(len(tasks))), list[int](), [0] * len(tasks)
        try:
            while queue or suspects:
                # A broken pool does not say whose worker died: the tasks it was running go on one at a
                # time, so a death there is the task's own.
                alone = suspects[:1]
                for index in self._run_pool(function, tasks, alone or queue, results, bar, 1 if alone else self.workers):
                    attempts[index] += 1
                    if attempts[index] > self.max_retries:
                        results[index] = TaskResult(tasks[index][0], error=f"{WORKER_DIED}: its worker process died "
                                                    f"{attempts[index]} times")
                        tqdm.write(f"{tasks[index][0]} failed: {results[index].error}")
                        bar.update()
                    else:
                        tqdm.write(f"{tasks[index][0]}: a worker died; the run continues in a fresh one")
                        suspects.append(index)
                suspects = list(dict.fromkeys(i for i in suspects if i not in results))
                queue = [i for i in queue if i not in results and i not in suspects]
        finally:
            bar.close()
        return [results[i] for i in range(len(tasks))]

    def _run_pool(self, function: Callable[[Any], Any], tasks: list[tuple[str, Any]], queue: list[int],
                  results: dict[int, TaskResult], bar: tqdm, workers: int) -> list[int]:
        """Run the queued tasks on one pool into ``results``; the tasks in flight when a worker died.

        At most one task per worker is submitted at a time, so a broken pool loses only the tasks
        that were really running, and the queued ones are not charged an attempt.
        """
        context = multiprocessing.get_context("spawn")  # no forked torch or MLflow state
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(self.threads,))
        queued, pending, lost = iter(queue), dict[Future, int](), list[int]()
        try:
            while True:
                while len(pending) < workers and not lost and (index := next(queued, None)) is not None:
                    try:
                        pending[pool.submit(_call, function, tasks[index][1])] = index
                    except BrokenProcessPool:  # it broke since the last wait: this task never started
                        lost.append(-1)
                        break
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    if isinstance(future.exception(), BrokenProcessPool):
                        lost.append(index)
                        continue
                    results[index] = settle(tasks[index][0], future.result)
                    if results[index].error:
                        tqdm.write(f"{results[index].label} failed: {results[index].error}")
                    bar.set_postfix(failed=sum(bool(r.error) for r in results.values()), running=len(pending))
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
        pool.shutdown()
        return [index for index in lost if index >= 0]
