"""Grokking sweeps: one hyperparameter x seeds, nested under one parent run, then the effect of
the swept value on time-to-generalize and the seed bands drawn from what the server holds."""
from __future__ import annotations

import functools

import pandas as pd

from innerlens import session, tracking
from innerlens.configs.grokking import GrokkingConfig
from innerlens.configs.grokking_sweep import FAMILY, GrokkingSweepConfig
from innerlens.drivers.executor import study_run
from innerlens.drivers.study import continued, train_or_reuse
from innerlens.results import RunResult
from innerlens.tracking import fetch_history
from innerlens.viz.curves import metric_curves
from innerlens.viz.grokking import split_curves, time_to_generalize


def sweep(config: GrokkingSweepConfig, progress: bool = True) -> str:
    """Train every (value, seed) as a nested run (unless skipped) and draw the sweep; return the parent id."""
    config = continued(config, FAMILY)
    run_name = config.study_name or f"grokking-sweep-{config.sweep}"
    with tracking.start_run(config, variant=config.sweep, run_name=run_name, step_unit="step") as tracker:
        tasks = [(task_name(config.sweep, s), (s, tracker.run_id, task_name(config.sweep, s))) for s in config.single_runs()]
        parent_id, returned = train_or_reuse(config, tracker, FAMILY, tasks, _train_child, skip_training=config.skip_training,
                                             workers=config.workers, progress=progress)
        history, summary = sweep_results(parent_id, config.sweep, known=returned)
        group = config.sweep if config.sweep != "none" else "variant"
        curves = split_curves(history).assign(group=lambda f: f["split"] + " " + f[group].astype(str))
        tracker.log_figure(
            metric_curves(curves, ["acc", "loss"], group="group", title="Accuracy and loss: mean and 95 % band over seeds",
                          log_y={"loss"}, xlabel="step"),
            "seed_bands",
        )
        if config.sweep != "none":
            tracker.log_figure(time_to_generalize(summary, config.sweep, float(config.max_steps)), "time_to_generalize")
        tracker.log_text(summary.to_csv(index=False), "sweep_summary.csv")
        tracker.log_history(history)
        return tracker.run_id


def task_name(sweep: str, single: GrokkingConfig) -> str:
    label = f"{sweep}={getattr(single, sweep):g}" if sweep != "none" else single.task
    return f"{label}-s{single.seed}"


def _train_child(job: tuple[GrokkingConfig, str, str]) -> RunResult:
    single, parent_id, task = job
    return study_run(functools.partial(session.run, "grokking", run_name=task), single, parent_id, task, {}).portable()


def sweep_results(parent_id: str, parameter: str, known: dict[str, pd.DataFrame] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy history of the sweep's runs (with the swept value as a column; ``known``: the histories
    its runs returned, not asked for again) and one summary row per run."""
    runs = tracking.children(parent_id)
    history = fetch_history(None, runs, known=known)
    summary = pd.DataFrame(
        {
            "run_id": r.info.run_id,
            "seed": r.data.tags.get(tracking.TAG_SEED, ""),
            "status": r.info.status,
            "generalization_step": r.data.metrics.get("grok/generalization_step", -1.0),
            "memorization_step": r.data.metrics.get("grok/memorization_step", -1.0),
            "final_val_acc": r.data.metrics.get("val/acc"),
            "final_test_acc": r.data.metrics.get("test/acc"),
            **({parameter: float(r.data.params[parameter])} if parameter != "none" else {}),
        }
        for r in runs
    )
    if parameter != "none":
        history = history.merge(summary[["run_id", parameter]], on="run_id")
    return history, summary
