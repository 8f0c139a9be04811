"""Introspection figures: scan scores, the target's distribution, predictions, training curves,
gradient flow and the target neuron's drift."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from innerlens.viz.curves import metric_curves, plt

if TYPE_CHECKING:
    from innerlens.families.introspection import IntrospectionConfig, IntrospectionExperiment


def scan_map(experiment: "IntrospectionExperiment") -> Figure:
    """Combined score per (layer, neuron), the chosen unit circled."""
    scores = experiment.scan.combined.numpy()
    figure, ax = plt.subplots(figsize=(10, 1.2 + 0.5 * len(experiment.scan.layers)))
    image = ax.imshow(scores, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(experiment.scan.layers)), [str(layer) for layer in experiment.scan.layers])
    ax.set_ylabel("layer")
    ax.set_xlabel(f"neuron ({experiment.scan.layer_type})")
    row = experiment.scan.layers.index(experiment.layer)
    ax.scatter([experiment.neuron], [row], s=120, facecolors="none", edgecolors="red", linewidths=1.5)
    figure.colorbar(image, ax=ax, label="combined score")
    ax.set_title(f"Neuron scan: sqrt(variance x range), each scaled to its max; chosen L{experiment.layer} N{experiment.neuron}")
    figure.tight_layout()
    return figure


def target_histogram(experiment: "IntrospectionExperiment") -> Figure:
    figure, ax = plt.subplots(figsize=(5.5, 3.6))
    values = experiment.targets.values
    for name, rows in experiment.splits.items():
        ax.hist(values[rows].numpy(), bins=30, alpha=0.5, label=name)
    for edge in experiment.targets.edges.tolist():
        ax.axvline(edge, color="black", linestyle="--", linewidth=0.7)
    ax.set_xlabel("activation")
    ax.set_title(f"Target L{experiment.layer} N{experiment.neuron} (dashed: class bins)")
    ax.legend()
    figure.tight_layout()
    return figure


def predictions(config: "IntrospectionConfig", experiment: "IntrospectionExperiment", output: torch.Tensor, live: torch.Tensor) -> Figure:
    rows = experiment.splits.test
    truth = live.cpu() if config.targets == "live" else experiment.targets.values[rows]
    figure, ax = plt.subplots(figsize=(4.6, 4.2))
    if config.task == "regression":
        predicted = (output.cpu() * experiment.targets.std + experiment.targets.mean).numpy()
        ax.scatter(truth.numpy(), predicted, s=12)
        low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="grey", linestyle="--")
        ax.set_xlabel("actual activation")
        ax.set_ylabel("reported activation")
        ax.set_title("Test texts: report vs actual")
    else:
        labels = experiment.targets.labels(truth, "classification").numpy()
        matrix = np.zeros((config.num_bins, config.num_bins), dtype=int)
        for actual, guess in zip(labels, output.argmax(-1).cpu().numpy()):
            matrix[actual, guess] += 1
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center")
        ax.set_xlabel("predicted bin")
        ax.set_ylabel("actual bin")
        ax.set_title("Test confusion matrix")
    figure.tight_layout()
    return figure


def gradient_flow(log: list[dict]) -> Figure:
    components = list(log[0]["norms"])
    matrix = np.array([[entry["norms"][c] for entry in log] for c in components])
    figure, ax = plt.subplots(figsize=(8, 0.5 + 0.35 * len(components)))
    image = ax.imshow(np.log10(matrix + 1e-12), aspect="auto", cmap="magma")
    ax.set_yticks(range(len(components)), components)
    ticks = np.linspace(0, len(log) - 1, min(len(log), 6)).round().astype(int)
    ax.set_xticks(ticks, [str(log[t]["step"]) for t in ticks])
    ax.set_xlabel("step")
    figure.colorbar(image, ax=ax, label="log10 gradient norm")
    ax.set_title("Gradient flow")
    figure.tight_layout()
    return figure


def figures(
    config: "IntrospectionConfig", experiment: "IntrospectionExperiment", history: pd.DataFrame, output: torch.Tensor, live: torch.Tensor
) -> dict[str, Figure]:
    score = "r2" if config.task == "regression" else "acc"
    curves = history.assign(run="run")
    drawn = {
        "scan_scores": scan_map(experiment),
        "target_histogram": target_histogram(experiment),
        "predictions": predictions(config, experiment, output, live),
        "learning_curves": metric_curves(curves, ["train/loss", "val/loss", f"val/{score}", f"test/{score}"], group="run",
                                         title="Introspection training", log_y={"train/loss", "val/loss"}),
    }
    if experiment.gradient_log:
        drawn["gradient_flow"] = gradient_flow(experiment.gradient_log)
    drift_keys = [k for k in ("drift/variance", "drift/entropy", "drift/ks") if k in set(history["key"])]
    if drift_keys:
        drawn["activation_drift"] = metric_curves(curves, drift_keys, group="run", title="Target neuron drift (validation texts)")
    return drawn
