"""The nested study every many-run command shares: under one parent run, train each task as a
nested run on the executor the options ask for (or, with ``--skip-training``, draw again from the
newest finished study), then hand the parent's id to the study's own analysis.

The self-modeling comparison and the grokking sweep are configurations of this: their own code is
which runs to make (``tasks``) and what to compute and draw from them afterwards.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

import click

from innerlens import tracking
from innerlens.drivers.executor import end_lost_runs
from innerlens.drivers.executor_choice import make_executor
from innerlens.errors import ConfigError
from innerlens.results import RunResult

if TYPE_CHECKING:
    import pandas as pd

    from innerlens.configs.executor import ExecutorOptions

StudyConfig = TypeVar("StudyConfig", bound="ExecutorOptions")

# Options that may differ when a named study is continued: where and how it runs, not what it computes.
CONTINUABLE = {"workers", "executor", "ray_address", "cpus_per_run", "gpus_per_run", "max_retries", "show_plots",
               "skip_training", "output_dir", "force_overwrite", "device", "checkpoint_interval"}


def continued(config: StudyConfig, family: str) -> StudyConfig:
    """With ``--study-name`` of an earlier ``family`` study, this config resuming that study's parent
    run, so its finished runs are kept and the others resume (refused in one line if it computes
    something else)."""
    name = getattr(config, "study_name", None)
    if name is None or getattr(config, "skip_training", False):
        return config
    found = tracking.named_study(family, name)
    if found is None:
        return config
    run_id, params = found
    differing = sorted(key for key, value in config.to_params().items()
                       if key not in CONTINUABLE and key in params and params[key] != value)
    if differing:
        spelled = ", ".join(f"--{key.replace('_', '-')} (study has {params[key]})" for key in differing)
        raise ConfigError(f"--study-name {name}: continuing a study keeps its options; these differ: {spelled}")
    return config.replace(resume=run_id)


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
