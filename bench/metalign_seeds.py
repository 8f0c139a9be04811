"""metalign on 5 seeds: is a trained layer more aligned with the reference than its controls?

Trains ``innerlens metalign`` (the default synthetic setup) once per seed into the experiment
``metalign-seeds`` of the embedded store, two single-threaded workers at a time, then reads every
run's ``tables/cka.csv`` and behaviour scores back and pairs them on the seed: each trained layer
against the raw backbone, the ridge map of the training dimensions (fitted on training objects)
and the same layer at initialisation, on test objects; the meta-learner's NLL of the synthetic
participants against the logistic learner's (both at fitted temperatures). Holm corrects over
each comparison's layers.

Run: ``python bench/metalign_seeds.py`` (about 30 min on 2 cores); ``--summarize-only`` redoes the
tables from the runs already there. Results: ``bench/results/metalign_seeds_*.csv`` and ``.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from seed_study import newest_finished_runs, train_unless_summarizing

EXPERIMENT = "metalign-seeds"
SEEDS = (0, 1, 2, 3, 4)
CONTROLS = ("backbone", "ridge", "init")
RESULTS = Path(__file__).parent / "results"


def train_one(seed: int) -> str:
    from innerlens import session
    from innerlens.configs.metalign import MetalignConfig

    return session.run("metalign", MetalignConfig(seed=seed), progress=False).run_id


def collect() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(CKA rows of every finished run with its seed, behaviour scores per seed)."""
    from mlflow.tracking import MlflowClient

    from innerlens import tracking

    latest = newest_finished_runs(EXPERIMENT, lambda run: int(run.data.tags[tracking.TAG_SEED]))
    client = MlflowClient()
    cka = pd.concat([pd.read_csv(client.download_artifacts(run.info.run_id, "tables/cka.csv")).assign(seed=seed)
                     for seed, run in latest.items()], ignore_index=True)
    behaviour = pd.DataFrame([{"seed": seed, **{k: v for k, v in run.data.metrics.items() if k.startswith("behaviour/")}}
                              for seed, run in latest.items()])
    return cka, behaviour


def contrasts(cka: pd.DataFrame) -> pd.DataFrame:
    """Every trained layer minus each control, paired on the seed, per subset and method."""
    from innerlens.analysis.stats import holm, paired_statistics

    trained = cka[cka["kind"] == "trained"]
    tables = []
    for control in CONTROLS:
        for layer in trained["layer"].unique():
            reference = f"{layer}@init" if control == "init" else control
            rows = cka[cka["layer"].isin([layer, reference])].assign(
                group=lambda f: f["layer"].where(f["layer"] == layer, "control"),
                key=lambda f: f["subset"] + "/" + f["method"])
            statistics = paired_statistics(rows[["group", "seed", "key", "value"]], "control")
            tables.append(statistics.assign(layer=layer, control=control))
    result = pd.concat(tables, ignore_index=True)
    for column in ("wilcoxon_p", "paired_t_p"):  # Holm over the layers of each (control, key)
        for _, index in result.groupby(["control", "key"]).groups.items():
            result.loc[index, f"{column}_holm"] = holm(result.loc[index, column].to_numpy())
    return result[["control", "key", "layer", "n_pairs", "mean_difference", "ci_low", "ci_high",
                   "wilcoxon_p_holm", "paired_t_p_holm"]]


def main() -> None:
    train_unless_summarizing(__doc__.splitlines()[0], EXPERIMENT, train_one, [(f"seed {seed}", seed) for seed in SEEDS])
    cka, behaviour = collect()
    levels = cka.groupby(["layer", "kind", "subset", "method"], sort=False)["value"].agg(["mean", "std", "min", "max", "count"]).reset_index()
    paired = contrasts(cka)
    from innerlens.analysis.stats import paired_contrast

    nll = paired_contrast(behaviour["behaviour/nll/meta_learner"].to_numpy(), behaviour["behaviour/nll/cognitive"].to_numpy())
    RESULTS.mkdir(exist_ok=True)
    levels.to_csv(RESULTS / "metalign_seeds_cka_levels.csv", index=False)
    paired.to_csv(RESULTS / "metalign_seeds_cka_contrasts.csv", index=False)
    behaviour.to_csv(RESULTS / "metalign_seeds_behaviour.csv", index=False)
    summary = {"seeds": sorted(cka["seed"].unique().tolist()), "command": "python bench/metalign_seeds.py",
               "nll_meta_minus_logistic": nll, "nll_means": behaviour.mean(numeric_only=True).to_dict()}
    (RESULTS / "metalign_seeds.json").write_text(json.dumps(summary, indent=2, default=float))
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(levels[levels["method"] == "linear"].to_string(index=False))
        print(paired[paired["key"].str.endswith("linear")].to_string(index=False))
        print(json.dumps(summary, indent=2, default=float))


if __name__ == "__main__":
    main()
