"""Grokking figures: training dynamics with detected phases, progress measures, Fourier spectra,
attention and embedding evolution, and a self-contained interactive dashboard.

Inputs are a tidy history (step, key, value), the detected :class:`Transitions` and per-snapshot
``evolution`` data ({step: {"embedding": p x d, "pattern": heads x keys}}).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from innerlens.analysis.features import effective_dimension, pca
from innerlens.analysis.transitions import Transitions
from innerlens.viz.curves import metric_curves, plt

PHASE_COLOURS = {"memorization": "#f4a582", "circuit formation": "#92c5de", "cleanup": "#a6dba0"}
SPLITS = ("train", "val", "test")


def split_curves(history: pd.DataFrame) -> pd.DataFrame:
    """``train/acc`` rows -> key ``acc`` with a ``split`` column, so splits share a panel."""
    rows = history[history["key"].str.match(r"^(train|val|test)/(acc|loss)$")].copy()
    parts = rows["key"].str.split("/", expand=True)
    rows["split"], rows["key"] = parts[0], parts[1]
    return rows


def phase_overlay(transitions: Transitions) -> Callable[[Axes], None]:
    """Shade the phases and mark memorization, generalization and change points on a panel."""

    def draw(ax: Axes) -> None:
        for name, start, end in transitions.phases:
            ax.axvspan(start, end, color=PHASE_COLOURS[name], alpha=0.25, linewidth=0, label=name)
        for step, style, label in (
            (transitions.memorization_step, "-", "memorized"),
            (transitions.generalization_step, "-", "generalized"),
        ):
            if not math.isnan(step):
                ax.axvline(step, color="black", linestyle=style, linewidth=0.8)
                ax.annotate(label, (step, 1.0), xycoords=("data", "axes fraction"), rotation=90, fontsize=7, va="top", ha="right")
        for step in transitions.change_points:
            ax.axvline(step, color="grey", linestyle="--", linewidth=0.7)

    return draw


def training_dynamics(history: pd.DataFrame, transitions: Transitions) -> Figure:
    return metric_curves(
        split_curves(history),
        ["acc", "loss"],
        group="split",
        title="Training dynamics (shaded: detected phases; dashed: change points of log val loss)",
        log_y={"loss"},
        xlabel="step",
        decorate=phase_overlay(transitions),
    )


def progress_measures(history: pd.DataFrame, transitions: Transitions) -> Figure:
    """Nanda et al.'s progress measures next to the losses they explain."""
    wanted = [
        "train/loss",
        "val/loss",
        "grok/restricted_loss",
        "grok/excluded_loss",
        "final_keys/grok/restricted_loss",
        "final_keys/grok/excluded_loss",
        "fourier/gini",
        "weights/norm",
        "features/effective_dim",
    ]
    keys = [k for k in wanted if k in set(history["key"])]
    frame = history[history["key"].isin(keys)].assign(run="run")
    return metric_curves(
        frame,
        keys,
        group="run",
        title="Progress measures",
        log_y={k for k in keys if k.endswith("loss")},
        xlabel="step",
        decorate=phase_overlay(transitions),
    )


def fourier_spectrum(history: pd.DataFrame) -> Figure | None:
    """Embedding norm per frequency over training (heatmap) and at the end (bars)."""
    rows = history[history["key"].str.startswith("fourier/k_")]
    if rows.empty:
        return None
    wide = rows.pivot_table(index="key", columns="step", values="value").sort_index()
    frequencies = [int(k.rsplit("_", 1)[1]) for k in wide.index]
    figure, (heat, bars) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 2]})
    first, last = float(wide.columns.min()), float(wide.columns.max())
    image = heat.imshow(wide.to_numpy(), aspect="auto", origin="lower", cmap="viridis",
                        extent=(first, max(last, first + 1), frequencies[0] - 0.5, frequencies[-1] + 0.5))
    figure.colorbar(image, ax=heat, label="norm")
    heat.set_xlabel("step")
    heat.set_ylabel("frequency k")
    heat.set_title("Embedding Fourier norms over training")
    final = wide.iloc[:, -1].to_numpy()
    top = set(np.argsort(final)[::-1][:5])
    bars.bar(frequencies, final, color=["tab:red" if i in top else "tab:blue" for i in range(len(final))])
    for i in sorted(top):
        bars.annotate(str(frequencies[i]), (frequencies[i], final[i]), ha="center", va="bottom", fontsize=8)
    bars.set_xlabel("frequency k")
    bars.set_title(f"At step {int(wide.columns.max())} (red: strongest 5)")
    figure.tight_layout()
    return figure


