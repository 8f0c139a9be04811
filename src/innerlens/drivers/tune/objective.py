"""The parts of a tune study: the family's search target, storage, sampler, pruner, the objective and its failure limits."""
from __future__ import annotations

import dataclasses
import functools
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from innerlens import registry, session, tracking
from innerlens.config import Config
from innerlens.configs.tune import TuneConfig
from innerlens.drivers.executor import study_run
from innerlens.engine import EngineState
from innerlens.errors import ConfigError, RunFailed
from innerlens.results import RunResult
from innerlens.search_space import SearchSpec
from innerlens.tracking.redaction import redact_secrets

PARENT_ATTR = "mlflow_parent_run_id"


RUN_ATTR = "mlflow_run_id"


ERROR_ATTR = "error"


CONFIG_ERROR_ATTR = "config_error"


STORAGE_ENV = "INNERLENS_TUNE_STORAGE"  # how workers get the URL: the environment, not argv


OWNER_ATTR = "worker"  # host:pid running the trial (how the journal storage finds dead workers' trials)


ENDED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class Tunable:
    """What the driver needs of a family: its Config, how to run it, and its search spec."""

    config_class: type[Config]
    run: Callable[..., RunResult]
    search: SearchSpec


def tunable(family: str) -> Tunable:
    entry = registry.family(family)
    return Tunable(entry.config, functools.partial(session.run, entry.name), entry.config.search)


def parse_fixed(fixed: str, config_class: type[Config]) -> dict[str, str]:
    """``'a=1 b=x'`` -> {'a': '1', 'b': 'x'}, names checked against the family's options."""
    values: dict[str, str] = {}
    names = {spec.name for spec in config_class.specs()}
    for item in fixed.split():
        name, sep, value = item.partition("=")
        name = name.lstrip("-").replace("-", "_")
        if not sep or name not in names:
            raise ConfigError(f"--fixed: {item!r} is not name=value for an option of {config_class.family_name}")
        values[name] = value
    if values.get("target_split", "val").strip() == "test":
        raise ConfigError("--fixed: target_split=test would let test accuracy stop trials; a study reads validation only")
    return values


class PruneRun(optuna.TrialPruned, tracking.EndsRunAs):
    """Optuna counts the trial PRUNED; its MLflow run ends KILLED (never FINISHED)."""

    status = "KILLED"


class PruningReporter:
    """Engine callback: report the validation metric at every evaluation; prune when Optuna says so."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial, self.metric = trial, metric

    def on_epoch_end(self, state: EngineState, metrics: dict[str, float], improved: bool) -> None:
        self.trial.report(metrics[self.metric], state.step)
        if self.trial.should_prune():
            raise PruneRun(f"pruned at step {state.step}")

    def on_fit_end(self, state: EngineState) -> None:
        pass


def best_validation_value(run_id: str, metric: str, direction: str) -> float:
    """The best value of the run's validation metric over its history (what its best.pt holds)."""
    assert metric.startswith("val/"), "objectives read validation metrics only"
    values = tracking.metric_history(None, run_id, metric)["value"].tolist()
    if not values:
        raise RuntimeError(f"run {run_id} logged no {metric}")
    return max(values) if direction == "maximize" else min(values)


