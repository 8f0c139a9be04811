"""Running a study's trials on this machine: in this process, or on worker processes sharing the storage."""
from __future__ import annotations

import os
import subprocess
import sys

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from innerlens import tracking
from innerlens.configs.tune import TuneConfig
from innerlens.drivers.signals import stop_processes
from innerlens.drivers.tune.study import (
    CONFIG_ERROR_ATTR,
    ENDED_STATES,
    STORAGE_ENV,
    FailureLimit,
    StudyFailed,
    Tunable,
    capped,
    fail_orphaned_trials,
    make_objective,
    make_sampler,
    parse_fixed,
    remembering_errors,
    storage_url,
)
from innerlens.errors import ConfigError, RunFailed
from innerlens.search_space import space_from_yaml


def optimize(config: TuneConfig, target: Tunable, study: optuna.Study, parent_run_id: str, seed: int) -> None:
    base = parse_fixed(config.fixed, target.config_class)
    space = space_from_yaml(config.space, target.config_class) if config.space else target.search.space
    objective = make_objective(target, base, space, parent_run_id, study.study_name)
    study.sampler = make_sampler(config, seed)
    if storage_url(config) is None and (orphans := fail_orphaned_trials(study)):
        print(f"tune: {orphans} trial(s) whose worker died were marked FAIL", file=sys.stderr)
    done = len(study.get_trials(deepcopy=False, states=ENDED_STATES))
    if done >= config.n_trials:
        return
    limit = FailureLimit(config.max_consecutive_failures, config.n_trials)
    study.optimize(
        capped(remembering_errors(objective), config.n_trials),
        timeout=config.timeout,
        callbacks=[MaxTrialsCallback(config.n_trials, states=ENDED_STATES + (TrialState.RUNNING,)), limit],
        catch=(Exception,),
        gc_after_trial=True,
    )
    config_errors = [t.user_attrs[CONFIG_ERROR_ATTR] for t in study.get_trials(deepcopy=False) if CONFIG_ERROR_ATTR in t.user_attrs]
    if config_errors:
        raise ConfigError(f"a trial's configuration is invalid: {config_errors[-1]}")
    if limit.tripped:
        raise StudyFailed(f"study stopped after {limit.failed} failed trials ({limit.in_a_row} in a row); last error: {limit.last_error}")


def worker_command(config: TuneConfig, parent_run_id: str, index: int) -> list[str]:
    """The command line of spawned worker ``index``: this study's options, without the storage URL."""
    worker = config.replace(n_workers=1, worker_of=parent_run_id, seed=config.seed + index, storage=None)
    args = [f"--{name.replace('_', '-')}={value}" for name, value in worker.cli_values().items()]
    return [sys.executable, "-c", "from innerlens.cli import main; main()", "tune", *args]


def _spawn_workers(config: TuneConfig, parent_run_id: str) -> None:
    """``n_workers`` processes of this same command joining the study, reporting to the parent run."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
    env["MLFLOW_TRACKING_URI"] = tracking.tracking_uri()
    if config.storage:
        env[STORAGE_ENV] = config.storage  # not in argv, where `ps` shows a URL's password to every user
    processes: list[subprocess.Popen] = []
    try:
        for index in range(config.n_workers):
            processes.append(subprocess.Popen(worker_command(config, parent_run_id, index), env=env))
        failed = [p.args for p in processes if p.wait() != 0]
    finally:
        stop_processes(processes)  # after Ctrl-C or SIGTERM: no orphaned workers, their trial runs end KILLED
    if failed:
        raise RunFailed(f"{len(failed)} of {config.n_workers} tune workers exited with an error (their own lines above say why)")


def _work(config: TuneConfig, target: Tunable, study: optuna.Study, parent_run_id: str) -> None:
    if config.executor == "ray":
        from innerlens.drivers.tune.on_ray import optimize_on_ray

        optimize_on_ray(config, target, study, parent_run_id)
    elif config.n_workers > 1:
        _spawn_workers(config, parent_run_id)
    else:
        optimize(config, target, study, parent_run_id, config.seed)
