"""The self-modeling study: baseline and variants x self-model weights x seeds, each a nested run,
then paired statistics against the baseline on the same seed, a dose-response figure and a verdict.

Runs that share a seed share data, split, initialisation and batch order, so every contrast is
paired on the seed. The pre-declared primary metrics are the final LLC, the final weight std and
test accuracy at the best validation checkpoint; Holm corrects over each metric's contrasts.
"""
from __future__ import annotations

import functools
import tempfile
import threading
from pathlib import Path

import click
import pandas as pd

from innerlens import session, tracking
from innerlens.analysis.stats import paired_statistics
from innerlens.configs.self_modeling_comparison import BASELINE, FAMILY, SelfModelingComparisonConfig
from innerlens.drivers.executor import study_run
from innerlens.drivers.study import train_or_reuse
from innerlens.families.seed_stack import SeedStack
from innerlens.families.self_modeling import SelfModelingConfig
from innerlens.local_copy import check_output_dir, write_local_copy
from innerlens.tracking import children_history
from innerlens.viz.compare import dose_response
from innerlens.viz.self_modeling import figures

TAG_WEIGHT = "innerlens.self_model_weight"
# Pre-declared primary metrics (one number per run) and the direction a simpler network moves them.
PRIMARY_METRICS = {"llc/final_mean": "lower", "weights/std_final": "lower", "test/acc_at_best": "higher"}
SECONDARY_METRICS = {"llc/best_mean": "lower", "weights/std_best": "lower", "val/acc_at_best": "higher",
                     # The grokking regime's questions: a run that never reaches 0.95 counts as max_epochs + 1
                     # (censored at the top, which the rank-based Wilcoxon test treats conservatively).
                     "val/epoch_to_acc_0.95": "lower", "train/collapses": "lower"}


def group_label(variant: str, weight: float) -> str:
    return BASELINE if variant == BASELINE else f"{variant} w={weight:g}"


def task_name(single: SelfModelingConfig) -> str:
    return f"{single.variant} w={single.self_model_weight:g} seed {single.seed}"


def _train_child(job: tuple[SelfModelingConfig, str], stack: tuple[SeedStack, int] | None = None) -> str:
    """One nested run (in a worker process): the run id."""
    single, parent_id = job
    train = functools.partial(session.run, "self_modeling", stack=stack)
    return study_run(train, single, parent_id, task_name(single), {TAG_WEIGHT: f"{single.self_model_weight:g}"}).run_id


