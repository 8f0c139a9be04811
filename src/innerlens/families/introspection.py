"""Introspection: a language model learns to report one of its own neuron activations.

The model reads a text; a head on its residual stream at ``--feature-layer`` (last real token
by default) predicts the activation of neuron ``--neuron`` of ``--layer`` at that token, as a
number (regression) or a quantile bin (classification). Unfreezing the model lets it change
the very neuron it reports on; ``--targets live`` recomputes labels from the current model, and
the drift metrics say whether it made that neuron easier to predict.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from innerlens import tracking
from innerlens.callbacks import history_frame, metrics_at, tracked_fit
from innerlens.configs.introspection import IntrospectionConfig
from innerlens.engine import Selection, resolve_device
from innerlens.families.introspection_experiment import IntrospectionExperiment
from innerlens.families.introspection_report import at_best, figures, log_dataset
from innerlens.local_copy import check_output_dir, write_local_copy
from innerlens.models.loading import load_model
from innerlens.results import RunResult
from innerlens.search_space import SearchSpec
from innerlens.tracking import RunContext

if TYPE_CHECKING:
    pass


def _introspection_space(trial: Any) -> dict[str, Any]:
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
        "head_lr": trial.suggest_float("head_lr", 1e-3, 3e-2, log=True),
    }


# Regression runs select on val/r2, classification on val/acc: both "higher is better".
SEARCH = SearchSpec(metric=lambda config: config.monitor, direction="maximize", space=_introspection_space)


def run(config: IntrospectionConfig, *, parent: RunContext | None = None, callbacks: tuple[Any, ...] = (), progress: bool = True) -> RunResult:
    """Scan, build the activation dataset, train the introspection head; return the run id."""
    device = resolve_device(config.device)
    output_dir = check_output_dir(config.output_dir, config.force_overwrite) if config.output_dir else None
    models_root = tracking.models_root()
    experiment = IntrospectionExperiment(config, device, models_root)
    cross = load_model(config.cross_model, device, cache_root=models_root, seed=1) if config.cross_model else None
    with tracking.start_run(config, variant=f"{config.task}-{config.unfreeze}", run_name=f"{config.model}-L{experiment.layer}N{experiment.neuron}-s{config.seed}", parent=parent) as tracker:
        baselines = experiment.baselines(cross)
        if not config.resume:
            log_dataset(tracker, config, experiment)
            tracker.log_metrics(0, baselines)
        state = tracked_fit(
            experiment, tracker, config, max_epochs=config.max_epochs, progress=progress,
            selection=Selection(monitor=config.monitor, patience=config.patience, target_accuracy=config.target_accuracy, target_split=config.target_split), callbacks=callbacks)
        tracker.log_metrics(state.step, at_best(metrics_at(state, state.best_step), baselines))
        if experiment.gradient_log:
            tracker.log_text(json.dumps(experiment.gradient_log), "monitors/gradients.json")
        if experiment.activation_log:
            tracker.log_text(json.dumps(experiment.activation_log), "monitors/activations.json")
        output, live = experiment.predict(experiment.splits.test)
        history = history_frame(state.history)
        for name, figure in figures(config, experiment, history, output, live).items():
            tracker.log_figure(figure, name)
        tracker.flush()
        if output_dir is not None:
            write_local_copy(tracker.run_id, output_dir, config.force_overwrite)
        return RunResult(tracker.run_id, metrics_at(state, state.best_step), None, history_frame(state.history))
