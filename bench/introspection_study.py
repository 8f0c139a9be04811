"""introspection on 5 seeds: can the model report its own neuron, and does changing the model help?

Conditions (each x seeds 0-4, on the trained tiny model, a middle layer's scanner-chosen neuron,
the head reading the layer below it): frozen model (``--unfreeze none``), and the whole model
training with fixed targets, live detached targets and live targets with gradient
(``--unfreeze all --targets fixed|live|live_gradient``). Every run is in the experiment
``introspection-study`` of the embedded store; two single-threaded workers at a time.

Paired on the seed (same texts, split and neuron choice) against the frozen condition and against
unfreezing with fixed targets (the control for the live conditions): the
headline ``test/delta_vs_probe`` (test R² at the validation-chosen checkpoint minus a frozen ridge
probe's on the same features), the target's drift (KS), the language model's validation loss
change (the damage cost) and whether the target's variance collapsed.

Run: ``python bench/introspection_study.py`` (``--summarize-only`` redoes the tables); results in
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
KEYS = ("test/delta_vs_probe", "test/r2_at_best", "baseline/probe/test_r2", "drift/ks", "lm/val_loss_change_at_best",
        "test/variance_collapsed_at_best")
RESULTS = Path(__file__).parent / "results"


def train_one(job: tuple[str, int]) -> str:
    from innerlens import session
    from innerlens.configs.introspection import IntrospectionConfig

    condition, seed = job
    unfreeze, targets = CONDITIONS[condition]
    return session.run("introspection", IntrospectionConfig(seed=seed, layer=LAYER, unfreeze=unfreeze, targets=targets), progress=False).run_id


def condition_of(run) -> tuple[str, int]:
    params = run.data.params
    return ("frozen" if params["unfreeze"] == "none" else f"all/{params['targets']}", int(params["seed"]))


def collect() -> pd.DataFrame:
    """(group, seed, key, value) of every finished run's end-of-run metrics (the newest per cell)."""
    latest = newest_finished_runs(EXPERIMENT, condition_of)
    rows = [{"group": condition, "seed": seed, "key": key, "value": run.data.metrics[key]}
            for (condition, seed), run in latest.items() for key in KEYS if key in run.data.metrics]
    return pd.DataFrame(rows)


def main() -> None:
    jobs = [(f"{condition} seed {seed}", (condition, seed)) for seed in SEEDS for condition in CONDITIONS]
    train_unless_summarizing(__doc__.splitlines()[0], EXPERIMENT, train_one, jobs)
    from innerlens.analysis.stats import paired_statistics

    table = collect()
    levels = table.groupby(["group", "key"])["value"].agg(["mean", "std", "min", "max", "count"]).reset_index()
    # against the frozen model, and against unfreezing alone (fixed targets: the control for "the
    # model changed to make its neuron predictable" is "the model changed to fit the head")
    paired = pd.concat([paired_statistics(table, "frozen"), paired_statistics(table[table["group"] != "frozen"], "all/fixed")],
                       ignore_index=True)
    RESULTS.mkdir(exist_ok=True)
    levels.to_csv(RESULTS / "introspection_study_levels.csv", index=False)
    paired.to_csv(RESULTS / "introspection_study_paired.csv", index=False)
    with pd.option_context("display.width", 220, "display.max_rows", 200):
        print(levels.to_string(index=False))
        print(paired[["key", "group", "reference", "n_pairs", "mean_difference", "ci_low", "ci_high", "wilcoxon_p_holm", "paired_t_p_holm"]].to_string(index=False))


if __name__ == "__main__":
    main()
