"""Optuna studies over a family's hyperparameters, each trial a full family run nested in MLflow.

The study is one parent MLflow run. Each trial is Optuna's plain objective: build the config from
the trial, run the family nested under the parent (tagged with the study and trial number) with a
pruning callback that reports the validation metric at every evaluation, and return that metric at
the validation-chosen step from the run's result: the number the family's own checkpoint selection
used. Test metrics are never read.

One driver asks for every trial and runs it on an executor (this process, local worker processes or
Ray; :mod:`innerlens.drivers.tune.trials`), so the study gets exactly ``--n-trials``; a second
command naming the same study joins it and stops asking once the study has them.

Storage: Optuna's journal file under ``mlruns/optuna/`` by default (several processes on one
machine share it); an RDB URL (``sqlite:///...``, ``postgresql://...``) adds heartbeats, so
trials of killed drivers are failed and retried, and ``pool_pre_ping`` so idle connections do
not drop workers."""
from __future__ import annotations

import json
import warnings

import optuna
import pandas as pd
from optuna.trial import TrialState

from innerlens import tracking
from innerlens.configs.tune import TuneConfig
from innerlens.drivers.executor import default_workers
from innerlens.drivers.executor_choice import make_executor
from innerlens.drivers.tune.objective import (
    PARENT_ATTR,
    RUN_ATTR,
    STORAGE_ENV,
    Tunable,
    make_pruner,
    open_storage,
    parse_fixed,
    storage_url,
    tunable,
)
from innerlens.drivers.tune.trials import optimize
from innerlens.errors import ConfigError
from innerlens.search_space import space_from_yaml


def run(config: TuneConfig, *, progress: bool = True) -> str:
    """Run (or join) the study; return the parent run id."""
    target = tunable(config.family)
    base = parse_fixed(config.fixed, target.config_class)
    target.config_class.from_strings(base)  # a bad fixed value fails here, before any run
    if config.space:
        space_from_yaml(config.space, target.config_class)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are reported in one line each by FailureLimit
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    tracking.configure_tracking()
    study = optuna.create_study(
        study_name=config.resolved_study_name,
        storage=open_storage(config),
        direction=target.search.direction,
        pruner=make_pruner(config),
        load_if_exists=True,
    )
    parent = study.user_attrs.get(PARENT_ATTR)
    if parent is None:
        with tracking.start_run(config, variant=config.family, run_name=config.resolved_study_name) as tracker:
            study.set_user_attr(PARENT_ATTR, tracker.run_id)
            tracker.set_tags({"innerlens.study": config.resolved_study_name, "innerlens.tuned_family": config.family})
            _work(config, target, study, tracker.run_id, progress)
            summarize(tracker, study, target, config)
            return tracker.run_id
    _work(config, target, study, parent, progress)  # joining a study another command started
    with tracking.open_finished_run(parent) as tracker:
        summarize(tracker, study, target, config)
    return parent


def _work(config: TuneConfig, target: Tunable, study: optuna.Study, parent_run_id: str, progress: bool) -> None:
    """The trials, on the executor the options ask for: this process (one worker), local worker
    processes, or Ray tasks, whose storage must be one every node can open."""
    workers = 0 if config.n_workers == 1 else default_workers(config.n_workers)[0]
    executor = make_executor(config, workers, progress=False, unit="trials")
    worker_config = config
    if config.executor == "ray":
        from innerlens.drivers.ray_executor import cluster_is_local, is_local_store

        executor.start()
        url = storage_url(config)
        if (url is None or is_local_store(url)) and not cluster_is_local():
            executor.close()
            raise ConfigError("--executor ray: the Optuna storage is a file on this machine that other nodes cannot open; "
                              "give --storage postgresql://... (the team stack's) or set INNERLENS_TUNE_STORAGE")
        if url:
            executor.env[STORAGE_ENV] = url  # to the workers through their environment, not the task's arguments
        worker_config = config.replace(storage=None)
    optimize(config, target, study, parent_run_id, executor, worker_config=worker_config, progress=progress)


def trial_table(study: optuna.Study) -> pd.DataFrame:
    table = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration", "user_attrs"))
    return table.rename(columns=lambda c: c.replace("user_attrs_", ""))


def summarize(tracker: tracking.RunTracker, study: optuna.Study, target: Tunable, config: TuneConfig) -> None:
    """Best trial, trial table, Optuna's figures (PNG + one HTML) and the registered best checkpoint."""
    table = trial_table(study)
    tracker.log_text(table.to_csv(index=False), "trials.csv")
    counts = table["state"].value_counts().to_dict()
    tracker.log_metrics(0, {f"trials/{state.lower()}": float(n) for state, n in counts.items()})
    ended = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not ended:
        tracker.set_tags({"innerlens.best": "no trial completed"})
        return
    best = study.best_trial
    tracker.log_metrics(0, {"best/value": float(best.value), "best/trial": float(best.number)})
    tracker.set_tags({f"innerlens.best.{k}": str(v) for k, v in best.params.items()}
                     | {"innerlens.best_run_id": best.user_attrs.get(RUN_ATTR, "")})
    tracker.log_text(json.dumps({"trial": best.number, "value": best.value, "params": best.params,
                                 "run_id": best.user_attrs.get(RUN_ATTR)}, indent=2), "best.json")
    _log_figures(tracker, study)
    if config.register and best.user_attrs.get(RUN_ATTR):
        tracker.flush()
        name = f"innerlens-{config.family}-tuned"
        tags = {key: str(value) for key, value in {**best.params, "study": study.study_name, "trial": best.number,
                                                   "value": best.value}.items()}
        version = tracking.register_model(best.user_attrs[RUN_ATTR], "checkpoints", name, tags)
        tracker.set_tags({"innerlens.registered_version": f"{name}/{version}"})


def _log_figures(tracker: tracking.RunTracker, study: optuna.Study) -> None:
    """Each figure whose preconditions hold (importances need two completed trials and a varied param)."""
    import matplotlib.pyplot as plt
    import optuna.visualization as interactive
    import optuna.visualization.matplotlib as static

    names = ("optimization_history", "param_importances", "slice", "parallel_coordinate")
    html_parts = []
    for name in names:
        try:
            axes = getattr(static, f"plot_{name}")(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            tracker.log_figure(figure, name)
            html_parts.append(getattr(interactive, f"plot_{name}")(study).to_html(
                full_html=False, include_plotlyjs=not html_parts))
        except (ValueError, RuntimeError) as error:
            plt.close("all")
            tracker.set_tags({f"innerlens.figure.{name}": f"skipped: {error}"[:250]})
    if html_parts:
        page = "<html><head><meta charset='utf-8'><title>study</title></head><body>" + "".join(html_parts) + "</body></html>"
        tracker.log_text(page, "figures/study.html")