def make_objective(target: Tunable, base: dict[str, str], space: Callable[[Any], dict[str, Any]],
                   parent_run_id: str, study_name: str) -> Callable[[optuna.Trial], float]:
    fields = {f.name for f in dataclasses.fields(target.config_class)}

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(OWNER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        suggested = {name: value for name, value in space(trial).items() if name not in base}
        config = target.config_class.from_strings({**base, **{k: str(v) for k, v in suggested.items()}})
        assert set(suggested) <= fields
        metric = target.search.monitor(config)
        tags = {"innerlens.study": study_name, "innerlens.trial": str(trial.number)}

        def remember(run_id: str) -> None:
            trial.set_user_attr(RUN_ATTR, run_id)  # so a dead worker's run can be marked FAILED

        result = study_run(target.run, config, parent_run_id, f"trial {trial.number}", tags,
                           {"trial_number": str(trial.number)}, remember, callbacks=(PruningReporter(trial, metric),))
        if metric in result.best_metrics:  # the evaluation at the validation-chosen step, as the fit saw it
            return result.best_metrics[metric]
        return best_validation_value(result.run_id, metric, target.search.direction)  # an earlier attempt finished it

    return objective


class FailedTrialCallback(RetryHeartbeatStaleTrialCallback):  # Optuna 5's name for RetryFailedTrialCallback
    """A trial whose worker stopped beating: end its MLflow run FAILED, then queue a retry."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run_id = trial.user_attrs.get(RUN_ATTR)
        if run_id:
            tracking.end_run_as(run_id, "FAILED")
        super().__call__(study, trial)


def storage_url(config: TuneConfig) -> str | None:
    """The RDB storage URL (from --storage, else $INNERLENS_TUNE_STORAGE); None: the local journal file."""
    return config.storage or os.environ.get(STORAGE_ENV) or None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's process
        return True
    return True


def fail_orphaned_trials(study: optuna.Study) -> int:
    """End FAIL the RUNNING trials whose worker process on this host is gone; return how many.

    The journal storage has no heartbeat, so a killed worker's trial would stay RUNNING for
    ever and count toward ``n_trials``. Trials of other hosts are left alone: a study shared
    across machines belongs in an RDB storage, whose heartbeat covers them.
    """
    host, ended = socket.gethostname(), 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner_host, _, pid = trial.user_attrs.get(OWNER_ATTR, "").rpartition(":")
        if owner_host != host or not pid.isdigit() or _process_alive(int(pid)):
            continue
        run_id = trial.user_attrs.get(RUN_ATTR)
        if run_id:
            tracking.end_run_as(run_id, "FAILED")
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        ended += 1
    return ended


def open_storage(config: TuneConfig) -> optuna.storages.BaseStorage:
    url = storage_url(config)
    if not url:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = tracking.project_root() / "mlruns" / "optuna" / "journal.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if not url.startswith(("sqlite:///", "postgresql", "mysql")):
        raise ConfigError(f"--storage {redact_secrets(url)!r}: expected sqlite:///PATH, postgresql://... or mysql://...")
    try:
        return RDBStorage(
            url,
            engine_kwargs={"pool_pre_ping": True},
            # The driver beats for the trials in flight, wherever they run (tune/trials.py's Heartbeat),
            # so a study whose driver died has its trials failed at the next start.
            heartbeat_interval=config.heartbeat_interval,
            grace_period=2 * config.heartbeat_interval + 1,
            heartbeat_stale_trial_callback=FailedTrialCallback(max_retry=config.max_retries),
        )
    except Exception as error:  # a wrong URL or an unreachable server: one line, before any run
        raise ConfigError(f"--storage: cannot open {url.split('@')[-1]!r} ({type(error).__name__})") from None


def make_sampler(config: TuneConfig, seed: int) -> optuna.samplers.BaseSampler:
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(config: TuneConfig) -> optuna.pruners.BasePruner:
    if config.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


class StudyFailed(RunFailed):
    """The study's trials keep failing: it stops, and its parent run ends FAILED."""


class FailureLimit:
    """Stop the study after ``consecutive`` failed trials in a row or ``total`` in all.

    Without it, a study whose objective always fails never reaches ``n_trials`` finished trials
    and runs for ever.
    """

    def __init__(self, consecutive: int, total: int) -> None:
        self.consecutive, self.total = consecutive, total
        self.in_a_row, self.failed, self.last_error = 0, 0, ""

    def record(self, trial: optuna.trial.FrozenTrial) -> None:
        """Count an ended trial."""
        if trial.state != TrialState.FAIL or trial.user_attrs.get("surplus"):
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.failed += 1
        self.last_error = trial.user_attrs.get(ERROR_ATTR, self.last_error)
        if ERROR_ATTR in trial.user_attrs:  # one line per failed trial (Optuna's own report is a traceback)
            print(f"innerlens: trial {trial.number} failed: {trial.user_attrs[ERROR_ATTR]}", file=sys.stderr)

    @property
    def tripped(self) -> bool:
        return self.in_a_row >= self.consecutive or self.failed >= self.total
