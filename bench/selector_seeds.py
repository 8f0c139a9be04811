"""The selector on 5 seeds: test AUC and calibration with intervals, beside the bag-of-words baseline.

Trains ``innerlens selector`` at its defaults (1000 generated texts, the trained tiny generator)
once per seed into the experiment ``selector-seeds`` of the embedded store, two single-threaded
workers at a time, then summarises each metric over seeds (mean, sd, t-interval of the mean) and
pairs ECE before and after Platt scaling, and the selector's AUC against the bag-of-words
baseline's, on the seed. Each run's ECE comes with its own bootstrap interval and the floor a
perfectly calibrated model scores at that n (``test/ece_floor``).

Run: ``python bench/selector_seeds.py`` (``--summarize-only`` redoes the tables); results in
``bench/results/selector_seeds_*.csv``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from seed_study import newest_finished_runs, train_unless_summarizing

EXPERIMENT = "selector-seeds"
SEEDS = (0, 1, 2, 3, 4)
KEYS = ("test/auc_best", "baseline/bow/test_auc", "baseline/bigram/test_auc", "test/ece", "test/ece_floor", "test/ece_ci_low", "test/ece_ci_high",
        "test/ece_calibrated", "test/ece_calibrated_floor")
RESULTS = Path(__file__).parent / "results"


def train_one(seed: int) -> str:
    from innerlens import session
    from innerlens.configs.selector import SelectorConfig

    return session.run("selector", SelectorConfig(seed=seed, register=False, num_examples=0), progress=False).run_id


def collect() -> pd.DataFrame:
    latest = newest_finished_runs(EXPERIMENT, lambda run: int(run.data.params["seed"]))
    return pd.DataFrame([{"seed": seed, **{k: run.data.metrics.get(k) for k in KEYS}} for seed, run in latest.items()])


def main() -> None:
    train_unless_summarizing(__doc__.splitlines()[0], EXPERIMENT, train_one, [(f"seed {seed}", seed) for seed in SEEDS])

    from innerlens.analysis.stats import bounded_interval, paired_contrast

    table = collect()
    summary = []
    for key in KEYS:
        values = table[key].dropna().to_numpy()
        low, high = bounded_interval(values) if len(values) > 1 else (float("nan"), float("nan"))  # AUC, ECE: inside [0, 1]
        summary.append({"key": key, "n": len(values), "mean": values.mean(), "sd": values.std(ddof=1), "ci_low": low,
                        "ci_high": high, "interval": "t on the logit scale", "min": values.min(), "max": values.max()})
    contrasts = pd.DataFrame([
        {"contrast": "auc selector - bag of words", **paired_contrast(table["test/auc_best"].to_numpy(), table["baseline/bow/test_auc"].to_numpy())},
        {"contrast": "auc selector - bigrams", **paired_contrast(table["test/auc_best"].to_numpy(), table["baseline/bigram/test_auc"].to_numpy())},
        {"contrast": "ece calibrated - raw", **paired_contrast(table["test/ece_calibrated"].to_numpy(), table["test/ece"].to_numpy())},
        {"contrast": "ece raw - its floor", **paired_contrast(table["test/ece"].to_numpy(), table["test/ece_floor"].to_numpy())},
        {"contrast": "ece calibrated - its floor", **paired_contrast(table["test/ece_calibrated"].to_numpy(), table["test/ece_calibrated_floor"].to_numpy())},
    ])
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "selector_seeds_runs.csv", index=False)
    pd.DataFrame(summary).to_csv(RESULTS / "selector_seeds_summary.csv", index=False)
    contrasts.to_csv(RESULTS / "selector_seeds_contrasts.csv", index=False)
    with pd.option_context("display.width", 220):
        print(table.to_string(index=False))
        print(pd.DataFrame(summary).to_string(index=False))
        print(contrasts[["contrast", "n_pairs", "mean_difference", "ci_low", "ci_high", "wilcoxon_p", "paired_t_p"]].to_string(index=False))


if __name__ == "__main__":
    main()
