"""Selector figures: per-block attention heatmaps over an example's tokens, and evaluation plots."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import auc, precision_recall_curve, roc_curve

from innerlens.analysis.calibration import expected_calibration_error
from innerlens.viz.curves import plt


def attention_heatmap(tokens: list[str], weights: dict[str, np.ndarray]) -> Figure:
    """One pane per attention block (titled by its name): tokens down, heads across, the final
    token's attention weight as colour on 0..1, a colorbar per pane."""
    panes = len(weights)
    figure, axes = plt.subplots(1, panes, figsize=(1.0 + 4.2 * panes, 1.2 + 0.28 * len(tokens)), squeeze=False)
    for ax, (name, matrix) in zip(axes.flat, weights.items()):  # matrix: heads x tokens
        image = ax.imshow(matrix.T, aspect="auto", cmap="inferno", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_yticks(range(len(tokens)), [repr(t)[1:-1] for t in tokens], fontsize=7)
        ax.set_xlabel("head")
        ax.set_title(name)
        figure.colorbar(image, ax=ax, fraction=0.05)
    figure.tight_layout()
    return figure


def evaluation(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> Figure:
    """ROC and precision-recall with AUC, reliability diagram with ECE, score histograms, confusion matrix."""
    figure, axes = plt.subplots(1, 5, figsize=(22, 4.2))
    fpr, tpr, _ = roc_curve(labels, probabilities)
    axes[0].plot(fpr, tpr)
    axes[0].plot([0, 1], [0, 1], linestyle="--", color="grey")
    axes[0].set(title=f"ROC (AUC {auc(fpr, tpr):.3f})", xlabel="false positive rate", ylabel="true positive rate")
    precision, recall, _ = precision_recall_curve(labels, probabilities)
    axes[1].plot(recall, precision)
    axes[1].set(title=f"Precision-recall (AUC {auc(recall, precision):.3f})", xlabel="recall", ylabel="precision")
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    centres, rates = [], []
    for b in range(bins):
        if (which == b).any():
            centres.append(probabilities[which == b].mean())
            rates.append(labels[which == b].mean())
    axes[2].plot([0, 1], [0, 1], linestyle="--", color="grey")
    axes[2].plot(centres, rates, marker="o")
    axes[2].set(title=f"Reliability (ECE {expected_calibration_error(probabilities, labels, bins):.3f})",
                xlabel="predicted P(label 1)", ylabel="observed frequency")
    for label in (0, 1):
        axes[3].hist(probabilities[labels == label], bins=20, range=(0, 1), alpha=0.6, label=f"label {label}")
    axes[3].set(title="Scores by class", xlabel="P(label 1)")
    axes[3].legend()
    matrix = np.zeros((2, 2), dtype=int)
    for actual, guess in zip(labels.astype(int), (probabilities >= 0.5).astype(int)):
        matrix[actual, guess] += 1
    axes[4].imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        axes[4].text(j, i, str(count), ha="center", va="center")
    axes[4].set(title="Confusion matrix (threshold 0.5)", xlabel="predicted", ylabel="actual", xticks=[0, 1], yticks=[0, 1])
    figure.tight_layout()
    return figure
