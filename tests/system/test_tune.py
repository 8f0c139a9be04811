"""tune: validation-only objectives, trials nested under the study, workers sharing one storage."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from support import TINY_SELF_MODELING, clean_env

from innerlens import tracking
from innerlens.callbacks import MetricsLogger
from innerlens.config import Config, option
from innerlens.configs.tune import TuneConfig
from innerlens.drivers.local_executor import LocalExecutor
from innerlens.drivers.tune.objective import ENDED_STATES, RUN_ATTR, StudyFailed, Tunable
from innerlens.drivers.tune.trials import optimize
from innerlens.engine import EngineState, Selection, fit
from innerlens.errors import ConfigError
from innerlens.results import RunResult
from innerlens.search_space import SearchSpec, space_from_yaml


@dataclass(frozen=True)
class OppositeConfig(Config):
    """A family whose validation metric prefers x=1 and whose test metric prefers x=0."""

    family_name = "opposite"
    x: int = option(0, "The only hyperparameter.")
    epochs: int = option(3, "Evaluations per run.")


class OppositeExperiment:
    def __init__(self, config: OppositeConfig) -> None:
        self.config = config
        self.model = torch.nn.Linear(1, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.generator = torch.Generator()

    def train_round(self, epoch: int) -> dict[str, float]:
        return {"train/loss": 1.0 / epoch}

    def evaluate(self, epoch: int) -> dict[str, float]:
        return {"val/acc": 0.5 + 0.4 * self.config.x - 0.01 * epoch, "test/acc": 0.9 - 0.4 * self.config.x}


def run_opposite(config: OppositeConfig, *, parent: tracking.RunContext | None = None, callbacks: tuple = (),
                 progress: bool = True) -> RunResult:
    with tracking.start_run(config, variant=f"x{config.x}", parent=parent) as tracker:
        result = fit(OppositeExperiment(config), max_epochs=config.epochs, selection=Selection(patience=0),
                    callbacks=[MetricsLogger(tracker), *callbacks], state=EngineState(), progress=False)
        tracker.flush()
        return RunResult(tracker.run_id, result.best_metrics)


def _here() -> LocalExecutor:
    """Trials one after another in this process."""
    return LocalExecutor(0, torch.get_num_threads(), progress=False)


OPPOSITE = Tunable(OppositeConfig, run_opposite, SearchSpec("val/acc", "maximize", lambda trial: {"x": trial.suggest_categorical("x", [0, 1])}))


def test_study_chooses_by_validation_and_never_reads_test(local_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    original = MlflowClient.get_metric_history

    def recording(self: MlflowClient, run_id: str, key: str):  # type: ignore[no-untyped-def]
        read.append(key)
        return original(self, run_id, key)

    monkeypatch.setattr(MlflowClient, "get_metric_history", recording)
    config = TuneConfig(n_trials=6, sampler="random", pruner="none")
    study = optuna.create_study(direction="maximize")
    with tracking.start_run(config, variant="opposite") as parent:
        optimize(config, OPPOSITE, study, parent.run_id, _here(), progress=False)
    assert {t.params["x"] for t in study.trials} == {0, 1}  # both were tried
    assert study.best_params == {"x": 1}
    assert study.best_value == pytest.approx(0.89)  # the best *validation* value (epoch 1), not test's 0.9
    assert read == []  # the objective comes from each run's RunResult: the study reads no metric back from the server
    client = MlflowClient()
    for trial in study.trials:
        child = client.get_run(trial.user_attrs[RUN_ATTR])
        assert child.data.tags["mlflow.parentRunId"] == parent.run_id
        assert child.data.tags["innerlens.trial"] == child.data.params["trial_number"] == str(trial.number)


def test_bad_space_and_fixed_values_fail_with_one_line(tmp_path: Path) -> None:
    from innerlens.drivers.tune.objective import parse_fixed
    from innerlens.families.self_modeling import SelfModelingConfig

    bad_yaml = tmp_path / "space.yaml"
    bad_yaml.write_text("not_an_option: {type: float, low: 0, high: 1}\n")
    with pytest.raises(ConfigError, match="'not_an_option' is not an option of self_modeling"):
        space_from_yaml(bad_yaml, SelfModelingConfig)
    bad_yaml.write_text("lr: {type: float, low: 1, high: 0.1}\n")
    with pytest.raises(ConfigError, match="low must be below high"):
        space_from_yaml(bad_yaml, SelfModelingConfig)
    with pytest.raises(ConfigError, match="'depth=3' is not name=value for an option"):
        parse_fixed("max_epochs=3 depth=3", SelfModelingConfig)


def test_yaml_space_replaces_the_family_space(tmp_path: Path) -> None:
    from innerlens.families.self_modeling import SelfModelingConfig

    path = tmp_path / "space.yaml"
    path.write_text("lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\nbatch_size: {type: categorical, choices: [32, 64]}\n")
    space = space_from_yaml(path, SelfModelingConfig)
    study = optuna.create_study()
    values = space(study.ask())
    assert set(values) == {"lr", "batch_size"}
    assert 1e-4 <= values["lr"] <= 1e-2 and values["batch_size"] in (32, 64)


@dataclass(frozen=True)
class Stores:
    """Where a tune command keeps its study and its runs."""

    optuna: str
    tracking: str
    env: dict[str, str]


def _sqlite_stores(tmp_path: Path) -> Stores:
    return Stores(f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}", {})


def _tune(tmp_path: Path, *args: str, stores: Stores | None = None, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    stores = stores or _sqlite_stores(tmp_path)
    env = clean_env(**{**stores.env, "MLFLOW_TRACKING_URI": stores.tracking, "MLFLOW_EXPERIMENT_NAME": "tune"})
    command = ["innerlens", "tune", "--family", "self_modeling", "--storage", stores.optuna, *args]
    if not wait:
        return subprocess.Popen(command, env=env, cwd=tmp_path, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _study(tmp_path: Path, name: str = "tune-self_modeling") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=_sqlite_stores(tmp_path).optuna)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_complete_exactly_n_trials(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "sqlite":
        stores = _sqlite_stores(tmp_path)
    else:  # the team stack: study in its PostgreSQL, runs on its authenticated server
        stack = request.getfixturevalue("team_stack")
        password = stack.env["PGPASSWORD"]
        with_password = stack.database_url("optuna").replace("://innerlens@", f"://innerlens:{password}@")
        stores = Stores(with_password, stack.tracking_uri, stack.env)
    study_name = f"workers-{backend}-{tmp_path.name}"
    _tune(tmp_path, "--n-trials", "5", "--n-workers", "2", "--pruner", "none", "--study-name", study_name,
          "--fixed", f"{TINY_SELF_MODELING} max_epochs=3", stores=stores)
    study = optuna.load_study(study_name=study_name, storage=stores.optuna)
    ended = study.get_trials(states=ENDED_STATES)
    assert len(ended) == 5
    assert sorted(t.number for t in ended) == sorted({t.number for t in ended})
    assert len(study.trials) == 5  # one driver asks for every trial: none started beyond --n-trials
    for key, value in stores.env.items():
        monkeypatch.setenv(key, value)  # the server's credentials, for this process's client
    client = MlflowClient(stores.tracking)
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(int(r.data.params["trial_number"]) for r in children) == sorted(t.number for t in ended)
    assert {r.info.status for r in children} == {"FINISHED"}
    if backend == "postgresql":  # the storage URL's password is masked wherever the run records it
        import psycopg

        assert parent.data.params["storage"] == stores.optuna.replace(password, "***")
        with psycopg.connect(stack.database_url("mlflow"), password=password) as db:  # the server's own tables
            leaked = db.execute("SELECT key FROM params WHERE strpos(value, %s) > 0 UNION "
                                "SELECT key FROM tags WHERE strpos(value, %s) > 0", (password, password)).fetchall()
        assert leaked == []
        config_json = Path(client.download_artifacts(parent_id, "config.json", str(tmp_path))).read_text()
        assert "***@" in config_json and password not in config_json


def _kill_once_a_trial_runs(worker: subprocess.Popen, load: Callable[[], optuna.Study]) -> optuna.trial.FrozenTrial:
    """SIGKILL the worker's process group once its study has a RUNNING trial with an MLflow run; that trial."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(1)
        try:
            running = load().get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except (KeyError, FileNotFoundError):  # the study (or its journal) is not created yet
            continue
        if running and RUN_ATTR in running[0].user_attrs:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            return running[0]
    pytest.fail("the worker never started a trial")


