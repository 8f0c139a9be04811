"""Metalign figures from tidy frames.

* CKA: rows (layer, subset, method, value, low, high); layer "backbone" is the baseline.
* Behaviour: rows (learner, unit, dimension, trial, p_correct); a unit is an episode for the
  models and a participant for humans, so bands are over units.
"""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from innerlens.viz.curves import mean_and_band, metric_curves

BASELINE = "backbone"
LEARNER_ORDER = ("meta_learner", "cognitive", "human")


def cka_layers(cka: pd.DataFrame) -> Figure:
    """CKA per layer against the reference on test objects, one panel per (subset, method): the
    trained model and the same layers at initialisation as lines, the raw backbone and the ridge
    map of the training dimensions as dashed levels with their intervals."""
    panels = list(dict.fromkeys(zip(cka["subset"], cka["method"])))
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False, sharey=True)
    for ax, (subset, method) in zip(axes.flat, panels):
        rows = cka[(cka["subset"] == subset) & (cka["method"] == method)]
        trained = rows[rows["kind"] == "trained"]
        x = np.arange(len(trained))
        for kind, label, marker in (("trained", "trained model", "o"), ("init", "same model at initialisation", "s")):
            layers = rows[rows["kind"] == kind]
            errors = np.clip([layers["value"] - layers["low"], layers["high"] - layers["value"]], 0, None)
            ax.errorbar(x[: len(layers)], layers["value"], yerr=errors, marker=marker, capsize=3, label=label)
        for kind, label, color in ((BASELINE, "raw backbone", "dimgrey"), ("ridge", "ridge map of the training dims", "tab:green")):
            level = rows[rows["kind"] == kind]
            if level.empty:
                continue
            ax.axhline(level["value"].iloc[0], linestyle="--", color=color, label=label)
            ax.axhspan(level["low"].iloc[0], level["high"].iloc[0], color=color, alpha=0.1, linewidth=0)
        ax.set_xticks(x, trained["layer"], rotation=30)
        ax.set_title(f"{subset} dimensions, {method} CKA")
        ax.set_xlabel("layer")
        ax.set_ylabel("CKA with reference (test objects)")
    axes.flat[0].legend(fontsize="small")
    figure.suptitle("Representational alignment against its controls")
    figure.tight_layout()
    return figure


def _per_unit(behaviour: pd.DataFrame) -> pd.DataFrame:
    """The tidy layout of :func:`mean_and_band`: one value per (learner, unit, trial)."""
    per_unit = behaviour.groupby(["learner", "unit", "trial"], as_index=False)["p_correct"].mean()
    return per_unit.rename(columns={"unit": "run_id", "trial": "step", "p_correct": "value"}).assign(key="p_correct")


def _draw_bands(ax: Axes, behaviour: pd.DataFrame) -> None:
    summary = mean_and_band(_per_unit(behaviour), "learner")
    for learner in [name for name in LEARNER_ORDER if name in set(summary["learner"])]:
        curve = summary[summary["learner"] == learner]
        line = ax.plot(curve["step"], curve["mean"], label=learner)[0]
        ax.fill_between(curve["step"], curve["mean"] - curve["half_width"], curve["mean"] + curve["half_width"],
                        color=line.get_color(), alpha=0.2, linewidth=0)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("trial")
    ax.set_ylabel("p(correct)")


def learning_curves(behaviour: pd.DataFrame) -> Figure:
    """p(correct) over trials on held-out dimensions, mean and 95 % band over episodes / participants."""
    figure, ax = plt.subplots(figsize=(5.5, 3.8))
    _draw_bands(ax, behaviour)
    ax.legend(fontsize="small")
    ax.set_title("Learning curves on held-out dimensions")
    figure.tight_layout()
    return figure


def learning_curves_by_dimension(behaviour: pd.DataFrame, names: Sequence[str]) -> Figure:
    dimensions = sorted(behaviour["dimension"].unique())
    columns = min(len(dimensions), 3)
    rows = math.ceil(len(dimensions) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.3 * rows), squeeze=False, sharey=True)
    for ax, dimension in zip(axes.flat, dimensions):
        _draw_bands(ax, behaviour[behaviour["dimension"] == dimension])
        ax.set_title(names[dimension])
    for ax in list(axes.flat)[len(dimensions):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize="small")
    figure.suptitle("Learning curves per held-out dimension")
    figure.tight_layout()
    return figure


def accuracy_by_dimension(behaviour: pd.DataFrame, names: Sequence[str]) -> Figure:
    """Mean p(correct) per dimension and learner, with 95 % intervals over units."""
    per_unit = behaviour.groupby(["learner", "dimension", "unit"], as_index=False)["p_correct"].mean()
    summary = per_unit.groupby(["learner", "dimension"])["p_correct"].agg(["mean", "sem"]).reset_index()
    learners = [name for name in LEARNER_ORDER if name in set(summary["learner"])]
    dimensions = sorted(summary["dimension"].unique())
    width = 0.8 / len(learners)
    figure, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(dimensions) * len(learners)), 3.8))
    for i, learner in enumerate(learners):
        rows = summary[summary["learner"] == learner].set_index("dimension").reindex(dimensions)
        ax.bar(np.arange(len(dimensions)) + i * width, rows["mean"], width, yerr=1.96 * rows["sem"].fillna(0), capsize=3, label=learner)
    ax.set_xticks(np.arange(len(dimensions)) + width * (len(learners) - 1) / 2, [names[d] for d in dimensions], rotation=20)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_ylabel("p(correct)")
    ax.set_title("Accuracy by held-out dimension")
    ax.legend(fontsize="small")
    figure.tight_layout()
    return figure


def group_figures(cka: pd.DataFrame, curves: pd.DataFrame) -> dict[str, Figure]:
    """compare's metalign figures from every run's CKA table and learning curves (with a ``group``):
    the mean CKA per layer of each group, and the held-out learning curves by group."""
    drawn = {}
    for group, rows in cka.groupby("group"):
        mean = rows.groupby(["layer", "kind", "subset", "method"], sort=False)[["value", "low", "high"]].mean().reset_index()
        drawn[f"metalign_cka_{group}"] = cka_layers(mean)
    tidy = curves.rename(columns={"trial": "step", "p_correct": "value"}).assign(key=lambda f: "p(correct) " + f["learner"])
    drawn["metalign_learning_curves"] = metric_curves(tidy, sorted(tidy["key"].unique()), group="group",
                                                      title="Held-out learning curves by group", xlabel="trial")
    return drawn
