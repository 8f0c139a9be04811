"""tune with ``--executor ray``: Optuna decides every trial on the driver, Ray runs each as a task.

The driver asks the study for a trial and samples all its parameters (so the sampler and its seed
live in one process), then submits one Ray task per trial, keeping as many in flight as the
cluster holds. A task opens the same study from the shared storage, reports its validation metric
there for pruning, and returns the objective; the driver tells the study. Exactly ``n_trials``
trials are asked. A task whose worker died is retried by Ray and resumes its trial's run.
"""
from __future__ import annotations

import math
import sys
import time

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from innerlens.configs.tune import TuneConfig
from innerlens.drivers.ray_executor import CANCEL_GRACE_S, RayExecutor, cluster_is_local, is_local_store, result_of
from innerlens.drivers.tune.study import (
    CONFIG_ERROR_ATTR,
    ENDED_STATES,
    ERROR_ATTR,
    STORAGE_ENV,
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


def evaluate_trial(job: tuple[TuneConfig, str, int]) -> float:
    """On a Ray worker: the objective of the driver's trial ``trial_id``, its run under the parent."""
    config, parent_run_id, trial_id = job
    target = tunable(config.family)
    study = optuna.load_study(study_name=config.resolved_study_name, storage=open_storage(config), pruner=make_pruner(config))
    objective = make_objective(target, parse_fixed(config.fixed, target.config_class), _space(config, target),
                               parent_run_id, study.study_name)
    return objective(optuna.Trial(study, trial_id))


def beat(study: optuna.Study, trials) -> None:  # trials: Iterable[optuna.Trial]
    """Record a heartbeat for each trial in flight, when the storage keeps them (RDB): the driver
    stands in for the workers, which run no ``study.optimize``."""
    storage = study._storage
    if getattr(storage, "get_heartbeat_interval", lambda: None)() is not None:  # the journal file keeps none
        for trial in trials:
            storage.record_heartbeat(trial._trial_id)


def _space(config: TuneConfig, target: Tunable):
    return space_from_yaml(config.space, target.config_class) if config.space else target.search.space


def optimize_on_ray(config: TuneConfig, target: Tunable, study: optuna.Study, parent_run_id: str, progress: bool = True) -> None:
    """Run the study's remaining trials as Ray tasks; raise as :func:`innerlens.drivers.tune.optimize` does."""
    executor = RayExecutor(config.ray_address, config.cpus_per_run, config.gpus_per_run, config.max_retries, progress)
    executor.connect()
    try:
        url = storage_url(config)
        if (url is None or is_local_store(url)) and not cluster_is_local():
            raise ConfigError("--executor ray: the Optuna storage is a file on this machine that other nodes cannot open; "
                              "give --storage postgresql://... (the team stack's) or set INNERLENS_TUNE_STORAGE")
        if url:
            executor.env[STORAGE_ENV] = url  # to the workers through their environment, not the task's arguments
        _ask_run_tell(config, target, study, parent_run_id, executor, progress)
    finally:
        executor.close()


def _ask_run_tell(config: TuneConfig, target: Tunable, study: optuna.Study, parent_run_id: str,
                  executor: RayExecutor, progress: bool) -> None:
    import ray

    space = _space(config, target)
    study.sampler = make_sampler(config, config.seed)
    if storage_url(config) is None and (orphans := fail_orphaned_trials(study)):
        print(f"tune: {orphans} trial(s) whose worker died were marked FAIL", file=sys.stderr)
    optuna.storages.fail_stale_trials(study)  # (a no-op without heartbeats) an RDB study whose earlier driver died: its trials' beats stopped
    deadline = time.monotonic() + config.timeout if config.timeout else math.inf
    beat_at = -math.inf
    remaining = config.n_trials - len(study.get_trials(deepcopy=False, states=ENDED_STATES))
    limit = FailureLimit(config.max_consecutive_failures, config.n_trials)
    worker_config = config.replace(storage=None)
    in_flight: dict[object, optuna.Trial] = {}
    config_error = ""
    bar = tqdm(total=max(remaining, 0), desc="trials", disable=not progress)
    try:
        while in_flight or (remaining > 0 and not limit.tripped and not config_error and time.monotonic() < deadline):
            while (remaining > 0 and len(in_flight) < executor.capacity() and not limit.tripped and not config_error
                   and time.monotonic() < deadline):  # --timeout: no new trial after it; those running finish
                trial = study.ask()
                space(trial)  # every parameter sampled here, by the driver's seeded sampler
                in_flight[executor.submit(evaluate_trial, (worker_config, parent_run_id, trial._trial_id))] = trial
                remaining -= 1
            if time.monotonic() - beat_at >= config.heartbeat_interval:
                beat(study, in_flight.values())
                beat_at = time.monotonic()
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)  # a timeout: beats and signals between waits
            if not done:
                continue
            trial = in_flight.pop(done[0])
            state, value = TrialState.COMPLETE, None
            try:
                value = result_of(done[0])
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except ConfigError as error:  # every later trial would fail the same way
                state, config_error = TrialState.FAIL, str(error)
                trial.set_user_attr(CONFIG_ERROR_ATTR, config_error)
            except Exception as error:
                state = TrialState.FAIL
                trial.set_user_attr(ERROR_ATTR, f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}")
            frozen = study.tell(trial, value, state=state)
            limit.record(frozen)
            bar.set_postfix(failed=limit.failed, running=len(in_flight))
            bar.update()
    except BaseException:
        for ref in in_flight:  # Ctrl-C or SIGTERM: the trials' runs end KILLED
            ray.cancel(ref)
        ray.wait(list(in_flight), num_returns=len(in_flight), timeout=CANCEL_GRACE_S)  # before Ray shuts down
        raise
    finally:
        bar.close()
    if config_error:
        raise ConfigError(f"a trial's configuration is invalid: {config_error}")
    if limit.tripped:
        raise StudyFailed(f"study stopped after {limit.failed} failed trials ({limit.in_a_row} in a row); last error: {limit.last_error}")
