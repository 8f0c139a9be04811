"""Grokking sweeps: one hyperparameter x seeds, nested under one parent run, then the effect of
the swept value on time-to-generalize and the seed bands drawn from what the server holds."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import click
import pandas as pd
from mlflow.tracking import MlflowClient

from innerlens import tracking
from innerlens.compare import child_runs, fetch_history, latest_parent_with_children
from innerlens.config import distinct_seeds, option
from innerlens.families.grokking import GrokkingConfig, run
from innerlens.viz.curves import metric_curves
from innerlens.viz.grokking import split_curves, time_to_generalize

FAMILY = "grokking_sweep"
SWEEPABLE = ("none", "lr", "batch_size", "weight_decay", "train_fraction")


@dataclass(frozen=True)
class GrokkingSweepConfig(GrokkingConfig):
    family_name = FAMILY
    hidden_fields = ("seed", "resume")

    sweep: str = option("none", "Hyperparameter to sweep (none: seeds only).", choices=SWEEPABLE)
    values: tuple[float, ...] = option((), "Values of --sweep, comma-separated (train_fraction splits the rest evenly into val/test).")
    seeds: tuple[int, ...] = option((0, 1, 2), "Seeds; every value is trained once per seed (each its own nested run).", check=distinct_seeds)
    skip_training: bool = option(False, "Draw the figures from the latest existing sweep instead of training.")

    def check(self) -> str | None:
        if (self.sweep == "none") != (not self.values):
            return "--values: give values exactly when --sweep names a hyperparameter (e.g. --sweep weight_decay --values 0.3,1,3)"
        if self.sweep == "batch_size" and any(v != int(v) for v in self.values):
            return "--values: batch sizes must be whole numbers"
        if len(set(self.values)) != len(self.values):
            return "--values: values must be distinct"
        for single in self.single_runs():
            message = single.check()
            if message:
                return message
        return None

    def single_runs(self) -> list[GrokkingConfig]:
        own = {f.name for f in dataclasses.fields(GrokkingSweepConfig)} - {f.name for f in dataclasses.fields(GrokkingConfig)}
        shared = {k: v for k, v in self.to_dict().items() if k not in own}
        configs = []
        for value in self.values or (None,):
            changes = {} if value is None else _changes(self.sweep, value)
            configs += [GrokkingConfig(**{**shared, **changes, "seed": seed}) for seed in self.seeds]
        return configs


def _changes(parameter: str, value: float) -> dict[str, float | int]:
    if parameter == "batch_size":
        return {"batch_size": int(value)}
    if parameter == "train_fraction":
        rest = (1.0 - value) / 2
        return {"train_fraction": value, "val_fraction": rest, "test_fraction": rest}
    return {parameter: value}


def sweep(config: GrokkingSweepConfig, progress: bool = True) -> str:
    """Train every (value, seed) as a nested run (unless skipped) and draw the sweep; return the parent id."""
    with tracking.start_run(config, variant=config.sweep, run_name=f"grokking-sweep-{config.sweep}", step_unit="step") as tracker:
        parent_id = tracker.run_id
        if config.skip_training:
            parent_id = latest_parent_with_children(FAMILY, exclude=tracker.run_id)
            tracker.set_tags({"innerlens.drawn_from": parent_id})
        else:
            for single in config.single_runs():
                value = getattr(single, config.sweep) if config.sweep != "none" else None
                label = f"{config.sweep}={value:g}" if value is not None else single.task
                click.echo(f"training {label} (seed {single.seed})", err=True)
                run(single, nested=True, progress=progress, run_name=f"{label}-s{single.seed}")
        history, summary = sweep_results(parent_id, config.sweep)
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


def sweep_results(parent_id: str, parameter: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy history of the sweep's runs (with the swept value as a column) and one summary row per run."""
    client = MlflowClient()
    runs = child_runs(client, client.get_run(parent_id))
    history = fetch_history(client, runs)
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
