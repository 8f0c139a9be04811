"""Validate the LLC sampler on real checkpoints before a contrast relies on it.

For each checkpoint (baseline and self-modeled runs of a finished study) and each estimator
(``paper``, ``calibrated``), the estimate is repeated at ε/3, ε, 3ε (γ fixed) and γ/3, γ, 3γ (ε
fixed) with 8 chains, recording the LLC, the split R-hat and effective sample size of the loss
traces, and devinterp's MALA acceptance. The SGLD minibatches are reshuffled on every pass over
the data (tests/unit/test_llc.py). An estimator counts as stable on a checkpoint when the LLC
changes by under 10 % across the 3x changes of ε and of γ and every R-hat is below 1.05.

  python bench/llc_validation.py --study paper_fmnist_h128 --cells "baseline,last_layer w=10.0" --seeds 0,1,2

A candidate centre is tried by overriding an estimator's settings and naming the result, e.g.
``--estimators calibrated --set nbeta=1000,epsilon=1e-5 --label mid``: its rows carry the label.

``--knobs centre`` measures only the centre: once a centre has been validated on a few checkpoints,
the contrast between arms at it is cheap to extend to more (``centre_contrasts`` in the summary: each
cell's centre LLC against the baseline's on the same seed).

Writes bench/results/llc_validation_<study>.csv (one row per estimate) and a summary .json after every
estimate; run again, it continues: estimates already in the CSV are not repeated. Processes that
measure different seeds of one study may run side by side (one per core): each re-reads the CSV
before it adds its rows.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

RESULTS = Path(__file__).parent / "results"
KNOBS = ("centre", "epsilon/3", "epsilon*3", "gamma/3", "gamma*3")
STABLE_CHANGE, STABLE_RHAT = 0.10, 1.05


def checkpoints(studies: list[str], cells: list[str], seeds: list[int]) -> list[tuple[str, int, str]]:
    """(cell, seed, run id) of the studies' finished runs asked for."""
    from innerlens import tracking
    from innerlens.configs.self_modeling_comparison import FAMILY
    from innerlens.drivers.self_modeling_comparison import group_label

    picked = []
    for study in studies:
        found = tracking.named_study(FAMILY, study)
        assert found is not None, f"no study named {study}"
        for child in tracking.children(found[0]):
            tags = child.data.tags
            weight = float(tags.get("innerlens.self_model_weight", "0"))
            cell = group_label(tags[tracking.TAG_VARIANT], weight)
            seed = int(tags[tracking.TAG_SEED])
            if child.info.status == "FINISHED" and cell in cells and seed in seeds:
                picked.append((cell, seed, child.info.run_id))
    return sorted(picked)


def experiment_at(run_id: str):  # -> SelfModelingExperiment at the run's final weights
    from innerlens import tracking
    from innerlens.families.self_modeling import SelfModelingConfig, SelfModelingExperiment

    stored = tracking.load_config(run_id, "self_modeling")
    config = SelfModelingConfig.from_strings({k: v for k, v in stored.items() if k != "resume"})
    experiment = SelfModelingExperiment(config, torch.device("cpu"))
    experiment.model.load_state_dict(tracking.load_checkpoint(run_id)["model"])
    return experiment


def overridden(base, assignments: str):  # -> LLCSettings
    """``base`` with ``key=value,...`` applied (numbers only: nbeta, epsilon, gamma, num_draws, num_burnin, ...)."""
    if not assignments:
        return base
    changes = {}
    for item in assignments.split(","):
        key, value = item.split("=")
        changes[key.strip()] = type(getattr(base, key.strip()) or 0.0)(float(value))
    return replace(base, **changes)


def grid(base, chains: int = 8):  # -> list[tuple[str, LLCSettings]]
    """(which knob moved, settings): the centre, ε/3 and 3ε, γ/3 and 3γ; 8 chains each."""
    base = replace(base, num_chains=chains)
    return [("centre", base),
            ("epsilon/3", replace(base, epsilon=base.epsilon / 3)), ("epsilon*3", replace(base, epsilon=base.epsilon * 3)),
            ("gamma/3", replace(base, gamma=base.gamma / 3)), ("gamma*3", replace(base, gamma=base.gamma * 3))]


