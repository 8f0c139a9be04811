"""The compare entry point: select runs, read their histories (innerlens.tracking), group, test, draw, report."""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from innerlens import registry
from innerlens.analysis.censored import gehan_test, paired_order, restricted_mean
from innerlens.analysis.stats import holm, paired_statistics
from innerlens.configs.compare import FAMILY, CompareConfig
from innerlens.errors import ConfigError
from innerlens.metrics import direction, kind
from innerlens.tracking import DEFAULT_EXPERIMENT, TAG_FAMILY, TAG_SEED, TAG_VARIANT, read_csv_artifact
from innerlens.tracking.history import fetch_histories, search_runs
from innerlens.tracking.redaction import redact_secrets
from innerlens.tracking.store import tracking_uri
from innerlens.viz.compare import group_order
from innerlens.viz.curves import metric_curves

if TYPE_CHECKING:
    from mlflow.entities import Run

FAMILIES = {entry.name for entry in registry.FAMILIES}


def _search_filter(config: CompareConfig) -> str:
    clauses = [config.filter] if config.filter else []  # MLflow filters are AND-only, no parentheses
    for tag, value in ((TAG_FAMILY, config.family), (TAG_VARIANT, config.variant), ("innerlens.study", config.study)):
        if value:
            clauses.append(f"tags.`{tag}` = '{value}'")
    return " and ".join(clauses)


def select_runs(config: CompareConfig) -> list[Run]:
    """Runs of the named experiments matching the filter and tags, in the wanted states (compare runs excluded)."""
    names = config.experiments or (os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT),)
    runs = search_runs(names, _search_filter(config), config.max_runs)
    return [r for r in runs if r.info.status in config.states and r.data.tags.get(TAG_FAMILY) != FAMILY]


def group_value(run: Run, name: str) -> str:
    """A run's value of a group-by name: params.X, tags.X, or an innerlens tag, else a param."""
    if name.startswith("params."):
        return run.data.params.get(name[7:], "")
    if name.startswith("tags."):
        return run.data.tags.get(name[5:], "")
    tag = run.data.tags.get(f"innerlens.{name}")
    return tag if tag is not None else run.data.params.get(name, run.data.tags.get(name, ""))


def run_table(runs: list[Run], group_by: tuple[str, ...]) -> pd.DataFrame:
    """One row per run: id, group label, seed, experiment, family."""
    return pd.DataFrame({
        "run_id": [r.info.run_id for r in runs],
        "group": ["/".join(group_value(r, name) for name in group_by) or "all" for r in runs],
        "seed": [r.data.tags.get(TAG_SEED, "") for r in runs],
        "experiment_id": [r.info.experiment_id for r in runs],
        "family": [r.data.tags.get(TAG_FAMILY, "") for r in runs],
        "run_name": [r.info.run_name for r in runs],
    })


def paired_final_statistics(summary: pd.DataFrame, runs: pd.DataFrame, selected: list[Run], paired_by: str, reference: str) -> pd.DataFrame:
    """Paired statistics of final values, pairing runs on the value of ``paired_by``."""
    units = pd.DataFrame({"run_id": [r.info.run_id for r in selected], "unit": [group_value(r, paired_by) for r in selected]})
    table = summary.merge(units, on="run_id")[["group", "unit", "key", "final", "observed"]].rename(columns={"final": "value"})
    times = table["key"].map(kind) == "censored_time"
    exact = paired_statistics(table[~times].drop(columns="observed"), reference, unit="unit")
    return pd.concat([exact, paired_censored(table[times], reference)], ignore_index=True)


