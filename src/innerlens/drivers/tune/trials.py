"""Running a study's trials: one ask-and-tell loop over any :class:`~innerlens.drivers.executor.Executor`.

The driver asks the study for a trial and samples all its parameters (so the sampler and its seed
live in one process), then submits the trial as a task, keeping as many in flight as the executor
has room for. A task opens the same study from the shared storage (or, in this process, uses it),
reports its validation metric there for pruning, and returns what became of the trial; the driver
tells the study. The failure policy (stop after too many failures, a configuration error ends the
study in one line, trials of dead workers are failed) is written here once, for every executor.
"""
from __future__ import annotations

import functools
import math
import sys
import threading
import time
import warnings
from typing import Any, Callable

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from innerlens.configs.tune import TuneConfig
from innerlens.drivers.executor import Executor
from innerlens.drivers.tune.objective import (
    CONFIG_ERROR_ATTR,
    ENDED_STATES,
    ERROR_ATTR,
    FailureLimit,
    StudyFailed,
    Tunable,
    fail_orphaned_trials,
    make_objective,
    make_pruner,
    make_sampler,
    open_storage,
    parse_fixed,
    storage_url,
    tunable,
)
from innerlens.errors import ConfigError
from innerlens.search_space import space_from_yaml

Outcome = tuple[str, float | None, str]  # (state: complete | pruned | config_error | fail, value, error line)
SURPLUS_ATTR = "surplus"


def _space(config: TuneConfig, target: Tunable) -> Callable[[Any], dict[str, Any]]:
    return space_from_yaml(config.space, target.config_class) if config.space else target.search.space


def _outcome(objective: Callable[[optuna.Trial], float], trial: optuna.Trial) -> Outcome:
    """What became of a trial, as plain data that crosses any executor."""
    try:
        return "complete", objective(trial), ""
    except optuna.TrialPruned:
        return "pruned", None, ""
    except ConfigError as error:  # every later trial would fail the same way
        return "config_error", None, str(error)
    except Exception as error:
        return "fail", None, f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"


def evaluate_trial(job: tuple[TuneConfig, str, int]) -> Outcome:
    """On a worker: the driver's trial ``trial_id``, its run nested under the parent."""
    config, parent_run_id, trial_id = job
    target = tunable(config.family)
    study = optuna.load_study(study_name=config.resolved_study_name, storage=open_storage(config), pruner=make_pruner(config))
    objective = make_objective(target, parse_fixed(config.fixed, target.config_class), _space(config, target),
                               parent_run_id, study.study_name)
    return _outcome(objective, optuna.Trial(study, trial_id))


def _evaluate_here(study: optuna.Study, objective: Callable[[optuna.Trial], float], trial_id: int) -> Outcome:
    """In the driver's own process (one worker): the study object itself, whatever its storage."""
    return _outcome(objective, optuna.Trial(study, trial_id))


class Heartbeat:
    """Record a heartbeat for each trial in flight every ``interval`` seconds, when the storage keeps
    them (RDB): the workers run no ``study.optimize``, whose thread would, so the driver stands in
    for them, also while a trial runs in its own process."""

    def __init__(self, study: optuna.Study, interval: float) -> None:
        self.storage, self.interval = study._storage, interval
        self.trials: dict[str, optuna.Trial] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

        self.enabled = getattr(self.storage, "get_heartbeat_interval", lambda: None)() is not None  # the journal keeps none

    def __enter__(self) -> Heartbeat:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def add(self, label: str, trial: optuna.Trial) -> None:
        """A trial about to run: its first beat now, so that a driver killed at once still leaves it stale."""
        self.trials[label] = trial
        if self.enabled:
            self.storage.record_heartbeat(trial._trial_id)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            for trial in list(self.trials.values()):
                try:
                    self.storage.record_heartbeat(trial._trial_id)
                except Exception:  # a locked SQLite file: the next beat comes an interval later
                    continue


