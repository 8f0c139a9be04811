"""The self-modeling plots, for one run or many (a tidy frame with a group column)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from innerlens.viz.curves import learning_dynamics, metric_curves

SINGLE_RUN_GROUP = "variant"


def figures(history: pd.DataFrame, group: str = SINGLE_RUN_GROUP) -> dict[str, Figure]:
    """The six self-modeling plots from a tidy frame with a ``group`` column (one or many runs)."""
    selfmodel_keys = sorted(k for k in history["key"].unique() if k.startswith("selfmodel/"))
    return {
        "accuracy": metric_curves(history, ["train/acc", "val/acc", "test/acc"], group=group, title="Accuracy"),
        "loss": metric_curves(history, ["train/loss", "val/loss", "test/loss"], group=group, title="Task loss", log_y=True),
        "weight_std": metric_curves(history, ["weights/std"], group=group, title="Weight std"),
        "rlct": metric_curves(history, ["llc/mean"], group=group, title="RLCT (local learning coefficient)"),
        "self_model_loss": metric_curves(
            history, selfmodel_keys or ["selfmodel/loss"], group=group, title="Self-model loss (MSE)", log_y=bool(selfmodel_keys)
        ),
        "learning_dynamics": learning_dynamics(history, ["val", "test"], group=group, title="Learning dynamics"),
    }


def timing_scatter(runs: pd.DataFrame, epoch: str, keys: list[str], settled: str) -> Figure:
    """Each run's measure against the epoch it generalised, a panel per measure, a colour per arm
    (hollow: not settled at the end): the picture behind the timing control's Spearman ρ, where a
    paired interval's width shows up as seeds strung along one line whatever their arm.
    ``runs``: one row per run (index ``group, seed``), the generalised runs only."""
    columns = min(len(keys), 2)
    rows = math.ceil(len(keys) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.0 * columns, 3.6 * rows), squeeze=False)
    colours = dict(zip(runs.index.unique("group"), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    for ax, key in zip(axes.flat, keys):
        for group, points in runs.groupby(level="group"):
            done = points[settled] == 1
            ax.scatter(points.loc[done, epoch], points.loc[done, key], s=20, color=colours[group], label=group)
            ax.scatter(points.loc[~done, epoch], points.loc[~done, key], s=20, facecolors="none", edgecolors=colours[group])
        ax.set_xlabel("epoch validation accuracy first reached 0.95")
        ax.set_title(key)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize="x-small", title="filled: settled", title_fontsize="x-small")
    figure.tight_layout()
    return figure