def paired_censored(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Censored times paired on the unit: the exact sign test over the pairs whose order is known
    (in the ``wilcoxon_p`` column, with the counts), never a mean of censored values."""
    rows = []
    for key, by_key in table.groupby("key"):
        wide = by_key.pivot_table(index="unit", columns="group", values=["value", "observed"], aggfunc="first")
        if reference not in wide["value"]:
            continue
        for group in [g for g in wide["value"].columns if g != reference]:
            both = wide["value"][[group, reference]].dropna().index
            order = paired_order(wide["value"].loc[both, group], wide["observed"].loc[both, group].astype(bool),
                                 wide["value"].loc[both, reference], wide["observed"].loc[both, reference].astype(bool))
            rows.append({"key": key, "group": group, "reference": reference, "n_pairs": len(both), "wilcoxon_p": order.p_value,
                         "test": f"paired order of censored times: {order.earlier} earlier, {order.later} later, "
                                 f"{order.tied} tied, {order.unknown} unknown"})
    return pd.DataFrame(rows)


def summaries(history: pd.DataFrame) -> pd.DataFrame:
    """Per (run, key): the final value (at the last step), the best (NaN without a declared direction,
    :mod:`innerlens.metrics`), and ``observed``: False for a censored time, an event that never
    happened (logged as a negative step), whose final value becomes the run's last step."""
    ordered = history.sort_values("step")
    grouped = ordered.groupby(["run_id", "key"])["value"]
    table = pd.DataFrame({"final": grouped.last(), "max": grouped.max(), "min": grouped.min()}).reset_index()
    directions = table["key"].map(direction)
    table["best"] = np.where(directions == "min", table["min"], np.where(directions == "max", table["max"], np.nan))
    censored_time = table["key"].map(kind) == "censored_time"
    table["observed"] = ~(censored_time & (table["final"] < 0))
    table["follow_up"] = table["run_id"].map(ordered.groupby("run_id")["step"].max())  # the run's last step
    table.loc[~table["observed"], "final"] = table.loc[~table["observed"], "follow_up"]
    return table.drop(columns=["max", "min"])


STATISTICS_COLUMNS = ["key", "which", "group", "reference", "n", "n_reference", "mean", "mean_reference", "mean_kind",
                      "censored", "censored_reference", "welch_t", "welch_p", "mwu_u", "mwu_p", "cohens_d", "rank_biserial"]


def group_statistics(summary: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Every group against ``reference`` per (key, final|best): Welch t, Mann-Whitney U, effect sizes, Holm-corrected."""
    rows = []
    for (key, which), table in summary.melt(id_vars=["run_id", "group", "key", "observed", "follow_up"], value_vars=["final", "best"],
                                             var_name="which").groupby(["key", "which"]):
        if kind(key) == "censored_time":
            if which == "final":
                rows += censored_rows(table, key, reference)
            continue
        ref = table.loc[table["group"] == reference, "value"].to_numpy()
        for group, values in table[table["group"] != reference].groupby("group")["value"]:
            other = values.to_numpy()
            row = {"key": key, "which": which, "group": group, "reference": reference, "n": len(other), "n_reference": len(ref),
                   "mean": other.mean(), "mean_reference": ref.mean() if len(ref) else np.nan, "mean_kind": "mean"}
            if len(other) >= 2 and len(ref) >= 2:
                welch = stats.ttest_ind(other, ref, equal_var=False)
                mwu = stats.mannwhitneyu(other, ref, alternative="two-sided")
                pooled = np.sqrt((other.var(ddof=1) + ref.var(ddof=1)) / 2)
                row.update({"welch_t": welch.statistic, "welch_p": welch.pvalue, "mwu_u": mwu.statistic, "mwu_p": mwu.pvalue,
                            "cohens_d": (other.mean() - ref.mean()) / pooled if pooled > 0 else np.nan,
                            "rank_biserial": 2 * mwu.statistic / (len(other) * len(ref)) - 1})
            rows.append(row)
    result = pd.DataFrame(rows, columns=STATISTICS_COLUMNS)
    for column in ("welch_p", "mwu_p"):
        tested = result[column].notna()
        result.loc[tested, f"{column}_holm"] = holm(result.loc[tested, column].to_numpy())
    return result


def censored_rows(table: pd.DataFrame, key: str, reference: str) -> list[dict[str, object]]:
    """A time to an event per group against the reference: Kaplan-Meier restricted means up to the
    shorter of the two groups' longest run (labelled as such) and Gehan's censored rank test in the
    Mann-Whitney columns."""
    ref = table[table["group"] == reference]
    rows = []
    for group, other in table[table["group"] != reference].groupby("group"):
        horizon = float(min(other["follow_up"].max(), ref["follow_up"].max())) if len(ref) else float(other["follow_up"].max())
        row: dict[str, object] = {
            "key": key, "which": "final", "group": group, "reference": reference, "n": len(other), "n_reference": len(ref),
            "mean": restricted_mean(other["value"], other["observed"], horizon) if len(other) else np.nan,
            "mean_reference": restricted_mean(ref["value"], ref["observed"], horizon) if len(ref) else np.nan,
            "mean_kind": f"restricted mean to step {horizon:g} (Kaplan-Meier)",
            "censored": int((~other["observed"]).sum()), "censored_reference": int((~ref["observed"]).sum())}
        if len(other) >= 2 and len(ref) >= 2:
            row["mwu_p"] = gehan_test(other["value"], other["observed"], ref["value"], ref["observed"])
        rows.append(row)
    return rows


def _run_links(runs: pd.DataFrame) -> list[str]:
    uri = tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else None
    links = []
    for row in runs.itertuples():
        label = html.escape(f"{row.group} · {row.run_name} · {row.run_id}")
        links.append(f"<a href='{base}/#/experiments/{row.experiment_id}/runs/{row.run_id}'>{label}</a>" if base else label)
    return links


def compare_runs(config: CompareConfig, *, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs, tidy history with group, per-run summaries, group statistics) for the selected runs."""
    selected = select_runs(config)
    if not selected:
        raise ConfigError(f"no runs match: experiments {config.experiments or 'default'}, filter {_search_filter(config) or 'none'}, states {','.join(config.states)}")
    runs = run_table(selected, config.group_by)
    keys = list(config.metrics)
    if not keys:
        families = set(runs["family"])
        present = sorted({k for r in selected for k in r.data.metrics})
        headline = registry.family(families.pop()).headline_metrics if len(families) == 1 and families <= FAMILIES else ()
        keys = [k for k in headline if k in present]
        keys = keys or present
    history = fetch_histories(None, selected, keys, workers=config.workers, progress=progress)
    history = history.merge(runs[["run_id", "group", "seed"]], on="run_id")
    summary = summaries(history).merge(runs[["run_id", "group"]], on="run_id")
    groups = group_order(runs["group"])
    reference = config.reference if config.reference is not None else groups[0]
    if reference not in groups:
        raise ConfigError(f"--reference {reference!r} is not a group; groups: {', '.join(groups)}")
    if config.paired_by:
        return runs, history, summary, paired_final_statistics(summary, runs, selected, config.paired_by, reference)
    return runs, history, summary, group_statistics(summary, reference)


def family_figures(family_name: str, history: pd.DataFrame, runs: pd.DataFrame, summary: pd.DataFrame) -> dict[str, Figure]:
    """A family's own figures over many of its runs (its module's ``comparison_figures``), if it has any."""
    try:
        module = registry.family(family_name).load()
    except KeyError:
        return {}
    draw = getattr(module, "comparison_figures", None)
    return {} if draw is None else draw(history, runs, summary, read_csv_artifact)


def run(config: CompareConfig, *, progress: bool = True) -> str:
    """Compare, then log the report, figures and tables as artifacts of a ``compare`` run."""
    from innerlens import tracking
    from innerlens.viz import compare as viz

    tracking.configure_tracking()
    tracking.check_tracking_store()  # an unreachable server: one line, not a traceback
    runs, history, summary, statistics = compare_runs(config, progress=progress)
    keys = list(dict.fromkeys(history["key"]))
    figures: dict[str, Figure] = {"curves": metric_curves(history, keys, group="group", title="Metrics by group",
                                                          xlabel="step", individual=config.individual_runs)}
    for which in ("final", "best"):
        figures[f"{which}_values"] = viz.summary_strips(summary, statistics, which)
    if config.scatter:
        figures["scatter"] = viz.summary_scatter(summary, *config.scatter)
    if runs["family"].nunique() == 1:  # the family's own figures, when every compared run belongs to one
        figures.update(family_figures(runs["family"].iloc[0], history, runs, summary))
    pngs = {name: viz.png(figure) for name, figure in figures.items()}
    query = {"tracking_uri": redact_secrets(tracking_uri()), "experiments": list(config.experiments) or "default",
             "filter": _search_filter(config) or None, "states": list(config.states), "group_by": list(config.group_by),
             "metrics": keys, "runs": len(runs)}
    tables = {"runs per group": runs.groupby("group").size().rename("runs").reset_index(),
              "final and best values": summary.groupby(["key", "group"])[["final", "best"]].agg(["mean", "std", "count"]).reset_index(),
              "statistics against the reference": statistics}
    report = viz.html_report("innerlens comparison", query, pngs, tables, _run_links(runs))
    with tracking.start_run(config, variant="/".join(config.group_by), run_name="compare") as tracker:
        tracker.log_text(report, "report.html")
        for name, data in pngs.items():
            tracker.log_bytes(data, f"figures/{name}.png")
        tracker.log_text(statistics.to_csv(index=False), "tables/statistics.csv")
        tracker.log_text(summary.to_csv(index=False), "tables/summary.csv")
        tracker.set_tags({"innerlens.compared_runs": str(len(runs))})
        if config.output_dir:
            out = Path(config.output_dir)
            (out / "figures").mkdir(parents=True, exist_ok=True)
            (out / "report.html").write_text(report)
            for name, data in pngs.items():
                (out / "figures" / f"{name}.png").write_bytes(data)
        return tracker.run_id
