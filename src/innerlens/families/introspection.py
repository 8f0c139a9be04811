"""Introspection: a language model learns to report one of its own neuron activations.

The model reads a text; a head on its residual stream at ``--feature-layer`` (last real token
by default) predicts the activation of neuron ``--neuron`` of ``--layer`` at that token, as a
number (regression) or a quantile bin (classification). Unfreezing the model lets it change
the very neuron it reports on; ``--targets live`` recomputes labels from the current model, and
the drift metrics say whether it made that neuron easier to predict.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from innerlens.configs.introspection import IntrospectionConfig
from innerlens.engine import FitResult, Selection, history_frame, snapshot
from innerlens.families.introspection_experiment import IntrospectionExperiment
from innerlens.families.introspection_report import at_best, figures, log_dataset
from innerlens.models.loading import LoadedModel, ModelCache, load_model
from innerlens.plan import Plan, RunLog

if TYPE_CHECKING:
    import torch


@dataclass
class IntrospectionPlan(Plan):
    """An introspection run, the model compared across (``--cross-model``) and the frozen baselines."""

    cross: LoadedModel | None = None
    baselines: dict[str, float] = field(default_factory=dict)

    def start(self, tracker: RunLog, resumed: bool) -> tuple[()]:
        experiment: IntrospectionExperiment = self.experiment
        self.baselines = experiment.baselines(self.cross)
        if not resumed:
            log_dataset(tracker, experiment.config, experiment)
            tracker.log_metrics(0, self.baselines)
        return ()


def build(config: IntrospectionConfig, device: torch.device, *, models: ModelCache) -> IntrospectionPlan:
    """Scan for the neuron, build the activation dataset and the head."""
    experiment = IntrospectionExperiment(config, device, models)
    cross = load_model(config.cross_model, device, cache=models, seed=1) if config.cross_model else None
    return IntrospectionPlan(
        experiment, variant=f"{config.task}-{config.unfreeze}",
        run_name=f"{config.model}-L{experiment.layer}N{experiment.neuron}-s{config.seed}",
        selection=Selection(monitor=config.monitor, patience=config.patience, target_accuracy=config.target_accuracy,
                            target_split=config.target_split),
        rounds=config.max_epochs, cross=cross)


def report(tracker: RunLog, plan: IntrospectionPlan, fit: FitResult) -> None:
    """The headline against the probe at the validation-chosen step, the drift monitors and the figures."""
    experiment: IntrospectionExperiment = plan.experiment
    final = snapshot(experiment.model.state_dict())
    if fit.best_state is not None:  # the probe is refitted at the validation-chosen checkpoint the head is scored at
        experiment.model.load_state_dict(fit.best_state)
    refit = {**experiment.refit_probe(), "target/attention_share_at_best": experiment.attention_share()}
    experiment.model.load_state_dict(final)
    tracker.log_metrics(fit.state.step, {**refit, **at_best(fit.best_metrics, {**plan.baselines, **refit})})
    if experiment.gradient_log:
        tracker.log_text(json.dumps(experiment.gradient_log), "monitors/gradients.json")
    if experiment.activation_log:
        tracker.log_text(json.dumps(experiment.activation_log), "monitors/activations.json")
    output, live = experiment.predict(experiment.splits.test)
    history = history_frame(fit.state.history)
    for name, figure in figures(experiment.config, experiment, history, output, live).items():
        tracker.log_figure(figure, name)
