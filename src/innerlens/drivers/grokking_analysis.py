"""Re-analysing a finished grokking run (``innerlens analyze``): its snapshots again, with the final model's key frequencies."""
from __future__ import annotations

import pandas as pd
import torch

from innerlens import tracking
from innerlens.analysis.fourier import frequency_norms
from innerlens.analysis.transitions import Transitions
from innerlens.configs.grokking import FAMILY, GrokkingConfig
from innerlens.errors import ConfigError
from innerlens.families.grokking import GrokkingExperiment, load_snapshots, log_figures


def analyze(run_id: str) -> Transitions:
    """Redo a finished run's analyses from its artifacts and log the figures into it.

    Progress measures are recomputed at every snapshot with the *final* model's key
    frequencies (as Nanda et al. do), which the online measures could not know in advance.
    """
    tracking.configure_tracking()
    config_dict = tracking.load_config(run_id, FAMILY)
    config = GrokkingConfig(**{**config_dict, "resume": None, "device": "cpu"})
    experiment = GrokkingExperiment(config, torch.device("cpu"))
    with tracking.open_finished_run(run_id) as log:
        snapshots = load_snapshots(log)
    if not snapshots:
        raise ConfigError(f"run {run_id} has no checkpoints/steps/ snapshots to analyze")
    history = tracking.load_history(run_id)
    history = history[~history["key"].str.startswith("final_keys/")]  # a rerun replaces, not appends
    final_step = max(snapshots)
    experiment.model.load_state_dict(snapshots[final_step])
    rows = []
    if config.fourier_ready:
        final_keys = _final_key_frequencies(experiment)
        for step in sorted(snapshots):
            experiment.model.load_state_dict(snapshots[step])
            metrics = experiment.analysis_metrics(key_frequencies=final_keys)
            rows += [{"step": step, "key": f"final_keys/{key}", "value": value} for key, value in metrics.items() if key.startswith("grok/") and "key_frequency" not in key]
    experiment.model.load_state_dict(snapshots[final_step])
    history = pd.concat([history, pd.DataFrame(rows, columns=["step", "key", "value"])], ignore_index=True)
    with tracking.open_finished_run(run_id) as tracker:
        transitions = log_figures(tracker, config, experiment, history, snapshots)
        tracker.log_history(history)
    return transitions


def _final_key_frequencies(experiment: GrokkingExperiment) -> list[int]:
    from innerlens.analysis.fourier import key_frequencies

    return key_frequencies(frequency_norms(experiment.model.W_E[: experiment.config.p]), experiment.config.key_frequencies)
