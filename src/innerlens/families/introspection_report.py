"""What an introspection run reports: its activation dataset, the numbers at the best checkpoint, its figures."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import torch

from innerlens.configs.introspection import IntrospectionConfig
from innerlens.plan import RunLog

if TYPE_CHECKING:
    from innerlens.families.introspection_experiment import IntrospectionExperiment

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figures(config: IntrospectionConfig, experiment: IntrospectionExperiment, history: pd.DataFrame, output: torch.Tensor,
            live: torch.Tensor) -> dict[str, Figure]:
    """The run's figures, each drawn from plain arrays taken off the experiment."""
    from innerlens.viz import introspection as viz
    from innerlens.viz.curves import metric_curves

    targets, test = experiment.targets, experiment.splits.test
    truth = live.cpu() if config.targets == "live" else targets.values[test]
    if config.task == "regression":
        predictions = viz.reports_against_truth(truth.numpy(), (output.cpu() * targets.std + targets.mean).numpy())
    else:
        predictions = viz.confusion(targets.labels(truth, "classification").numpy(), output.argmax(-1).cpu().numpy(), config.num_bins)
    score = "r2" if config.task == "regression" else "acc"
    curves = history.assign(run="run")
    drawn = {
        "scan_scores": viz.scan_map(experiment.scan.combined.numpy(), experiment.scan.layers, experiment.scan.layer_type,
                                    experiment.layer, experiment.neuron),
        "target_histogram": viz.target_histogram({name: targets.values[rows].numpy() for name, rows in experiment.splits.items()},
                                                 targets.edges.tolist(), experiment.layer, experiment.neuron),
        "predictions": predictions,
        "learning_curves": metric_curves(curves, ["train/loss", "val/loss", f"val/{score}", f"test/{score}"], group="run",
                                             title="Introspection training", log_y={"train/loss", "val/loss"}),
    }
    if experiment.gradient_log:
        drawn["gradient_flow"] = viz.gradient_flow(experiment.gradient_log)
    drift_keys = [k for k in ("drift/variance", "drift/entropy", "drift/ks") if k in set(history["key"])]
    if drift_keys:
        drawn["activation_drift"] = metric_curves(curves, drift_keys, group="run", title="Target neuron drift (validation texts)")
    return drawn


def at_best(best: dict[str, float], baselines: dict[str, float]) -> dict[str, float]:
    """The validation-chosen checkpoint's scores, and the headline: its R² minus the frozen ridge
    probe's on the same features (``delta_vs_probe``), which says what training added to a readout, and
    minus a probe refitted on that checkpoint's features and targets (``delta_vs_refit_probe``), which
    says whether the head beats a linear readout of the network it ended with."""
    summary = {f"{split}/{key}_at_best": best[f"{split}/{key}"] for split in ("val", "test")
               for key in ("r2", "acc", "variance_collapsed") if f"{split}/{key}" in best}
    for split in ("val", "test"):
        for probe, key in (("probe", "delta_vs_probe"), ("refit_probe", "delta_vs_refit_probe")):
            if f"{split}/r2" in best and f"baseline/{probe}/{split}_r2" in baselines:
                summary[f"{split}/{key}"] = best[f"{split}/r2"] - baselines[f"baseline/{probe}/{split}_r2"]
    if "lm/val_loss" in best and "lm/val_loss_original" in baselines:
        summary["lm/val_loss_change_at_best"] = best["lm/val_loss"] - baselines["lm/val_loss_original"]
    return summary


def log_dataset(tracker: RunLog, config: IntrospectionConfig, experiment: IntrospectionExperiment) -> None:
    """The activation dataset as CSV, the scan scores, and which unit was chosen."""
    split_of = {int(i): name for name, rows in experiment.splits.items() for i in rows}
    labels = experiment.targets.labels(experiment.targets.values, "classification")
    frame = pd.DataFrame(
        {
            "text": experiment.texts,
            "activation": experiment.targets.values.tolist(),
            "bin": labels.tolist(),
            "split": [split_of[i] for i in range(len(experiment.texts))],
            "model": config.model,
            "layer": experiment.layer,
            "neuron": experiment.neuron,
            "layer_type": config.layer_type,
            "token_position": config.token_position,
        }
    )
    tracker.log_text(frame.to_csv(index=False), "dataset/activations.csv")
    scan_frame = pd.DataFrame(
        [
            {"layer": layer, "neuron": unit, "variance": float(experiment.scan.variance[r, unit]),
             "range": float(experiment.scan.range[r, unit]), "combined": float(experiment.scan.combined[r, unit])}
            for r, layer in enumerate(experiment.scan.layers)
            for unit in range(experiment.scan.variance.shape[1])
        ]
    )
    tracker.log_text(scan_frame.to_csv(index=False), "dataset/scan_scores.csv")
    tracker.set_tags({"innerlens.layer": str(experiment.layer), "innerlens.neuron": str(experiment.neuron),
                      "innerlens.trainable_parameters": str(len(experiment.trainable))})
