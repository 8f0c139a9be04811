"""self_modeling_comparison's options: the self-modeling study's grid (see innerlens.drivers.self_modeling_comparison)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from innerlens.config import distinct_seeds, non_negative, option
from innerlens.configs.executor import ExecutorOptions
from innerlens.configs.self_modeling import PAPER_WIRING, VARIANTS, SelfModelingConfig

FAMILY = "self_modeling_comparison"
BASELINE = "baseline"


@dataclass(frozen=True)
class SelfModelingComparisonConfig(ExecutorOptions, SelfModelingConfig):
    family_name = FAMILY
    hidden_fields = ("variant", "seed", "resume", "self_model_weight")
    unchecked_bases = (SelfModelingConfig,)
    option_aliases = {"seeds": ("--seed",), "output_dir": ("--base-dir",)}  # the seed script trained one seed per call

    variants: tuple[str, ...] = option(tuple(v for v in VARIANTS if v != PAPER_WIRING),
                                       "Variants to train, comma-separated (baseline runs once per seed; paper_wiring, the "
                                       "transformer's only, is asked for by name).", choices=VARIANTS)
    seeds: tuple[int, ...] = option((0, 1, 2, 3, 4), "Seeds; every cell is trained once per seed and paired with the baseline on it.", check=distinct_seeds)
    self_model_weights: tuple[float, ...] = option((0.01,), "Self-model loss weights (dose-response), e.g. 0.003,0.01,0.03 for the transformer, 1,2,5,10,20 for --model mlp --regime paper.")
    study_name: Optional[str] = option(None, "Name of the study's parent run. Re-running under the same name continues that study: finished runs are kept, unfinished ones resume from their last checkpoint (the options must match).")
    dose_variant: Optional[str] = option(None, "Only this variant gets every weight; the others get the first weight (empty: all get all).", choices=VARIANTS)
    workers: Optional[int] = option(None, "Worker processes (empty: one per core; 0: in this process).", check=non_negative)
    skip_training: bool = option(False, "Redraw the figures and statistics from the latest existing comparison instead of training.")
    show_plots: bool = option(False, "Open the figures once drawn.")
    stack_seeds: bool = option(False, "Train each cell's seeds as one stacked model (torch.func), one thread per seed in one worker, each seed still its own run; pays on a GPU, not on a CPU (bench/vectorised_seeds.py). Needs --patience 0 and no --target-accuracy.")
    gamma_sensitivity: bool = option(True, "Estimate the final LLC at γ/10, γ and 10γ on the first seed's runs (tables/gamma_sensitivity.csv).")

    def check(self) -> str | None:
        if not self.variants:
            return "--variants: give at least one variant"
        if self.stack_seeds and (self.patience or self.target_accuracy is not None):
            return "--stack-seeds: stacked seeds train in lockstep; use --patience 0 and no --target-accuracy"
        if self.stack_seeds and (self.model != "transformer" or self.optimizer != "adamw" or self.lr_decay
                                 or self.self_model_grad_share is not None or self.end_after_generalisation):
            return "--stack-seeds: stacks the transformer with constant-lr AdamW and a fixed weight only; for the MLP, --relabel-inputs is the rounding control"
        if not self.self_model_weights or any(w <= 0 for w in self.self_model_weights):
            return "--self-model-weights: give weights > 0, e.g. 0.1,1 (the baseline is the weight-0 control)"
        self.single_runs()  # each single run checks itself in full as it is built
        return None

    def single_runs(self) -> list[SelfModelingConfig]:
        """Baseline once per seed, then every (variant, weight) per seed."""
        own = {f.name for f in dataclasses.fields(SelfModelingComparisonConfig)} - {
            f.name for f in dataclasses.fields(SelfModelingConfig)
        }
        shared = {k: v for k, v in self.to_dict().items() if k not in own and k not in ("output_dir", "force_overwrite")}
        cells = []
        for variant in self.variants:
            if variant == BASELINE:
                cells.append((variant, 0.0))
                continue
            weights = self.self_model_weights if self.dose_variant in (None, variant) else self.self_model_weights[:1]
            cells += [(variant, weight) for weight in weights]
        return [
            SelfModelingConfig(**{**shared, "variant": variant, "seed": seed, "self_model_weight": weight,
                                  "llc_gamma_sensitivity": self.gamma_sensitivity and seed == self.seeds[0]})
            for seed in self.seeds
            for variant, weight in cells
        ]
