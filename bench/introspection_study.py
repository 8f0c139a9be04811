"""introspection on 5 seeds: can the model report its own neuron, and does changing the model help?

Conditions (each x seeds 0-4, on the trained tiny model, a middle layer's scanner-chosen neuron,
the head reading the layer below it): frozen model (``--unfreeze none``), and the whole model
training with fixed targets, live detached targets and live targets with gradient
(``--unfreeze all --targets fixed|live|live_gradient``). Every run is in the experiment
``introspection-study`` of the embedded store; two single-threaded workers at a time.

Paired on the seed (same texts, split and neuron choice) against the frozen condition and against
unfreezing with fixed targets (the control for the live conditions): the headline
``test/delta_vs_refit_probe`` (test R² at the validation-chosen checkpoint minus a ridge probe
refitted there on the network's features and the targets the head is scored on, so both score the
same target), beside ``test/delta_vs_probe`` (minus the original network's probe on the original
targets: two different targets once they move), the share of the target that reaches it through its
own block's attention before and after training (what the head, reading the layer below, can only
predict), the frozen probe on the untrained model's features (``--cross-model tiny-random``: what
token identity alone gives), the target's drift (KS), the language model's validation loss change
(the damage cost, with TOST against ±0.02 nats: "no cost larger than that") and whether the
target's variance collapsed.

Run: ``python bench/introspection_study.py`` (a rerun trains only the cells without a finished run
that measured everything; ``--summarize-only`` redoes the tables); results in
``bench/results/introspection_study_*.csv``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from seed_study import newest_finished_runs, train_unless_summarizing

EXPERIMENT = "introspection-study"
SEEDS = (0, 1, 2, 3, 4)
LAYER = 2  # the middle of tiny's four blocks; the head reads block 1
CONDITIONS = {"frozen": ("none", "fixed"), "all/fixed": ("all", "fixed"), "all/live": ("all", "live"),
              "all/live_gradient": ("all", "live_gradient")}
KEYS = ("test/delta_vs_refit_probe", "test/delta_vs_probe", "test/r2_at_best", "baseline/refit_probe/test_r2",
        "baseline/probe/test_r2", "baseline/cross_probe/test_r2", "target/attention_share", "target/attention_share_at_best",
        "drift/ks", "lm/val_loss_change_at_best", "test/variance_collapsed_at_best")
CROSS_MODEL = "tiny-random"  # the same architecture untrained: what the texts' tokens alone predict of the neuron
LM_COST_MARGIN = 0.02  # nats per token: the smallest language-modelling cost of interest (TOST)
MEASURED_ALL = "target/attention_share_at_best"  # a finished run without it predates the current measurements
RESULTS = Path(__file__).parent / "results"


def train_one(job: tuple[str, int]) -> str:
    from innerlens import session
    from innerlens.configs.introspection import IntrospectionConfig

    condition, seed = job
    unfreeze, targets = CONDITIONS[condition]
    config = IntrospectionConfig(seed=seed, layer=LAYER, unfreeze=unfreeze, targets=targets, cross_model=CROSS_MODEL)
    return session.run("introspection", config, progress=False).run_id


def condition_of(run) -> tuple[str, int]:
    params = run.data.params
    return ("frozen" if params["unfreeze"] == "none" else f"all/{params['targets']}", int(params["seed"]))


def collect() -> pd.DataFrame:
    """(group, seed, key, value) of every finished run's end-of-run metrics (the newest per cell)."""
    latest = newest_finished_runs(EXPERIMENT, condition_of)
    rows = [{"group": condition, "seed": seed, "key": key, "value": run.data.metrics[key]}
            for (condition, seed), run in latest.items() for key in KEYS if key in run.data.metrics]
    rows += [{"group": condition, "seed": seed, "key": "target/attention_share_change",
              "value": run.data.metrics[MEASURED_ALL] - run.data.metrics["target/attention_share"]}
             for (condition, seed), run in latest.items() if MEASURED_ALL in run.data.metrics]
    return pd.DataFrame(rows)


def measured_cells() -> set[tuple[str, int]]:
    """The cells that already have a finished run with every current measurement (a rerun skips them)."""
    from mlflow.tracking import MlflowClient

    from innerlens import tracking

    tracking.configure_tracking()
    if MlflowClient().get_experiment_by_name(EXPERIMENT) is None:
        return set()
    return {cell for cell, run in newest_finished_runs(EXPERIMENT, condition_of).items() if MEASURED_ALL in run.data.metrics}


def main() -> None:
    done = measured_cells()
    jobs = [(f"{condition} seed {seed}", (condition, seed)) for seed in SEEDS for condition in CONDITIONS
            if (condition, seed) not in done]
    train_unless_summarizing(__doc__.splitlines()[0], EXPERIMENT, train_one, jobs)
    from innerlens.analysis.stats import paired_statistics

    table = collect()
    levels = table.groupby(["group", "key"])["value"].agg(["mean", "std", "min", "max", "count"]).reset_index()
    # against the frozen model, and against unfreezing alone (fixed targets: the control for "the
    # model changed to make its neuron predictable" is "the model changed to fit the head")
    margins = {"lm/val_loss_change_at_best": ("absolute", LM_COST_MARGIN)}
    paired = pd.concat([paired_statistics(table, "frozen", margins=margins),
                        paired_statistics(table[table["group"] != "frozen"], "all/fixed", margins=margins)], ignore_index=True)
    RESULTS.mkdir(exist_ok=True)
    levels.to_csv(RESULTS / "introspection_study_levels.csv", index=False)
    paired.to_csv(RESULTS / "introspection_study_paired.csv", index=False)
    with pd.option_context("display.width", 220, "display.max_rows", 200):
        print(levels.to_string(index=False))
        print(paired[["key", "group", "reference", "n_pairs", "mean_difference", "t_ci_low", "t_ci_high", "permutation_p", "paired_t_p_holm", "tost_p"]].to_string(index=False))


if __name__ == "__main__":
    main()
