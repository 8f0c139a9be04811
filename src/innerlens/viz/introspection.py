"""Introspection figures: scan scores, the target's distribution, predictions, training curves,
gradient flow and the target neuron's drift."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from innerlens.viz.curves import plt


def scan_map(scores: np.ndarray, layers: list[int], layer_type: str, layer: int, neuron: int) -> Figure:
    """Combined score per (layer, neuron), the chosen unit circled."""
    figure, ax = plt.subplots(figsize=(10, 1.2 + 0.5 * len(layers)))
    image = ax.imshow(scores, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(layers)), [str(item) for item in layers])
    ax.set_ylabel("layer")
    ax.set_xlabel(f"neuron ({layer_type})")
    ax.scatter([neuron], [layers.index(layer)], s=120, facecolors="none", edgecolors="red", linewidths=1.5)
    figure.colorbar(image, ax=ax, label="combined score")
    ax.set_title(f"Neuron scan: sqrt(variance x range), each scaled to its max; chosen L{layer} N{neuron}")
    figure.tight_layout()
    return figure


def target_histogram(values_by_split: dict[str, np.ndarray], edges: list[float], layer: int, neuron: int) -> Figure:
    """The target neuron's original activations per split, with the class bins' edges."""
    figure, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, values in values_by_split.items():
        ax.hist(values, bins=30, alpha=0.5, label=name)
    for edge in edges:
        ax.axvline(edge, color="black", linestyle="--", linewidth=0.7)
    ax.set_xlabel("activation")
    ax.set_title(f"Target L{layer} N{neuron} (dashed: class bins)")
    ax.legend()
    figure.tight_layout()
    return figure


def reports_against_truth(truth: np.ndarray, reported: np.ndarray) -> Figure:
    """Regression: the reported activation of each test text against the actual one."""
    figure, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.scatter(truth, reported, s=12)
    low, high = float(min(truth.min(), reported.min())), float(max(truth.max(), reported.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--")
    ax.set_xlabel("actual activation")
    ax.set_ylabel("reported activation")
    ax.set_title("Test texts: report vs actual")
    figure.tight_layout()
    return figure


def confusion(actual: np.ndarray, predicted: np.ndarray, num_bins: int) -> Figure:
    """Classification: the test confusion matrix of activation bins."""
    matrix = np.zeros((num_bins, num_bins), dtype=int)
    for row, column in zip(actual, predicted):
        matrix[row, column] += 1
    figure, ax = plt.subplots(figsize=(4.6, 4.2))
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