def main() -> None:
    from innerlens import tracking
    from innerlens.analysis.llc import estimate_llc
    from innerlens.analysis.mcmc import effective_sample_size, split_rhat

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--also-study", action="append", default=[],
                        help="also take checkpoints from this study (e.g. arms run as a second part, joined by --combine); "
                             "the results stay under --study's name")
    parser.add_argument("--cells", required=True, help="comma-separated cells, e.g. 'baseline,last_layer w=10.0'")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--estimators", default="paper,calibrated")
    parser.add_argument("--set", default="", help="override every estimator's settings: key=value,... (e.g. nbeta=1000,epsilon=1e-5)")
    parser.add_argument("--label", default="", help="name the overridden estimator in the results (default: estimator+overrides)")
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--knobs", default=",".join(KNOBS), help=f"which of {', '.join(KNOBS)} to measure")
    parser.add_argument("--summarise", action="store_true", help="only redraw the summary and table from the CSV")
    args = parser.parse_args()
    tracking.configure_tracking()
    torch.set_num_threads(1)
    path = RESULTS / f"llc_validation_{args.study}.csv"
    rows = pd.read_csv(path).to_dict("records") if path.exists() else []
    if args.summarise:
        summarise(pd.DataFrame(rows), args)
        return
    done = {(r["cell"], r["seed"], r["estimator"], r["knob"]) for r in rows}
    knobs = args.knobs.split(",")
    if not set(knobs) <= set(KNOBS):
        parser.error(f"--knobs: choose from {', '.join(KNOBS)}")
    for cell, seed, run_id in checkpoints([args.study, *args.also_study], args.cells.split(","), [int(s) for s in args.seeds.split(",")]):
        if all((cell, seed, labelled(e, args), k) in done for e in args.estimators.split(",") for k in knobs):
            continue
        experiment = experiment_at(run_id)
        x, y = experiment.data["train"]
        for name in args.estimators.split(","):
            estimator = labelled(name, args)
            base = overridden(experiment.config.llc_estimator(name), args.set)
            for knob, settings in grid(base, args.chains):
                if (cell, seed, estimator, knob) in done or knob not in knobs:
                    continue
                start = time.perf_counter()
                estimate = estimate_llc(experiment.model, x, y, lambda m, a, b: F.cross_entropy(m(a), b), settings,
                                        seed=seed * 1000 + 7, diagnose=True)
                traces = np.array(estimate.loss_traces)[:, int(settings.num_draws * settings.trace_discard):]
                rows.append({"cell": cell, "seed": seed, "run_id": run_id, "estimator": estimator, "knob": knob,
                             "epsilon": settings.epsilon, "gamma": settings.gamma, "nbeta": settings.resolved_nbeta(len(x)),
                             "chains": settings.num_chains, "draws": settings.num_draws,
                             "burnin": settings.num_burnin, "batch": settings.batch_size, "llc": estimate.mean,
                             "llc_chain_sd": estimate.std, "rhat": split_rhat(traces), "ess": effective_sample_size(traces),
                             "mala_acceptance": estimate.mala_acceptance, "seconds": time.perf_counter() - start})
                print({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in rows[-1].items() if k != "run_id"}, flush=True)
                table = merged(path, rows)
                table.to_csv(path, index=False)
                summarise(table, args)


def merged(path: Path, rows: list[dict]) -> pd.DataFrame:
    """The CSV as it is now, plus this process's ``rows``: re-read before every write, so two processes
    measuring different seeds of one study (one per core) keep each other's estimates."""
    table = pd.read_csv(path) if path.exists() else pd.DataFrame()
    table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
    return table.drop_duplicates(["cell", "seed", "estimator", "knob"], keep="last", ignore_index=True)