def _train_cell(job: tuple[list[SelfModelingConfig], str]) -> list[str]:
    """Every seed of one (variant, weight) cell as one stacked model, a thread and a run per seed."""
    singles, parent_id = job
    stack = SeedStack(len(singles))
    run_ids: list[str] = [""] * len(singles)
    errors: list[BaseException] = []

    def train(index: int) -> None:
        try:
            run_ids[index] = _train_child((singles[index], parent_id), (stack, index))
        except BaseException as error:  # reported once every seed has stopped
            stack.abort()  # the other seeds stop waiting for this one
            errors.append(error)

    threads = [threading.Thread(target=train, args=(index,), daemon=True) for index in range(len(singles))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return run_ids


def cell_tasks(singles: list[SelfModelingConfig], parent_id: str) -> list[tuple[str, tuple[list[SelfModelingConfig], str]]]:
    """One task per (variant, weight) with all its seeds, for --stack-seeds."""
    cells: dict[str, list[SelfModelingConfig]] = {}
    for single in singles:
        cells.setdefault(group_label(single.variant, single.self_model_weight), []).append(single)
    return [(label, (members, parent_id)) for label, members in cells.items()]


def run_summaries(parent_id: str) -> pd.DataFrame:
    """(run_id, group, variant, weight, seed, key, value) of every child's end-of-training metrics."""
    rows = []
    for child in tracking.children(parent_id):
        if child.info.status != "FINISHED":
            continue
        tags, params = child.data.tags, child.data.params
        variant = tags.get(tracking.TAG_VARIANT, "")
        weight = float(tags.get(TAG_WEIGHT, params.get("self_model_weight", "0")))
        weight = 0.0 if variant == BASELINE else weight
        for key, value in child.data.metrics.items():
            rows.append({"run_id": child.info.run_id, "group": group_label(variant, weight), "variant": variant,
                         "weight": weight, "seed": int(tags.get(tracking.TAG_SEED, "0")), "key": key, "value": value})
    return pd.DataFrame(rows, columns=["run_id", "group", "variant", "weight", "seed", "key", "value"])


def study_statistics(summaries: pd.DataFrame) -> pd.DataFrame:
    """Paired statistics of every cell against the baseline on the same seed, primary metrics first."""
    keys = [*PRIMARY_METRICS, *SECONDARY_METRICS]
    table = summaries[summaries["key"].isin(keys)]
    statistics = paired_statistics(table, BASELINE, unit="seed")
    statistics["primary"] = statistics["key"].isin(list(PRIMARY_METRICS))
    statistics["simpler_direction"] = statistics["key"].map({**PRIMARY_METRICS, **SECONDARY_METRICS})
    order = {key: i for i, key in enumerate(keys)}
    return statistics.sort_values(["key", "group"], key=lambda c: c.map(order) if c.name == "key" else c, ignore_index=True)


def gamma_table(summaries: pd.DataFrame) -> pd.DataFrame:
    """Final LLC per run at each γ (first seed only) with the rank of each group at that γ."""
    llc = summaries[summaries["key"].str.fullmatch(r"llc/final_mean(_gamma_.+)?")].copy()
    if llc.empty or not llc["key"].str.contains("_gamma_").any():
        return pd.DataFrame(columns=["group", "gamma", "llc", "rank"])
    llc = llc[llc["seed"] == llc.loc[llc["key"].str.contains("_gamma_"), "seed"].min()]
    llc["gamma"] = llc["key"].str.extract(r"_gamma_(.+)$")[0].fillna("default")
    llc = llc.rename(columns={"value": "llc"})[["group", "gamma", "llc"]]
    llc["rank"] = llc.groupby("gamma")["llc"].rank().astype(int)
    return llc.sort_values(["gamma", "rank"], ignore_index=True)


def verdict_table(statistics: pd.DataFrame) -> str:
    """The primary contrasts as a terminal table: difference [CI], Holm-corrected p."""
    lines = [f"{'metric':20s} {'cell':24s} {'n':>3s} {'diff vs baseline [95% CI]':>34s} {'Wilcoxon p (Holm)':>18s} {'t p (Holm)':>11s}"]
    for row in statistics[statistics["primary"]].itertuples():
        interval = f"{row.mean_difference:+.4g} [{row.ci_low:+.3g}, {row.ci_high:+.3g}]"
        lines.append(f"{row.key:20s} {row.group:24s} {row.n_pairs:3d} {interval:>34s} {row.wilcoxon_p_holm:18.3g} {row.paired_t_p_holm:11.3g}")
    return "\n".join(lines)


def compare(config: SelfModelingComparisonConfig, progress: bool = True) -> str:
    """Train (unless skipped) and analyse the study; return the parent run id."""
    singles = config.single_runs()
    output_dir = check_output_dir(config.output_dir, config.force_overwrite) if config.output_dir else None
    with tracking.start_run(config, variant="comparison", run_name="self-modeling-comparison") as tracker:
        tasks, train = ((cell_tasks(singles, tracker.run_id), _train_cell) if config.stack_seeds else
                        ([(task_name(s), (s, tracker.run_id)) for s in singles], _train_child))
        unit = f"cells of {len(config.seeds)} stacked seeds" if config.stack_seeds else "runs"
        parent_id = train_or_reuse(config, tracker, FAMILY, tasks, train, skip_training=config.skip_training,
                                   workers=config.workers, progress=progress, unit=unit)
        summaries = run_summaries(parent_id)
        statistics = study_statistics(summaries)
        gammas = gamma_table(summaries)
        history = children_history(parent_id)
        drawn = figures(history, group="variant")
        drawn["dose_response"] = dose_response(summaries, list(PRIMARY_METRICS), baseline=BASELINE)
        tracker.log_text(statistics.to_csv(index=False), "tables/paired_statistics.csv")
        tracker.log_text(summaries.to_csv(index=False), "tables/run_summaries.csv")
        tracker.log_text(gammas.to_csv(index=False), "tables/gamma_sensitivity.csv")
        out_dir = Path(tempfile.mkdtemp(prefix="innerlens-comparison-"))
        for name, figure in drawn.items():
            if config.show_plots:
                path = out_dir / f"{name}.png"
                figure.savefig(path, dpi=120, bbox_inches="tight")
                click.launch(str(path))
            tracker.log_figure(figure, name)
        tracker.log_history(history)
        if output_dir is not None:  # the parent's figures and tables, then each run's under its task name
            tracker.flush()
            target = write_local_copy(tracker.run_id, output_dir, config.force_overwrite)
            for child in tracking.children(parent_id):
                name = tracking.figure_name(child.data.tags.get(tracking.TAG_TASK, child.info.run_id))
                tracking.download_run_artifacts(child.info.run_id, target / "runs" / name)
        click.echo(verdict_table(statistics))
        if not gammas.empty:
            click.echo("final LLC rank of each cell at each γ (first seed):\n" + gammas.to_string(index=False))
        return tracker.run_id
