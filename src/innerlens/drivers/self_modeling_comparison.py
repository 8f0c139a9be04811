"""The self-modeling study: baseline and variants x self-model weights x seeds, each a nested run,
then paired statistics against the baseline on the same seed, a dose-response figure and a verdict.

Runs that share a seed share data, split, initialisation and batch order, so every contrast is
paired on the seed. The pre-declared primary metrics are the final LLC by both estimators
(calibrated and the paper's), the final weight std of the classifier and test accuracy at the best
validation checkpoint; Holm corrects the permutation p-values over every primary contrast at once.
Each is tested for equivalence (TOST) against a declared smallest effect of interest: 10 % of the
baseline mean for the LLC and the weight std, half a point of accuracy. Every row says how many
runs on each side had settled (:mod:`innerlens.analysis.settling`).
"""
from __future__ import annotations

import functools
import re
import tempfile
import threading
from pathlib import Path

import click
import pandas as pd

from innerlens import session, tracking
from innerlens.analysis.stats import Margin, paired_statistics
from innerlens.configs.self_modeling_comparison import BASELINE, FAMILY, SelfModelingComparisonConfig
from innerlens.drivers.executor import study_run
from innerlens.drivers.study import continued, train_or_reuse
from innerlens.families.seed_stack import SeedStack
from innerlens.families.self_modeling import SelfModelingConfig
from innerlens.local_copy import check_output_dir, write_local_copy
from innerlens.results import RunResult
from innerlens.tracking import children_history
from innerlens.viz.compare import dose_response
from innerlens.viz.self_modeling import figures

TAG_WEIGHT = "innerlens.self_model_weight"
# Pre-declared primary metrics (one number per run) and the direction a simpler network moves them.
PRIMARY_METRICS = {"llc/final_mean": "lower", "llc/final_mean_paper": "lower", "weights/std_final": "lower",
                   "test/acc_at_best": "higher"}
SECONDARY_METRICS = {"weights/std_all_final": "lower", "llc/best_mean": "lower", "weights/std_best": "lower",
                     # --llc-after-generalisation: the same distance from every run's own generalisation
                     "llc/after_generalisation_mean": "lower", "llc/after_generalisation_mean_paper": "lower",
                     "weights/std_after_generalisation": "lower",
                     "val/acc_at_best": "higher", "test/acc_final": "higher",
                     # The grokking regime's questions: a run that never reaches 0.95 counts as max_epochs + 1
                     # (censored at the top, which the rank-based Wilcoxon test treats conservatively).
                     "val/epoch_to_acc_0.95": "lower", "train/collapses": "lower"}


# The smallest effect of interest per metric, for TOST: a fraction of the baseline mean, or absolute.
MARGINS: dict[str, Margin] = {"llc/final_mean": ("relative", 0.10), "llc/final_mean_paper": ("relative", 0.10),
                              "weights/std_final": ("relative", 0.10), "weights/std_all_final": ("relative", 0.10),
                              "test/acc_at_best": ("absolute", 0.005), "test/acc_final": ("absolute", 0.005),
                              # the same measures at the same distance from each run's own generalisation
                              "llc/after_generalisation_mean": ("relative", 0.10),
                              "llc/after_generalisation_mean_paper": ("relative", 0.10),
                              "weights/std_after_generalisation": ("relative", 0.10)}
SETTLED = "train/settled"


def exact(weight: float) -> str:
    """The shortest spelling that round-trips (``repr``, without a trailing ``.0``): 0.1, 1, 0.1000001
    are three cells, where ``:g`` (6 digits) would merge the last two."""
    text = repr(float(weight))
    return text[:-2] if text.endswith(".0") else text


def group_label(variant: str, weight: float) -> str:
    return BASELINE if variant == BASELINE else f"{variant} w={exact(weight)}"


def group_slug(group: str) -> str:
    """A group label as it appears in a file name: ``input_control w=1`` -> ``input_control_w_1``."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", group)


def task_name(single: SelfModelingConfig) -> str:
    """The nested run's task label, with the exact weight."""
    return f"{single.variant} w={exact(single.self_model_weight)} seed {single.seed}"


