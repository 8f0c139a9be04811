"""Figure builders over tidy metric frames: (run_id, <group columns>, step, key, value) in, Figure out.

One run's report and cross-run comparisons draw with the same functions; a single run is
just a group with one member (no band).
"""
from __future__ import annotations

import math
from typing import Callable, Collection

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import stats  # noqa: E402

TIDY_COLUMNS = ["run_id", "step", "key", "value"]


def mean_and_band(df: pd.DataFrame, group: str, confidence: float = 0.95) -> pd.DataFrame:
    """Per (group, key, step): mean over runs and a t-interval half-width (0 for one run)."""
    summary = (
        df.groupby([group, "key", "step"])["value"]
        .agg(mean="mean", std="std", n="count")
        .reset_index()
    )
    t = summary["n"].map(lambda n: stats.t.ppf(0.5 + confidence / 2, n - 1) if n > 1 else 0.0)
    summary["half_width"] = (t * summary["std"].fillna(0.0) / np.sqrt(summary["n"])).fillna(0.0)
    return summary


def metric_curves(
    df: pd.DataFrame,
    keys: list[str],
    *,
    group: str,
    title: str,
    log_y: bool | Collection[str] = False,
    ylabel: str | None = None,
    xlabel: str = "epoch",
    decorate: Callable[[Axes], None] | None = None,
    individual: bool = False,
) -> Figure:
    """One panel per metric key; a line per group with its mean and 95 % band over runs.

    ``log_y`` is True for every panel or the keys drawn on a log scale; ``decorate`` draws
    on every panel afterwards (e.g. shaded training phases); ``individual`` adds each run as a
    thin line in its group's colour.
    """
    summary = mean_and_band(df[df["key"].isin(keys)], group)
    columns = min(len(keys), 3)
    rows = math.ceil(len(keys) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        panel = summary[summary["key"] == key]
        for name, curve in panel.groupby(group, sort=True):
            line = ax.plot(curve["step"], curve["mean"], label=str(name))[0]
            if individual:
                members = df[(df["key"] == key) & (df[group] == name)]
                for _, single in members.groupby("run_id"):
                    ax.plot(single["step"], single["value"], color=line.get_color(), linewidth=0.5, alpha=0.35)
            ax.fill_between(
                curve["step"],
                curve["mean"] - curve["half_width"],
                curve["mean"] + curve["half_width"],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
        ax.set_title(key)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel or key.split("/")[-1])
        if (log_y is True or (not isinstance(log_y, bool) and key in log_y)) and (panel["mean"] > 0).all() and not panel.empty:
            ax.set_yscale("log")
        if decorate is not None:
            decorate(ax)
        if panel.empty:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), bbox_to_anchor=(0.5, 1.02))
    figure.suptitle(title, y=1.08 if handles else 1.0)
    figure.tight_layout()
    return figure


def learning_dynamics(df: pd.DataFrame, splits: list[str], *, group: str, title: str) -> Figure:
    """Accuracy against loss along training, per split: how each group moves through loss space."""
    figure, axes = plt.subplots(1, len(splits), figsize=(4.5 * len(splits), 3.6), squeeze=False)
    for ax, split in zip(axes.flat, splits):
        summary = mean_and_band(df[df["key"].isin([f"{split}/loss", f"{split}/acc"])], group)
        wide = summary.pivot_table(index=[group, "step"], columns="key", values="mean").reset_index()
        for name, path in wide.groupby(group, sort=True):
            if {f"{split}/loss", f"{split}/acc"} <= set(path.columns):
                path = path.sort_values("step")
                ax.plot(path[f"{split}/loss"], path[f"{split}/acc"], marker=".", label=str(name))
        ax.set_xlabel(f"{split} loss")
        ax.set_ylabel(f"{split} accuracy")
        ax.set_title(split)
    if axes.flat[0].get_legend_handles_labels()[0]:
        axes.flat[0].legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def llc_traces(traces: pd.DataFrame) -> Figure:
    """SGLD loss per draw, one line per chain, one panel per (measuring point, γ): is each chain stationary?"""
    panels = list(traces.groupby(["which", "gamma"], sort=False))
    figure, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.2), squeeze=False)
    for ax, ((which, gamma), rows) in zip(axes.flat, panels):
        for chain, trace in rows.groupby("chain"):
            ax.plot(trace["draw"], trace["loss"], linewidth=0.8, label=f"chain {chain}")
        ax.set_title(f"{which} weights, γ = {gamma:g}")
        ax.set_xlabel("draw")
        ax.set_ylabel("sampled training loss")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    return figure