def centre_contrasts(table: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """Per estimator and non-baseline cell: its centre LLC as % change from the baseline's on each seed
    both were measured on, and the mean of those changes."""
    centre = table[table["knob"] == "centre"]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for estimator, rows in centre.groupby("estimator"):
        llc = rows.pivot_table(index="seed", columns="cell", values="llc")
        if "baseline" not in llc:
            continue
        for cell in (c for c in llc.columns if c != "baseline"):
            change = (100 * (llc[cell] / llc["baseline"] - 1)).dropna()
            if len(change):
                out.setdefault(estimator, {})[cell] = {**{f"seed {s}": v for s, v in change.items()},
                                                       "mean_percent": float(change.mean()), "pairs": len(change)}
    return out


def centre_statistics(table: pd.DataFrame) -> list[dict]:
    """Per estimator, every cell's centre LLC against the baseline's and against the non-self control's
    on the same seeds (each reference's contrasts one Holm family): the paired difference as % of the
    reference mean with a t 95 % interval, the exact sign-flip permutation p, and TOST against the
    study's own LLC margin."""
    from innerlens.analysis.stats import paired_statistics
    from innerlens.drivers.self_modeling_comparison import BASELINE, MARGINS

    out = []
    for estimator, rows in table[table["knob"] == "centre"].groupby("estimator"):
        runs = rows.rename(columns={"cell": "group", "llc": "value"}).assign(key="llc")
        for reference in [g for g in sorted(runs["group"].unique()) if g == BASELINE or g.startswith("input_control")]:
            statistics = paired_statistics(runs[["group", "seed", "key", "value"]], reference,
                                           margins={"llc": MARGINS["llc/final_mean"]}, holm_family="all")
            for row in statistics[statistics["n_pairs"] >= 2].itertuples():
                scale = 100 / abs(row.mean_reference)
                out.append({"estimator": estimator, "cell": row.group, "reference": reference, "n_pairs": row.n_pairs,
                            "change_percent": row.mean_difference * scale, "t_ci_percent": [row.t_ci_low * scale, row.t_ci_high * scale],
                            "permutation_p": row.permutation_p, "permutation_p_holm": row.permutation_p_holm, "tost_p": row.tost_p})
    return out


def labelled(estimator: str, args: argparse.Namespace) -> str:
    """The name an estimator's rows carry: itself, or the label of its overrides."""
    if not args.set:
        return estimator
    return args.label or f"{estimator}[{args.set}]"


def summarise(table: pd.DataFrame, args: argparse.Namespace) -> None:
    """Per (estimator, checkpoint) with its whole grid: the LLC's largest change across 3x of ε and of
    γ, the worst R-hat, the fewest effective draws, MALA acceptance, and whether it is stable."""
    summary = {}
    for (estimator, cell, seed), group in table.groupby(["estimator", "cell", "seed"]):
        centre = group.set_index("knob")["llc"]
        if len(centre) < 5:
            continue  # its grid is not complete yet
        change = {knob: abs(centre[knob] / centre["centre"] - 1) for knob in centre.index if knob != "centre"}
        summary[f"{estimator} | {cell} | seed {seed}"] = {
            "llc_centre": centre["centre"], "llc_by_knob": centre.to_dict(),
            "max_change_epsilon": max(change["epsilon/3"], change["epsilon*3"]),
            "max_change_gamma": max(change["gamma/3"], change["gamma*3"]), "max_rhat": group["rhat"].max(),
            "min_ess": group["ess"].min(), "mala_acceptance_centre": group.set_index("knob").loc["centre", "mala_acceptance"],
            "stable": bool(max(change.values()) < STABLE_CHANGE and group["rhat"].max() < STABLE_RHAT)}
    by_estimator = {e: f"{sum(v['stable'] for k, v in summary.items() if k.startswith(e + ' '))} of "
                       f"{sum(k.startswith(e + ' ') for k in summary)}" for e in table["estimator"].unique()}
    path = RESULTS / f"llc_validation_{args.study}.json"
    commands = json.loads(path.read_text()).get("commands", {}) if path.exists() else {}
    if not args.summarise:
        for name in args.estimators.split(","):
            commands[labelled(name, args)] = "python bench/llc_validation.py " + " ".join(
                f"--{k.replace('_', '-')} '{v}'" for k, values in vars(args).items() if k != "summarise"
                for v in (values if isinstance(values, list) else [values]) if v not in ("", None))
    out = {"commands": commands,
           "criterion": f"LLC change < {STABLE_CHANGE:.0%} across 3x of epsilon and of gamma, every R-hat < {STABLE_RHAT}",
           "stable_checkpoints": by_estimator, "checkpoints": summary, "centre_contrasts": centre_contrasts(table),
           "centre_statistics": centre_statistics(table)}
    path.write_text(json.dumps(out, indent=2, default=float))
    rows = ["| estimator | checkpoint | LLC at ε/3, ε, 3ε (γ fixed) | LLC at γ/3, γ, 3γ (ε fixed) | max change ε / γ | "
            "worst R-hat | fewest ESS | MALA acceptance | stable |", "|---|---|---|---|---|---|---|---|---|"]
    for key, v in summary.items():
        estimator, cell, seed = (part.strip() for part in key.split("|"))
        k = v["llc_by_knob"]
        rows.append(f"| {estimator} | {cell}, {seed} | {k['epsilon/3']:.1f}, **{k['centre']:.1f}**, {k['epsilon*3']:.1f} | "
                    f"{k['gamma/3']:.1f}, **{k['centre']:.1f}**, {k['gamma*3']:.1f} | {100 * v['max_change_epsilon']:.0f} % / "
                    f"{100 * v['max_change_gamma']:.0f} % | {v['max_rhat']:.3f} | {v['min_ess']:.0f} | "
                    f"{v['mala_acceptance_centre']:.2f} | {'yes' if v['stable'] else 'no'} |")
    (RESULTS / f"llc_validation_{args.study}_table.md").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