def _train_child(job: tuple[SelfModelingConfig, str], stack: tuple[SeedStack, int] | None = None,
                 unit: str | None = None) -> RunResult:
    """One nested run (in a worker process; ``unit``: the executor's task it belongs to)."""
    single, parent_id = job
    train = functools.partial(session.run, "self_modeling", stack=stack)
    return study_run(train, single, parent_id, task_name(single), {TAG_WEIGHT: exact(single.self_model_weight)},
                     unit=unit).portable()


def _train_cell(job: tuple[list[SelfModelingConfig], str]) -> list[RunResult]:
    """Every seed of one (variant, weight) cell as one stacked model, a thread and a run per seed."""
    singles, parent_id = job
    label = group_label(singles[0].variant, singles[0].self_model_weight)  # the executor's task: see cell_tasks
    stack = SeedStack(len(singles), checkpoint_interval_s=singles[0].checkpoint_interval)
    returned: list[RunResult] = [RunResult("")] * len(singles)
    errors: list[BaseException] = []

    def train(index: int) -> None:
        try:
            returned[index] = _train_child((singles[index], parent_id), (stack, index), unit=label)
        except BaseException as error:  # reported once every seed has stopped
            errors.append(error)
        finally:
            stack.leave(index)  # finished or failed, the other seeds stop waiting for this one

    # Not daemons: each seed's thread must reach its run's end (KILLED, FAILED) before the process exits.
    threads = [threading.Thread(target=train, args=(index,)) for index in range(len(singles))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:  # Ctrl-C or SIGTERM in this (main) thread: every seed ends its run KILLED, then we go
        stack.abort(interrupted=True)
        for thread in threads:
            thread.join()
        raise
    if errors:
        raise errors[0]
    return returned


def cell_tasks(singles: list[SelfModelingConfig], parent_id: str) -> list[tuple[str, tuple[list[SelfModelingConfig], str]]]:
    """One task per (variant, weight) with all its seeds, for --stack-seeds."""
    cells: dict[str, list[SelfModelingConfig]] = {}
    for single in singles:
        cells.setdefault(group_label(single.variant, single.self_model_weight), []).append(single)
    return [(label, (members, parent_id)) for label, members in cells.items()]


def left_out(parent_id: str) -> str:
    """One line naming the study's runs that are not FINISHED (left out of every table), or ""."""
    missing = sorted(f"{child.data.tags.get(tracking.TAG_TASK, child.info.run_id)} ({child.info.status})"
                     for child in tracking.children(parent_id) if child.info.status != "FINISHED")
    return f"left out of the tables: {len(missing)} run(s) not FINISHED: {', '.join(missing)}" if missing else ""


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


def study_statistics(summaries: pd.DataFrame, reference: str = BASELINE) -> pd.DataFrame:
    """Paired statistics of every cell against ``reference`` (the baseline; or a control) on the same
    seed, primary metrics first: Holm over all primary contrasts together, over each secondary
    metric's own; the difference as a percentage of the reference mean; how many runs of each side
    had settled."""
    primary = paired_statistics(summaries[summaries["key"].isin(list(PRIMARY_METRICS))], reference, unit="seed",
                                margins=MARGINS, holm_family="all")
    secondary = paired_statistics(summaries[summaries["key"].isin(list(SECONDARY_METRICS))], reference, unit="seed",
                                  margins=MARGINS)
    statistics = pd.concat([primary.assign(primary=True), secondary.assign(primary=False)], ignore_index=True)
    statistics["simpler_direction"] = statistics["key"].map({**PRIMARY_METRICS, **SECONDARY_METRICS})
    for column in ("mean_difference", "t_ci_low", "t_ci_high", "margin"):
        statistics[f"{column}_pct"] = 100 * statistics[column] / statistics["mean_reference"].abs()
    settled = summaries[summaries["key"] == SETTLED].pivot_table(index="seed", columns="group", values="value",
                                                                 aggfunc="first")
    for side in ("group", "reference"):
        statistics[f"settled_{side}"] = [settled_on_shared_seeds(settled, row.group, row.reference, getattr(row, side))
                                         for row in statistics.itertuples()]
    order = {key: i for i, key in enumerate([*PRIMARY_METRICS, *SECONDARY_METRICS])}
    return statistics.sort_values(["key", "group"], key=lambda c: c.map(order) if c.name == "key" else c, ignore_index=True)


def settled_on_shared_seeds(settled: pd.DataFrame, group: str, reference: str, side: str) -> str:
    """"k/n" of ``side``'s runs that settled, over the seeds both arms of the contrast ran: a reference
    with more seeds than the arm (a baseline shared by several studies) is counted on the pairs only."""
    if group not in settled or reference not in settled:
        return "n/a"
    shared = settled[[group, reference]].dropna()[side]
    return f"{int(shared.sum())}/{len(shared)}"


def verdict(row: pd.Series) -> str:
    """One metric's answer: an effect (its t interval excludes 0 and its Holm permutation p < 0.05),
    equivalence (TOST p < 0.05: no effect as large as the margin), or neither (inconclusive)."""
    if row.permutation_p_holm < 0.05 and not (row.t_ci_low <= 0 <= row.t_ci_high):
        direction = "higher" if row.mean_difference > 0 else "lower"
        return f"{direction}, within the margin" if row.tost_p < 0.05 else direction
    if row.tost_p < 0.05:
        return "equivalent"
    return "inconclusive"


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


def shown(row: object) -> tuple[str, str]:
    """(difference [t 95 % CI], TOST margin) as a row is read: accuracy in points, the rest in % of the baseline mean."""
    if MARGINS.get(row.key, ("relative",))[0] == "absolute":
        scale, unit = 100, " pt"
        values = (row.mean_difference, row.t_ci_low, row.t_ci_high, row.margin)
    else:
        scale, unit = 1, "%"
        values = (row.mean_difference_pct, row.t_ci_low_pct, row.t_ci_high_pct, row.margin_pct)
    diff, low, high, margin = (scale * v for v in values)
    return f"{diff:+.1f}{unit} [{low:+.1f}, {high:+.1f}]", f"±{margin:.1f}{unit}"


METRIC_WORDS = {"llc/final_mean": "the calibrated LLC", "llc/final_mean_paper": "the paper's LLC",
                "weights/std_final": "the classifier's weight std", "test/acc_at_best": "test accuracy"}


def plain_verdict(statistics: pd.DataFrame) -> str:
    """One sentence per cell: each primary metric's change with its t interval and its verdict."""
    sentences = []
    for group, rows in statistics[statistics["primary"]].groupby("group", sort=False):
        parts = [f"{METRIC_WORDS.get(row.key, row.key)} {shown(row)[0]} ({verdict(pd.Series(row._asdict()))}; "
                 f"TOST {shown(row)[1]} p {row.tost_p:.2g})" for row in rows.itertuples()]
        n = int(rows["n_pairs"].min())
        sentences.append(f"Against the baseline on {n} paired seeds, {group} changed " + "; ".join(parts) +
                         " (t 95% CIs, in % of the baseline mean or accuracy points; an effect needs Holm permutation p < 0.05 and a CI clear of 0).")
    return "\n".join(sentences)


def verdict_table(statistics: pd.DataFrame) -> str:
    """The primary contrasts as a terminal table: difference (% of the baseline mean; accuracy in points)
    [t 95 % CI], Holm permutation p, TOST p,
    settled runs per side, and the verdict."""
    lines = [f"{'metric':22s} {'cell':22s} {'n':>3s} {'diff vs baseline [t 95% CI]':>32s} {'perm p Holm':>11s} "
             f"{'TOST p (margin)':>20s} {'settled':>11s}  verdict"]
    for row in statistics[statistics["primary"]].itertuples():
        interval, margin = shown(row)
        tost = f"{row.tost_p:.3g} ({margin})"
        settled = f"{row.settled_group} v {row.settled_reference}"
        lines.append(f"{row.key:22s} {row.group:22s} {row.n_pairs:3d} {interval:>32s} {row.permutation_p_holm:11.3g} "
                     f"{tost:>20s} {settled:>11s}  {verdict(pd.Series(row._asdict()))}")
    return "\n".join(lines)


LINKED_ARTIFACTS = ("summary.md", "tables/paired_statistics.csv", "figures")  # printed as links when the study ends


def summary_markdown(config: SelfModelingComparisonConfig, statistics: pd.DataFrame, table: str) -> str:
    """The study's answer for its run page: the verdict table, how to read it, the settings and the command."""
    primary = statistics[statistics["primary"]]
    estimators = "calibrated (`llc/final_mean`: the --llc-* settings, nβ = n/ln n) and paper (`llc/final_mean_paper`: nβ = 512/ln 512, ε 1e-4, γ 100, 4 x 1,000 draws, second half averaged)"
    return "\n".join([
        f"# Self-modeling study `{config.study_name or 'self-modeling-comparison'}`", "",
        f"{len(config.seeds)} paired seeds; each cell against the baseline on the same seed. Difference as % of the baseline mean "
        "with a t 95 % interval; p: exact sign-flip permutation, Holm over all "
        f"{len(primary)} primary contrasts; TOST against ±10 % of the baseline mean (LLC, weight std) or ±0.5 point (accuracy). "
        "`settled`: runs whose training loss had held still (or memorised) over the last "
        f"{config.settle_window} epochs, cell v baseline. LLC estimators: {estimators}.", "",
        "```", table, "```", "", plain_verdict(statistics), "",
        f"model `{config.model}`, task `{config.task}`, regime `{config.regime}`, variants `{','.join(config.variants)}`, "
        f"weights `{','.join(map(repr, config.self_model_weights))}`, seeds `{','.join(map(str, config.seeds))}`", "",
        f"command: `innerlens self-modeling-comparison {changed_options(config)}`", ""])


def changed_options(config: SelfModelingComparisonConfig) -> str:
    """The command line that gives ``config``: every option whose value is not its default."""
    defaults = {spec.name: spec.render(spec.default) for spec in config.specs(include_hidden=False)}
    return " ".join(f"--{name.replace('_', '-')} {value}" for name, value in config.cli_values().items()
                    if value != defaults.get(name))


def run_comparison(config: SelfModelingComparisonConfig, progress: bool = True) -> str:
    """Train (unless skipped) and analyse the study; return the parent run id."""
    config = continued(config, FAMILY)
    singles = config.single_runs()
    if singles[0].llc_skipped and config.measure_llc is None:
        click.echo(f"innerlens: {singles[0].llc_skipped}", err=True)
    output_dir = check_output_dir(config.output_dir, config.force_overwrite) if config.output_dir else None
    with tracking.start_run(config, variant="comparison", run_name=config.study_name or "self-modeling-comparison") as tracker:
        tasks, train = ((cell_tasks(singles, tracker.run_id), _train_cell) if config.stack_seeds else
                        ([(task_name(s), (s, tracker.run_id)) for s in singles], _train_child))
        unit = f"cells of {len(config.seeds)} stacked seeds" if config.stack_seeds else "runs"
        parent_id, returned = train_or_reuse(config, tracker, FAMILY, tasks, train, skip_training=config.skip_training,
                                             workers=config.workers, progress=progress, unit=unit)
        summaries = run_summaries(parent_id)
        omitted = left_out(parent_id)
        statistics = study_statistics(summaries)
        gammas = gamma_table(summaries)
        history = children_history(parent_id, known=returned)
        drawn = figures(history, group="variant")
        drawn["dose_response"] = dose_response(summaries, list(PRIMARY_METRICS), baseline=BASELINE)
        table = verdict_table(statistics)
        tracker.log_text(statistics.to_csv(index=False), "tables/paired_statistics.csv")
        tracker.log_text(summaries.to_csv(index=False), "tables/run_summaries.csv")
        tracker.log_text(gammas.to_csv(index=False), "tables/gamma_sensitivity.csv")
        tracker.log_text(summary_markdown(config, statistics, table) + (f"\n{omitted}\n" if omitted else ""), "summary.md")
        for name, figure in drawn.items():
            if config.show_plots:
                with tempfile.TemporaryDirectory(prefix="innerlens-comparison-") as folder:
                    path = Path(folder) / f"{name}.png"
                    figure.savefig(path, dpi=120, bbox_inches="tight")
                    click.launch(str(path), wait=True)
            tracker.log_figure(figure, name)
        tracker.log_history(history)
        if output_dir is not None:  # the parent's figures and tables, then each run's under its task name
            tracker.flush()
            target = write_local_copy(tracker.run_id, output_dir, config.force_overwrite)
            for child in tracking.children(parent_id):
                name = tracking.figure_name(child.data.tags.get(tracking.TAG_TASK, child.info.run_id))
                tracking.download_run_artifacts(child.info.run_id, target / "runs" / name)
        click.echo(table)
        if omitted:
            click.echo(omitted)
        click.echo(plain_verdict(statistics))
        if not gammas.empty:
            click.echo("final LLC rank of each cell at each γ (first seed):\n" + gammas.to_string(index=False))
        return tracker.run_id
