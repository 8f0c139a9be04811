"""The nested study every many-run command shares: under one parent run, train each task as a
nested run on the executor the options ask for (or, with ``--skip-training``, draw again from the
newest finished study), then hand the parent's id to the study's own analysis.

The self-modeling comparison and the grokking sweep are configurations of this: their own code is
which runs to make (``tasks``) and what to compute and draw from them afterwards.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import click

from innerlens import tracking
from innerlens.drivers.executor import end_lost_runs
from innerlens.drivers.executor_choice import make_executor
from innerlens.results import RunResult

if TYPE_CHECKING:
    import pandas as pd

    from innerlens.configs.executor import ExecutorOptions


def train_or_reuse(config: ExecutorOptions, parent: tracking.RunTracker, family: str, tasks: list[tuple[str, Any]],
                   train: Callable[[Any], RunResult | list[RunResult]], *, skip_training: bool, workers: int | None,
                   progress: bool, unit: str = "runs") -> tuple[str, dict[str, pd.DataFrame]]:
    """The id of the parent whose nested runs the study analyses (this one, after training ``tasks``:
    label, picklable argument of ``train``; ``unit`` says what one is; or the newest finished one to
    redraw), and every metric its runs logged as they returned it, by run id: the study asks the
    server only for the runs that did not (a redraw, a resumed run, one finished before)."""
    if skip_training:
        drawn_from = tracking.latest_parent_with_children(family, exclude=parent.run_id)
        parent.set_tags({"innerlens.drawn_from": drawn_from})
        return drawn_from, {}
    executor = make_executor(config, workers, progress, unit)
    parent.set_tags({tracking.TAG_EXECUTOR: executor.describe()})
    click.echo(f"training {len(tasks)} {unit} on {executor.describe()}", err=True)
    results = executor.run(train, tasks)
    end_lost_runs(parent.run_id, results)
    parent.set_tags({"innerlens.failed_runs": str(sum(bool(result.error) for result in results))})
    returned = [run for result in results if not result.error
                for run in (result.value if isinstance(result.value, list) else [result.value])]
    return parent.run_id, {run.run_id: run.history for run in returned if run.history is not None}
