"""One run of a family: ``session.run(family, config, parent=..., callbacks=...)`` owns the whole
lifecycle and returns what the run produced, not only where it was logged.

A family supplies two things and nothing else of the lifecycle:

- ``build(config, device, **options) -> Plan`` (:mod:`innerlens.plan`): the :class:`~innerlens.engine.Experiment` and how
  to run it (selection, rounds, name, tags). A :class:`Plan` subclass's ``start`` may log what the run needs before
  training (its dataset, step-0 snapshot) and return extra engine callbacks.
- ``report(tracker, plan, fit)``: what the family measures and draws once the fit has ended,
  from the fit's validation-chosen weights.

The session resolves the device, opens the MLflow run (nested under ``parent`` when a driver gives
one), continues from the run's last checkpoint on ``--resume`` (resume lives here and nowhere else
of the run path), trains with the shared callbacks (metrics, checkpoints) and the caller's (an
Optuna pruner), calls ``report``, keeps the local copy ``--output-dir`` asks for, and returns a
:class:`RunResult`. Drivers read the objective, and studies every metric the run logged, from the
result instead of asking the server again.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from innerlens import registry
from innerlens.results import RunResult

if TYPE_CHECKING:
    from innerlens.config import Config
    from innerlens.engine import EngineState, FitResult
    from innerlens.plan import Family, ModelRelease, Plan
    from innerlens.registry import EntryPoint
    from innerlens.tracking import RunContext, RunTracker


def run(family: str | EntryPoint | Family, config: Config, *, parent: RunContext | None = None,
        callbacks: Sequence[Any] = (), progress: bool = True, run_name: str | None = None, **options: Any) -> RunResult:
    """Train ``config`` as one run of ``family`` (a name in :mod:`innerlens.registry`, its entry, or
    any object with ``build`` and ``report``); ``options`` go to the family's ``build``."""
    import pandas as pd

    from innerlens import engine, tracking
    from innerlens.callbacks import Checkpointer, MetricsLogger
    from innerlens.engine import resolve_device
    from innerlens.local_copy import check_output_dir, write_local_copy

    code: Family = family if hasattr(family, "build") else (  # type: ignore[assignment]
        registry.family(family) if isinstance(family, str) else family).load()
    device = resolve_device(config.device)
    output_dir = getattr(config, "output_dir", None)
    output_dir = check_output_dir(output_dir, config.force_overwrite) if output_dir else None
    plan = code.build(config, device, **options, **build_options(code))
    with tracking.start_run(config, variant=plan.variant, run_name=run_name or plan.run_name, parent=parent,
                            step_unit=plan.step_unit) as tracker:
        target_split = getattr(config, "target_split", None)
        tracker.set_tags({"innerlens.device": str(device), **plan.tags,
                          **({"innerlens.target_split": target_split} if target_split else {})})
        if progress:  # a study's runs stay quiet; the study says it once
            for note in plan.notes:
                tracking.say(note)
        extra = plan.start(tracker, bool(config.resume))
        state, logged_through = resume_point(plan, config)
        fit = engine.fit(plan.experiment, max_epochs=plan.rounds, selection=plan.selection, state=state, progress=progress,
                         steps_per_round=plan.steps_per_round, callbacks=[
                             MetricsLogger(tracker, logged_through),
                             Checkpointer(tracker, plan.experiment, config, config.checkpoint_interval, plan.checkpoint_due),
                             *callbacks, *extra])
        if fit.best_state is None and config.resume:  # the best evaluation came before the resume
            fit.best_state = tracking.load_checkpoint(config.resume, "best")["model"]
        if plan.release is not None:
            plan.registered_version = publish(tracker, plan.release, fit)
        code.report(tracker, plan, fit)
        if output_dir is not None:
            tracker.flush()
            write_local_copy(tracker.run_id, output_dir, config.force_overwrite)
        logged = None if config.resume else pd.DataFrame(tracker.logged, columns=["step", "key", "value"])
        return RunResult(tracker.run_id, fit.best_metrics, fit.best_state, logged)


def publish(tracker: RunTracker, release: ModelRelease, fit: FitResult) -> str | None:
    """Log the model ``release`` writes and register it; return its version (None: not registered)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="innerlens-model-") as folder:
        release.write(fit, Path(folder))
        tracker.log_directory(folder, release.artifact_path)
    if not release.register:
        return None
    version = tracker.register_model(release.artifact_path, release.registered_name)
    tracker.set_tags({"innerlens.registered_version": version})
    return version


def resume_point(plan: Plan, config: Config) -> tuple[EngineState, int]:
    """Where the fit starts, and the last step its run already logged: the beginning, or with
    ``config.resume`` the run's ``last.pt`` (the beginning if it was killed before writing one); the
    evaluations up to that step are recomputed, not logged twice."""
    from innerlens import tracking
    from innerlens.engine import EngineState, check_checkpoint_format, restore

    state = EngineState(steps_per_round=plan.steps_per_round)
    if not config.resume:
        return state, 0
    if tracking.has_checkpoint(config.resume):
        checkpoint = tracking.load_checkpoint(config.resume)
        check_checkpoint_format(checkpoint, config.resume)
        state = restore(plan.experiment, checkpoint)
    return state, tracking.last_logged_step(config.resume, plan.selection.monitor)


def build_options(code: Family) -> dict[str, Any]:
    """What the session supplies to a family's ``build`` that asks for it by name: where downloaded
    and registered models are cached and fetched (``models``), so families need no tracking import."""
    import inspect

    from innerlens import tracking

    wanted = inspect.signature(code.build).parameters
    if "models" not in wanted:
        return {}
    from innerlens.models.loading import ModelCache

    return {"models": ModelCache(tracking.models_root(), tracking.download_registered)}


def resumed(config: Config, given: set[str]) -> Config:
    """``--resume RUN``: the run's stored configuration, with only the resumable options ``given`` on
    the command line changed (a RUNNING run is refused unless ``--force-resume``)."""
    from innerlens.tracking import resumable_config

    stored = resumable_config(config.resume, config.family_name, force=config.force_resume)
    return config.resumed_from(stored, given)


def links(run_id: str, artifacts: Sequence[str] = ()) -> str:
    """How to open the run in the MLflow UI, and the links to its page and ``artifacts`` there."""
    from innerlens.tracking import ui_hint

    return ui_hint(run_id, tuple(artifacts))