def test_killed_trial_is_marked_failed_and_retried(tmp_path: Path) -> None:
    worker = _tune(tmp_path, "--n-trials", "2", "--heartbeat-interval", "1", "--pruner", "none",
                   "--fixed", f"{TINY_SELF_MODELING} max_epochs=100000 patience=0", wait=False)
    killed = _kill_once_a_trial_runs(worker, lambda: _study(tmp_path))
    time.sleep(4)  # past the grace period: the trial's heartbeat is stale
    _tune(tmp_path, "--n-trials", "2", "--heartbeat-interval", "1", "--pruner", "none", "--fixed", f"{TINY_SELF_MODELING} max_epochs=3")
    study = _study(tmp_path)
    assert study.trials[killed.number].state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert retries[0].params == killed.params
    client = MlflowClient(_sqlite_stores(tmp_path).tracking)
    assert client.get_run(killed.user_attrs[RUN_ATTR]).info.status == "FAILED"
    assert len(study.get_trials(states=ENDED_STATES)) == 2


def test_journal_study_fails_a_dead_workers_trial_instead_of_waiting_for_ever(tmp_path: Path) -> None:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    env = clean_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", MLFLOW_EXPERIMENT_NAME="tune",
                    INNERLENS_HOME=str(tmp_path))
    command = ["innerlens", "tune", "--family", "self_modeling", "--n-trials", "1", "--pruner", "none"]
    worker = subprocess.Popen([*command, "--fixed", f"{TINY_SELF_MODELING} max_epochs=100000 patience=0"], env=env,
                              cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = tmp_path / "mlruns" / "optuna" / "journal.log"
    killed = _kill_once_a_trial_runs(worker, lambda: optuna.load_study(
        study_name="tune-self_modeling", storage=JournalStorage(JournalFileBackend(str(journal)))))
    result = subprocess.run([*command, "--fixed", f"{TINY_SELF_MODELING} max_epochs=2"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 trial(s) whose worker died were marked FAIL" in result.stderr
    study = optuna.load_study(study_name="tune-self_modeling", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert study.trials[killed.number].state == optuna.trial.TrialState.FAIL
    assert len(study.get_trials(states=ENDED_STATES)) == 1  # the study still got its one trial
    assert MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(killed.user_attrs[RUN_ATTR]).info.status == "FAILED"


def run_broken(config: OppositeConfig, **options: object) -> RunResult:
    raise RuntimeError("diverged\nsecond line")


def test_a_study_whose_trials_always_fail_stops(local_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    broken = Tunable(OppositeConfig, run_broken, OPPOSITE.search)
    config = TuneConfig(n_trials=100, sampler="random", pruner="none", max_consecutive_failures=3)
    study = optuna.create_study(direction="maximize")
    with tracking.start_run(config, variant="broken") as parent, pytest.raises(StudyFailed) as stopped:
        optimize(config, broken, study, parent.run_id, _here(), progress=False)
    assert len(study.trials) == 3 and {t.state for t in study.trials} == {optuna.trial.TrialState.FAIL}
    assert "3 failed trials (3 in a row); last error: RuntimeError: diverged" in str(stopped.value)
    assert capsys.readouterr().err.count("failed: RuntimeError: diverged\n") == 3  # one line per failed trial


def test_a_configuration_error_in_a_trial_ends_the_study_in_one_line(local_store: str, tmp_path: Path) -> None:
    import mlflow

    space = tmp_path / "space.yaml"
    space.write_text("n_heads: {type: categorical, choices: [3, 5]}\n")  # never divides d_model 32
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    done = subprocess.run([str(Path(sys.executable).parent / "innerlens"), "tune", "--family", "self_modeling", "--n-trials", "3",
                           "--space", str(space), "--storage", storage, "--fixed", "d_model=32 max_epochs=1 p=23 samples=300"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "must divide" in done.stderr
    runs = mlflow.search_runs(experiment_names=["tests"], filter_string="tags.`innerlens.family` = 'tune'")
    assert list(runs["status"]) == ["FAILED"]
