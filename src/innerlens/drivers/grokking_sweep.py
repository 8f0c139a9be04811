"""Grokking sweeps: one hyperparameter x seeds, nested under one parent run, then the effect of
the swept value on time-to-generalize and the seed bands drawn from what the server holds."""
from __future__ import annotations

import functools

import click
import numpy as np
import pandas as pd

from innerlens import session, tracking
from innerlens.analysis.censored import event_table
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
        phases = phase_summary(summary, config.sweep, float(config.max_steps))
        if config.sweep != "none":
            generalisation = phases[phases["phase"] == "generalization_step"]
            tracker.log_figure(time_to_generalize(summary, generalisation, config.sweep, float(config.max_steps)), "time_to_generalize")
        tracker.log_text(summary.to_csv(index=False), "sweep_summary.csv")
        tracker.log_text(phases.to_csv(index=False), "tables/phase_summary.csv")
        tracker.log_history(history)
        click.echo(phase_text(phases, len(summary), config.max_steps))
        return tracker.run_id


def task_name(sweep: str, single: GrokkingConfig) -> str:
    label = f"{sweep}={getattr(single, sweep):g}" if sweep != "none" else single.task
    return f"{label}-s{single.seed}"


def _train_child(job: tuple[GrokkingConfig, str, str]) -> RunResult:
    single, parent_id, task = job
    return study_run(functools.partial(session.run, "grokking", run_name=task), single, parent_id, task, {}).portable()


# Nanda et al.'s phase boundaries and the accuracy thresholds, as each run logged them (-1: did not happen).
PHASE_STEPS = ("memorization_step", "circuit_formation_start_step", "cleanup_start_step", "cleanup_end_step",
               "generalization_step")
# Beside them, per run only: the 10-90 % rise of val accuracy and the count of linear pieces of log val loss.
ACCURACY_PROXIES = ("jump_start_step", "jump_end_step", "change_points")


def phase_summary(summary: pd.DataFrame, parameter: str, horizon: float) -> pd.DataFrame:
    """Per swept value and phase boundary: the runs, how many reached it, and the mean step with its
    t 95 % interval, or, when a run never reached it (censored at ``horizon``), the restricted mean
    (labelled) and the Kaplan-Meier median. Runs not FINISHED are left out and counted."""
    finished = summary[summary["status"] == "FINISHED"].assign(runs="all")
    group = parameter if parameter != "none" else "runs"
    tables = [event_table(finished, group, phase, horizon).assign(phase=phase) for phase in PHASE_STEPS]
    return pd.concat(tables, ignore_index=True).assign(left_out_not_finished=int(len(summary) - len(finished)))


def phase_text(phases: pd.DataFrame, runs: int, max_steps: int) -> str:
    """The phase table as printed when the sweep ends."""
    lines = [f"phase boundaries over {runs} run(s), step of first reaching each (censored at {max_steps}: not reached):"]
    for row in phases.itertuples():
        interval = f"[{row.ci_low:,.0f}, {row.ci_high:,.0f}] (t 95 %)" if not np.isnan(row.ci_low) else "(no interval)"
        lines.append(f"  {getattr(row, phases.columns[0])!s:>8} {row.phase:30s} reached {row.events:.0f}/{row.n:.0f}  {row.estimate} "
                     f"{row.mean:,.0f} {interval}  KM median {row.km_median:,.0f}")
    return "\n".join(lines)


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
            **{phase: r.data.metrics.get(f"grok/{phase}", -1.0) for phase in PHASE_STEPS},
            **{key: r.data.metrics.get(f"grok/{key}", np.nan) for key in ACCURACY_PROXIES},
            "final_val_acc": r.data.metrics.get("val/acc"),
            "final_test_acc": r.data.metrics.get("test/acc"),
            **({parameter: float(r.data.params[parameter])} if parameter != "none" else {}),
        }
        for r in runs
    )
    if parameter != "none":
        history = history.merge(summary[["run_id", parameter]], on="run_id")
    return history, summary
