"""Cross-run figures and the single-file report of the ``compare`` entry point."""
from __future__ import annotations

import base64
import html
import io
import json
import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def group_order(groups: Any) -> list[str]:
    """Groups sorted numerically when they all are numbers (64 before 128), else alphabetically."""
    groups = list(dict.fromkeys(groups))
    try:
        return sorted(groups, key=float)
    except ValueError:
        return sorted(groups)


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed (a comparison may draw many)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def summary_strips(summary: pd.DataFrame, statistics: pd.DataFrame, which: str) -> Figure:
    """Per metric, the runs' final (or best) values per group as box + points, Holm-corrected p vs the reference."""
    keys = list(dict.fromkeys(summary["key"]))
    columns = min(len(keys), 3)
    rows = math.ceil(len(keys) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.4 * rows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, key in zip(axes.flat, keys):
        panel = summary[summary["key"] == key]
        groups = group_order(panel["group"])
        values = [panel.loc[panel["group"] == g, which].to_numpy() for g in groups]
        seen = [panel.loc[panel["group"] == g, "observed"].to_numpy(bool) if "observed" in panel else np.ones(len(v), bool)
                for g, v in zip(groups, values)]
        ax.boxplot([v[s] for v, s in zip(values, seen)], showfliers=False)
        for i, (points, observed) in enumerate(zip(values, seen), start=1):
            jitter = i + rng.uniform(-0.12, 0.12, len(points))
            ax.scatter(jitter[observed], points[observed], s=12, alpha=0.7, zorder=3)
            if (~observed).any():  # never happened: censored at the run's last step, drawn apart
                ax.scatter(jitter[~observed], points[~observed], s=40, marker="^", facecolors="none", edgecolors="red",
                           zorder=4, label="censored (never happened by its last step)")
        if any((~s).any() for s in seen):
            ax.legend(fontsize="x-small", loc="best")
        labels = []
        for group in groups:
            # Unpaired tables test final and best values; paired ones (--paired-by) final values only.
            paired = "which" not in statistics
            same_value = which == "final" if paired else statistics["which"] == which
            row = statistics[(statistics["key"] == key) & same_value & (statistics["group"] == group)]
            censored = "mean_kind" in row and not row.empty and str(row["mean_kind"].iloc[0]).startswith("restricted")
            column = "wilcoxon_p_holm" if paired else ("mwu_p_holm" if censored else "welch_p_holm")
            p = row[column].iloc[0] if not row.empty and pd.notna(row[column].iloc[0]) else None
            labels.append(f"{group}\np={p:.2g}" if p is not None else str(group))
        ax.set_xticks(range(1, len(groups) + 1), labels, fontsize="small")
        ax.set_title(f"{which} {key}")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    figure.suptitle(f"{which.capitalize()} values per group (Welch p vs reference, Holm-corrected)")
    figure.tight_layout()
    return figure


def summary_scatter(summary: pd.DataFrame, x: str, y: str) -> Figure:
    """One point per run: two summary values (``final:KEY`` / ``best:KEY``) against each other, coloured by group."""

    def column(spec: str) -> pd.Series:
        which, key = spec.split(":", 1)
        return summary[summary["key"] == key].set_index("run_id")[which].rename(spec)

    table = pd.concat([column(x), column(y)], axis=1).dropna()
    table = table.join(summary.drop_duplicates("run_id").set_index("run_id")["group"])
    figure, ax = plt.subplots(figsize=(5.2, 4.0))
    for group, points in table.groupby("group"):
        ax.scatter(points[x], points[y], label=str(group), s=18)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if len(table):
        ax.legend(fontsize="small")
    ax.set_title("Runs")
    figure.tight_layout()
    return figure


def html_report(title: str, query: dict[str, Any], pngs: dict[str, bytes], tables: dict[str, pd.DataFrame], links: list[str]) -> str:
    """One self-contained HTML file: the query, figures (inline PNG), tables and links to every run."""
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Query</h2>", f"<pre>{html.escape(json.dumps(query, indent=2, default=str))}</pre>"]
    parts.append("<h2>Figures</h2>")
    for name, data in pngs.items():
        encoded = base64.b64encode(data).decode("ascii")
        parts.append(f"<h3>{html.escape(name)}</h3><img alt='{html.escape(name)}' src='data:image/png;base64,{encoded}'>")
    parts.append("<h2>Tables</h2>")
    for name, table in tables.items():
        parts.append(f"<h3>{html.escape(name)}</h3>" + table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep=""))
    parts.append("<h2>Runs</h2><ul>" + "".join(f"<li>{link}</li>" for link in links) + "</ul>")
    style = "body{font-family:sans-serif;max-width:1200px;margin:auto}img{max-width:100%}table{border-collapse:collapse;font-size:small}td,th{border:1px solid #ccc;padding:2px 6px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"


def dose_response(summaries: pd.DataFrame, keys: list[str], *, baseline: str) -> Figure:
    """Per metric: each variant's mean and 95 % t-interval over seeds against the self-model weight
    (log x), with the baseline's mean and interval as a horizontal band."""
    from scipy import stats

    def interval(values: pd.Series) -> tuple[float, float]:
        n = len(values)
        half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n) if n > 1 else 0.0
        return float(values.mean()), float(half)

    figure, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        rows = summaries[summaries["key"] == key]
        base = rows[rows["group"] == baseline]["value"]
        if len(base):
            mean, half = interval(base)
            ax.axhspan(mean - half, mean + half, color="grey", alpha=0.25, label=f"{baseline} (95 % CI)")
            ax.axhline(mean, color="grey", linewidth=1)
        for variant, by_variant in rows[rows["group"] != baseline].groupby("variant"):
            points = [(weight, *interval(values["value"])) for weight, values in by_variant.groupby("weight")]
            weights, means, halves = zip(*points)
            ax.errorbar(weights, means, yerr=halves, marker="o", capsize=3, label=variant)
        ax.set_xscale("log")
        ax.set_xlabel("self-model weight")
        ax.set_title(key)
    if axes.flat[0].get_legend_handles_labels()[0]:  # a metric the runs did not measure leaves the panel empty
        axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    return figure