def _surplus(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """Another driver of the same study started its last trial first (the lower number goes ahead)."""
    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(t.number < trial.number for t in study.get_trials(deepcopy=False, states=live)) >= n_trials


def optimize(config: TuneConfig, target: Tunable, study: optuna.Study, parent_run_id: str, executor: Executor,
             *, worker_config: TuneConfig | None = None, progress: bool = True) -> None:
    """Run the study's remaining trials on ``executor``; raise :class:`StudyFailed` or ``ConfigError``
    when the study stops for its failures. An executor with no worker processes runs each trial here;
    workers get ``worker_config`` (default ``config``; Ray's leaves the storage URL out of its tasks)."""
    space = _space(config, target)
    study.sampler = make_sampler(config, config.seed)
    if storage_url(config) is None and (orphans := fail_orphaned_trials(study)):
        print(f"tune: {orphans} trial(s) whose worker died were marked FAIL", file=sys.stderr)
    with warnings.catch_warnings():  # experimental in Optuna
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)  # (a no-op without heartbeats) trials whose earlier driver died
    here = executor.in_process
    if here:
        objective = make_objective(target, parse_fixed(config.fixed, target.config_class), space, parent_run_id,
                                   study.study_name)
        task: Callable[[Any], Outcome] = functools.partial(_evaluate_here, study, objective)
    else:
        task = evaluate_trial
    worker_config = worker_config or config
    deadline = time.monotonic() + config.timeout if config.timeout else math.inf
    limit = FailureLimit(config.max_consecutive_failures, config.n_trials)
    config_error = ""

    def may_ask() -> bool:  # --timeout: no new trial after it; those running finish
        started = len(study.get_trials(deepcopy=False, states=ENDED_STATES + (TrialState.RUNNING,)))
        return started < config.n_trials and not limit.tripped and not config_error and time.monotonic() < deadline

    remaining = config.n_trials - len(study.get_trials(deepcopy=False, states=ENDED_STATES))
    bar = tqdm(total=max(remaining, 0), desc="trials", disable=None if progress else True)  # None: a terminal only
    heartbeat = Heartbeat(study, config.heartbeat_interval)
    try:
        executor.start()
        with heartbeat:
            while heartbeat.trials or may_ask():
                while executor.free() > 0 and may_ask():
                    with warnings.catch_warnings():  # "heartbeat is for study.optimize": the Heartbeat here beats
                        warnings.simplefilter("ignore")
                        trial = study.ask()
                    if _surplus(study, trial, config.n_trials):
                        trial.set_user_attr(SURPLUS_ATTR, True)
                        study.tell(trial, state=TrialState.FAIL)
                        break
                    space(trial)  # every parameter sampled here, by the driver's seeded sampler
                    label = f"trial {trial.number}"
                    heartbeat.add(label, trial)
                    executor.submit(label, task, trial._trial_id if here else (worker_config, parent_run_id, trial._trial_id))
                for ended in executor.completed(timeout=1.0):  # a timeout: signals are handled between waits
                    trial = heartbeat.trials.pop(ended.label)
                    state, value, error = ended.value if not ended.error else ("fail", None, ended.error)
                    if state == "config_error":
                        config_error = error
                        trial.set_user_attr(CONFIG_ERROR_ATTR, error)
                    elif state == "fail":
                        trial.set_user_attr(ERROR_ATTR, error)
                    frozen = study.tell(trial, value, state={"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(
                        state, TrialState.FAIL))
                    limit.record(frozen)
                    bar.set_postfix(failed=limit.failed)
                    bar.update()
    except BaseException:
        executor.cancel()  # Ctrl-C or SIGTERM: the trials' runs end KILLED, and so do their trials
        for trial in heartbeat.trials.values():
            study.tell(trial, state=TrialState.FAIL)
        raise
    finally:
        bar.close()
        executor.close()
    if config_error:
        raise ConfigError(f"a trial's configuration is invalid: {config_error}")
    if limit.tripped:
        raise StudyFailed(f"study stopped after {limit.failed} failed trials ({limit.in_a_row} in a row); last error: {limit.last_error}")
