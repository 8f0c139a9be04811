"""The self-modeling comparison: every variant (x every seed) nested under one parent run,
then figures per variant drawn from what the tracking server holds."""
from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click

from innerlens import tracking
from innerlens.compare import children_history, latest_parent_with_children
from innerlens.config import distinct_seeds, option
from innerlens.families.self_modeling import VARIANTS, SelfModelingConfig, figures, run

FAMILY = "self_modeling_comparison"


@dataclass(frozen=True)
class SelfModelingComparisonConfig(SelfModelingConfig):
    family_name = FAMILY
    hidden_fields = ("variant", "seed", "resume")

    variants: tuple[str, ...] = option(VARIANTS, "Variants to train, comma-separated.", choices=VARIANTS)
    seeds: tuple[int, ...] = option((0,), "Seeds; each variant is trained once per seed (e.g. 0,1,2).", check=distinct_seeds)
    skip_training: bool = option(False, "Draw the figures from the latest existing comparison instead of training.")
    show_plots: bool = option(False, "Open the figures once drawn.")

    def check(self) -> str | None:
        if not self.variants:
            return "--variants: give at least one variant"
        for config in self.single_runs():
            message = config.check()
            if message:
                return message
        return None

    def single_runs(self) -> list[SelfModelingConfig]:
        own = {f.name for f in dataclasses.fields(SelfModelingComparisonConfig)} - {
            f.name for f in dataclasses.fields(SelfModelingConfig)
        }
        shared = {k: v for k, v in self.to_dict().items() if k not in own}
        return [
            SelfModelingConfig(**{**shared, "variant": variant, "seed": seed})
            for seed in self.seeds
            for variant in self.variants
        ]


def compare(config: SelfModelingComparisonConfig, progress: bool = True) -> str:
    """Train (unless skipped) and draw the comparison; return the parent run id."""
    singles = config.single_runs()
    with tracking.start_run(config, variant="comparison", run_name="self-modeling-comparison") as tracker:
        parent_id = tracker.run_id
        if config.skip_training:
            parent_id = latest_parent_with_children(FAMILY, exclude=tracker.run_id)
            tracker.set_tags({"innerlens.drawn_from": parent_id})
        else:
            for single in singles:
                click.echo(f"training {single.variant} (seed {single.seed})", err=True)
                run(single, nested=True, progress=progress)
        history = children_history(parent_id)
        drawn = figures(history, group="variant")
        out_dir = Path(tempfile.mkdtemp(prefix="innerlens-comparison-"))
        for name, figure in drawn.items():
            tracker.log_figure(figure, name)
            if config.show_plots:
                path = out_dir / f"{name}.png"
                figure.savefig(path, dpi=120, bbox_inches="tight")
                click.launch(str(path))
        tracker.log_history(history)
        return tracker.run_id