def attention_evolution(evolution: dict[int, dict[str, Any]], tokens: list[str]) -> Figure:
    """Heads' attention from '=' to each position, at each snapshot step."""
    steps = sorted(evolution)
    patterns = np.stack([evolution[s]["pattern"].numpy() for s in steps])  # steps x heads x keys
    heads = patterns.shape[1]
    figure, axes = plt.subplots(1, heads, figsize=(3.2 * heads, 3.2), squeeze=False)
    for head, ax in enumerate(axes.flat):
        image = ax.imshow(patterns[:, head, :].T, aspect="auto", vmin=0, vmax=1, cmap="magma", origin="lower")
        ax.set_yticks(range(len(tokens)), tokens)
        ticks = np.linspace(0, len(steps) - 1, min(len(steps), 5)).round().astype(int)
        ax.set_xticks(ticks, [str(steps[t]) for t in ticks], rotation=45, fontsize=7)
        ax.set_xlabel("step (snapshots)")
        ax.set_title(f"head {head}: attention from '='")
    figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    return figure


def embedding_evolution(evolution: dict[int, dict[str, Any]], *, method: str = "pca") -> Figure:
    """Small multiples of the residue embeddings projected to 2-d at each snapshot."""
    steps = sorted(evolution)
    columns = min(len(steps), 6)
    rows = math.ceil(len(steps) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.4 * rows), squeeze=False)
    for ax, step in zip(axes.flat, steps):
        embedding = evolution[step]["embedding"]
        points = project(embedding, method)
        ax.scatter(points[:, 0], points[:, 1], c=np.arange(len(points)), cmap="hsv", s=8)
        ax.set_title(f"step {step}\neff. dim {effective_dimension(embedding):.1f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(steps):]:
        ax.axis("off")
    figure.suptitle(f"Token embeddings ({method.upper()}), colour = residue")
    figure.tight_layout()
    return figure


def project(embedding: torch.Tensor, method: str) -> np.ndarray:
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, perplexity=min(30, len(embedding) - 1), random_state=0).fit_transform(embedding.numpy())
    return pca(embedding, 2)[0].numpy()


def run_figures(
    history: pd.DataFrame, transitions: Transitions, evolution: dict[int, dict[str, Any]], tokens: list[str], *, tsne: bool = False
) -> dict[str, Figure]:
    figures: dict[str, Figure | None] = {
        "training_dynamics": training_dynamics(history, transitions),
        "progress_measures": progress_measures(history, transitions),
        "fourier_spectrum": fourier_spectrum(history),
    }
    if evolution:
        figures["attention_evolution"] = attention_evolution(evolution, tokens)
        figures["embedding_evolution"] = embedding_evolution(evolution)
        if tsne:
            figures["embedding_tsne"] = embedding_evolution(evolution, method="tsne")
    return {name: figure for name, figure in figures.items() if figure is not None}


def time_to_generalize(summary: pd.DataFrame, generalisation: pd.DataFrame, parameter: str, max_steps: float) -> Figure:
    """Generalization step against a swept value: each run (× at the budget: did not generalize, censored),
    and per value the mean with its t 95 % interval when every run generalized, else the restricted mean
    (hollow, no interval): averaging only the runs that generalized would flatter the slow values."""
    figure, ax = plt.subplots(figsize=(5.5, 3.8))
    rows = generalisation.sort_values(parameter)
    exact = rows[rows["estimate"] == "mean"]
    if not exact.empty:
        ax.errorbar(exact[parameter], exact["mean"], yerr=[exact["mean"] - exact["ci_low"].fillna(exact["mean"]),
                    exact["ci_high"].fillna(exact["mean"]) - exact["mean"]], marker="o", capsize=3, linestyle="none",
                    label="mean ± t 95 % CI (all generalized)")
    restricted = rows[rows["estimate"] != "mean"]
    if not restricted.empty:
        ax.scatter(restricted[parameter], restricted["mean"], marker="o", facecolors="none", edgecolors="tab:red", s=50,
                   label=f"restricted mean to {max_steps:g} (some censored)")
    grokked = summary[summary["generalization_step"] >= 0]
    ax.scatter(grokked[parameter], grokked["generalization_step"], s=12, color="grey", alpha=0.6, label="runs")
    failed = summary[summary["generalization_step"] < 0]
    if not failed.empty:
        ax.scatter(failed[parameter], np.full(len(failed), max_steps), marker="x", color="tab:red", label="not by the last step (censored)")
    ax.set_xlabel(parameter)
    ax.set_ylabel("steps to generalize")
    numeric = pd.to_numeric(summary[parameter], errors="coerce")
    if (numeric > 0).all() and numeric.max() / max(numeric.min(), 1e-30) >= 20:
        ax.set_xscale("log")
    ax.legend(fontsize="small")
    ax.set_title(f"Time to generalize vs {parameter}")
    figure.tight_layout()
    return figure


def dashboard(
    history: pd.DataFrame, transitions: Transitions, evolution: dict[int, dict[str, Any]], tokens: list[str], *, title: str
) -> str:
    """One self-contained HTML page (plotly inlined): curves, phases, progress measures, Fourier
    spectrum, and attention and embedding evolution over a step slider."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    wide = history.pivot_table(index="step", columns="key", values="value").sort_index()
    curves = make_subplots(rows=1, cols=2, subplot_titles=("accuracy", "loss (log)"))
    for split in SPLITS:
        for col, metric in ((1, "acc"), (2, "loss")):
            key = f"{split}/{metric}"
            if key in wide:
                series = wide[key].dropna()
                curves.add_trace(go.Scatter(x=series.index, y=series.values, name=key, mode="lines"), row=1, col=col)
    curves.update_yaxes(type="log", row=1, col=2)
    for name, start, end in transitions.phases:
        curves.add_vrect(x0=start, x1=end, fillcolor=PHASE_COLOURS[name], opacity=0.25, line_width=0, annotation_text=name)
    for step in transitions.change_points:
        curves.add_vline(x=step, line_dash="dash", line_color="grey")
    curves.update_layout(title=f"{title}: training dynamics", height=420)
    sections = [curves]

    measure_keys = [k for k in wide.columns if k.startswith(("grok/restricted", "grok/excluded", "final_keys/", "fourier/gini", "weights/norm", "features/"))]
    if measure_keys:
        measures = go.Figure()
        for key in measure_keys:
            series = wide[key].dropna()
            measures.add_trace(go.Scatter(x=series.index, y=series.values, name=key, mode="lines+markers"))
        measures.update_layout(title="Progress measures", yaxis_type="log", height=380)
        sections.append(measures)

    fourier_keys = sorted(k for k in wide.columns if k.startswith("fourier/k_"))
    if fourier_keys:
        spectrum = wide[fourier_keys].dropna(how="all")
        heat = go.Figure(go.Heatmap(z=spectrum.to_numpy().T, x=spectrum.index, y=[int(k.rsplit("_", 1)[1]) for k in fourier_keys], colorscale="Viridis"))
        heat.update_layout(title="Embedding Fourier norms (frequency x step)", xaxis_title="step", yaxis_title="frequency k", height=380)
        sections.append(heat)

    if evolution:
        sections += [_slider_figure(evolution, tokens, "pattern"), _slider_figure(evolution, tokens, "embedding")]
    parts = [f"<h2>{title}</h2>"]
    for index, figure in enumerate(sections):
        parts.append(figure.to_html(full_html=False, include_plotlyjs="inline" if index == 0 else False))
    return "<!doctype html><html><head><meta charset='utf-8'><title>" + title + "</title></head><body>" + "\n".join(parts) + "</body></html>"


def _slider_figure(evolution: dict[int, dict[str, Any]], tokens: list[str], what: str) -> Any:
    """Attention patterns (heads x positions) or the embedding PCA, one frame per snapshot step."""
    import plotly.graph_objects as go

    steps = sorted(evolution)
    figure = go.Figure()
    for index, step in enumerate(steps):
        if what == "pattern":
            pattern = evolution[step]["pattern"].numpy()
            trace = go.Heatmap(z=pattern, x=tokens, y=[f"head {h}" for h in range(len(pattern))], zmin=0, zmax=1, colorscale="Magma")
        else:
            points = pca(evolution[step]["embedding"], 2)[0].numpy()
            trace = go.Scatter(x=points[:, 0], y=points[:, 1], mode="markers", text=[str(i) for i in range(len(points))],
                               marker={"color": list(range(len(points))), "colorscale": "HSV", "size": 7})
        trace.visible = index == len(steps) - 1
        figure.add_trace(trace)
    slider_steps = [
        {"method": "update", "label": str(step), "args": [{"visible": [i == j for j in range(len(steps))]}]}
        for i, step in enumerate(steps)
    ]
    name = "Attention from '=' per head" if what == "pattern" else "Token embeddings (PCA), colour = residue"
    figure.update_layout(
        title=f"{name}: drag the slider through training steps",
        sliders=[{"active": len(steps) - 1, "currentvalue": {"prefix": "step "}, "steps": slider_steps}],
        height=460,
    )
    return figure
