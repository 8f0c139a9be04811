"""Studies on a real two-node Ray cluster on this machine: tune trials and comparison runs as Ray
tasks, recorded exactly as the local executor records them, and a run whose worker is SIGKILLed
finishing in its own MLflow run after Ray retries it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from support import ROOT, TINY_LLC, TINY_MODEL

from innerlens import tracking
from innerlens.configs.tune import TuneConfig
from innerlens.drivers.ray_executor import is_local_store
from innerlens.drivers.self_modeling_comparison import SelfModelingComparisonConfig, run_comparison, run_summaries
from innerlens.drivers.tune import run as tune
from innerlens.errors import ConfigError
from innerlens.tracking import child_runs

TINY = dict(**TINY_MODEL, **TINY_LLC, max_epochs=2)
NODE_MEMORY = 80 * 2**20  # object store per node: tasks pass configs and run ids only


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A head and a second node (one CPU each) on this machine; stopped in a ``finally``."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, include_dashboard=False, object_store_memory=NODE_MEMORY))
    try:
        cluster.add_node(num_cpus=1, object_store_memory=NODE_MEMORY)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        cluster.shutdown()


def _children(parent_id: str) -> list[mlflow.entities.Run]:
    client = MlflowClient()
    return child_runs(client, client.get_run(parent_id))


def test_a_grid_on_ray_equals_the_local_executor_metric_for_metric(local_store: str, ray_cluster: str) -> None:
    tables, tags = {}, {}
    for executor in ("local", "ray"):
        config = SelfModelingComparisonConfig(
            variants=("baseline", "middle_layer"), seeds=(0, 1), self_model_weights=(1.0,), workers=0 if executor == "local" else None,
            executor=executor, ray_address=ray_cluster if executor == "ray" else None, gamma_sensitivity=False, **TINY)
        parent = run_comparison(config, progress=False)
        tables[executor] = run_summaries(parent).set_index(["group", "seed", "key"])["value"].sort_index()
        tags[executor] = {run.data.tags[tracking.TAG_TASK]: run.data.tags for run in _children(parent)}
    assert list(tables["local"].index) == list(tables["ray"].index)
    assert tables["ray"].to_numpy() == pytest.approx(tables["local"].to_numpy(), rel=1e-6, abs=1e-9)
    assert tags["local"].keys() == tags["ray"].keys() and len(tags["ray"]) == 4
    for task, local in tags["local"].items():
        ray = dict(tags["ray"][task])
        assert tracking.TAG_RAY_NODE not in local and ray.pop(tracking.TAG_RAY_NODE)
        assert {k: v for k, v in ray.items() if k.startswith("innerlens.")} == {k: v for k, v in local.items() if k.startswith("innerlens.")}


def test_tune_on_ray_runs_exactly_n_trials_on_both_nodes(local_store: str, ray_cluster: str, tmp_path: Path) -> None:
    config = TuneConfig(family="self_modeling", n_trials=4, storage=f"sqlite:///{tmp_path / 'optuna.db'}", pruner="none",
                        sampler="random", register=False, executor="ray", ray_address=ray_cluster, heartbeat_interval=1,
                        fixed="max_epochs=2 samples=400 p=23 n_layers=3 d_model=32 n_heads=4 d_mlp=64 measure_llc=false device=cpu")
    parent = tune(config, progress=False)
    import sqlite3

    import optuna

    study = optuna.load_study(study_name=config.resolved_study_name, storage=config.storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    # the driver beats for the trials in flight (the workers run no study.optimize), so a dead driver's trials go stale
    with sqlite3.connect(tmp_path / "optuna.db") as db:
        beaten = {row[0] for row in db.execute("SELECT trial_id FROM trial_heartbeats")}
    assert beaten and beaten <= {t._trial_id for t in study.trials}
    children = _children(parent)
    assert len(children) == 4 and {run.info.status for run in children} == {"FINISHED"}
    assert {run.data.tags["innerlens.trial"] for run in children} == {"0", "1", "2", "3"}
    assert len({run.data.tags[tracking.TAG_RAY_NODE] for run in children}) == 2  # both nodes ran trials
    for trial in study.trials:  # each trial's value is its own run's best validation accuracy
        run = next(r for r in children if r.data.tags["innerlens.trial"] == str(trial.number))
        history = [m.value for m in MlflowClient().get_metric_history(run.info.run_id, "val/acc")]
        assert trial.value == pytest.approx(max(history))


def test_tune_on_ray_stops_asking_for_trials_at_its_timeout(local_store: str, ray_cluster: str, tmp_path: Path) -> None:
    """--timeout on Ray: no trial is asked after it; those running finish."""
    config = TuneConfig(family="self_modeling", n_trials=40, storage=f"sqlite:///{tmp_path / 'optuna.db'}", pruner="none",
                        sampler="random", register=False, executor="ray", ray_address=ray_cluster, timeout=1.0,
                        fixed="max_epochs=1 samples=200 p=23 n_layers=3 d_model=32 n_heads=4 d_mlp=64 measure_llc=false device=cpu")
    tune(config, progress=False)
    import optuna

    trials = optuna.load_study(study_name=config.resolved_study_name, storage=config.storage).trials
    assert 1 <= len(trials) < 40 and {t.state.name for t in trials} == {"COMPLETE"}  # stopped asking; none left running


def test_a_journal_file_storage_is_refused_for_a_cluster_beyond_this_machine() -> None:
    assert is_local_store("sqlite:////tmp/x.db") and is_local_store("/tmp/mlruns") and is_local_store("file:///tmp/m")
    assert not is_local_store("postgresql://u@db/optuna") and not is_local_store("http://mlflow:5000")
    with pytest.raises(ConfigError, match="--n-workers"):
        TuneConfig(executor="ray", n_workers=2)
    with pytest.raises(ConfigError, match="--executor ray"):
        SelfModelingComparisonConfig(gpus_per_run=0.25)


def _ray_task_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::_run_task"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_a_run_whose_worker_is_killed_finishes_in_its_own_run_without_gaps_or_duplicates(
    local_store: str, ray_cluster: str, tmp_path: Path
) -> None:
    epochs = 40
    options = {**TINY, "max_epochs": epochs, "measure_llc": False}
    command = [sys.executable, "-c", "from innerlens.cli import main; main()", "self-modeling-comparison",
               "--variants", "baseline", "--seeds", "0", "--no-gamma-sensitivity", "--executor", "ray",
               "--ray-address", ray_cluster, "--max-retries", "2",
               *[arg for k, v in options.items() for arg in (f"--{k.replace('_', '-')}", str(v))]]
    env = {**os.environ, "MLFLOW_TRACKING_URI": local_store}
    study = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        child, deadline = None, time.time() + 300
        while time.time() < deadline and study.poll() is None:  # wait until the run has logged a few epochs
            runs = MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()],
                                              filter_string=f"tags.`{tracking.TAG_TASK}` = 'baseline w=0 seed 0'")
            if runs and len(MlflowClient().get_metric_history(runs[0].info.run_id, "val/acc")) >= 5:
                child = runs[0]
                break
            time.sleep(0.5)
        assert child is not None, f"the run never got going: {study.communicate()[0][-2000:] if study.poll() is not None else ''}"
        pids = _ray_task_pids()
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
        output, _ = study.communicate(timeout=600)
    finally:
        if study.poll() is None:
            study.kill()
    assert study.returncode == 0, output[-2000:]
    runs = _children(child.data.tags["mlflow.parentRunId"])
    assert [run.info.run_id for run in runs] == [child.info.run_id]  # the retry continued the same run
    assert MlflowClient().get_run(child.info.run_id).info.status == "FINISHED"
    for key in ("val/acc", "train/loss"):
        steps = [m.step for m in MlflowClient().get_metric_history(child.info.run_id, key)]
        assert sorted(steps) == list(range(1, epochs + 1)), key  # no gap, no duplicate


def test_sigterm_to_a_ray_study_ends_its_runs_killed_and_exits_143(local_store: str, ray_cluster: str) -> None:
    """What Slurm or Kubernetes does to the driver: the task's run and the study's run end KILLED."""
    # Far more epochs than the signal takes to arrive, even on a loaded machine where the first val/acc
    # shows late (400 could finish first); an uncancelled run still ends within communicate's 300 s.
    options = {**TINY, "max_epochs": 4000, "measure_llc": False}
    command = [sys.executable, "-c", "from innerlens.cli import main; main()", "self-modeling-comparison",
               "--variants", "baseline", "--seeds", "0", "--no-gamma-sensitivity", "--executor", "ray",
               "--ray-address", ray_cluster, *[arg for k, v in options.items() for arg in (f"--{k.replace('_', '-')}", str(v))]]
    study = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "MLFLOW_TRACKING_URI": local_store},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        child, deadline = None, time.time() + 300
        while time.time() < deadline and study.poll() is None:
            runs = MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()],
                                              filter_string=f"tags.`{tracking.TAG_TASK}` = 'baseline w=0 seed 0' and attributes.status = 'RUNNING'")
            if runs and MlflowClient().get_metric_history(runs[0].info.run_id, "val/acc"):
                child = runs[0]
                break
            time.sleep(0.5)
        assert child is not None, study.communicate()[0][-2000:] if study.poll() is not None else "never trained"
        study.send_signal(signal.SIGTERM)
        output, _ = study.communicate(timeout=300)
    finally:
        if study.poll() is None:
            study.kill()
    assert study.returncode == 143, output[-2000:]
    client = MlflowClient()
    assert client.get_run(child.info.run_id).info.status == "KILLED"
    assert client.get_run(child.data.tags["mlflow.parentRunId"]).info.status == "KILLED"


def test_the_deployment_files_are_well_formed_and_match_the_readme() -> None:
    import yaml

    manifest = next(d for d in yaml.safe_load_all((ROOT / "deploy" / "ray" / "raycluster.yaml").read_text()) if d["kind"] == "RayCluster")
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayCluster"
    groups = [manifest["spec"]["headGroupSpec"], *manifest["spec"]["workerGroupSpecs"]]
    for group in groups:  # every pod gets the team stack's settings
        for container in group["template"]["spec"]["containers"]:
            assert {"secretRef": {"name": "innerlens-stack"}} in container["envFrom"]
    image = (ROOT / "deploy" / "ray" / "Containerfile").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "torch==2.13.0" in image and "pip install torch==2.13.0" in readme
    assert "-e '.[ray]'" in image and "pip install -e '.[ray]'" in readme
    script = ROOT / "deploy" / "ray" / "slurm.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    _assert_the_recipes_lock_the_cluster(manifest, image, script.read_text())
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def _assert_the_recipes_lock_the_cluster(manifest: dict, image: str, slurm: str) -> None:
    """Token authentication, no root, no open ports, a pinned image, one job's cluster on Slurm."""
    import yaml

    documents = list(yaml.safe_load_all((ROOT / "deploy" / "ray" / "raycluster.yaml").read_text()))
    assert manifest["spec"]["authOptions"] == {"mode": "token"}
    for group in [manifest["spec"]["headGroupSpec"], *manifest["spec"]["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert 10001 not in [port["containerPort"] for port in container.get("ports", [])]  # no Ray client port
            for probe in (container["readinessProbe"], container["livenessProbe"]):  # explicit, with what the image has
                assert "wget" in probe["exec"]["command"][-1] and "local_raylet_healthz" in probe["exec"]["command"][-1]
    policy = next(d for d in documents if d["kind"] == "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"ray.io/cluster": manifest["metadata"]["name"]}
    constraints = (ROOT / "deploy" / "ray" / "constraints.txt").read_text()
    assert f"ray=={manifest['spec']['rayVersion']}" in constraints.split()
    assert "@sha256:" in image.splitlines()[[line.startswith("FROM") for line in image.splitlines()].index(True)]
    assert "USER 1000" in image and "wget" in image and "ray[default]" in image and "INNERLENS_GIT_COMMIT" in image
    assert "RAY_AUTH_MODE=token" in slurm and "umask 077" in slurm and "6379" not in slurm
    assert "ray stop" not in slurm and "--signal=B:TERM@" in slurm and "deadline" in slurm


def test_the_dependency_floors_are_real() -> None:
    """Every dependency names a version floor the code was tested with, not an open range."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["ray"]]:
        assert ">=" in requirement or "==" in requirement, requirement
    optuna = next(r for r in project["dependencies"] if r.startswith("optuna"))
    assert optuna.startswith("optuna>=5")  # RetryHeartbeatStaleTrialCallback (tune/objective.py) is Optuna 5's


def test_a_worker_that_cannot_reach_the_tracking_server_fails_the_study_in_one_line(local_store: str, ray_cluster: str) -> None:
    from innerlens.drivers.ray_executor import RayExecutor

    executor = RayExecutor(ray_cluster, 1.0, 0.0, 0, progress=False)
    executor.start()  # the driver and its workers reach the test's store
    try:
        with pytest.raises(ConfigError) as raised:
            executor._check_workers_reach("http://127.0.0.1:9")  # nothing listens on the discard port
    finally:
        executor.close()
    message = str(raised.value)
    assert "\n" not in message and "cannot reach the tracking server http://127.0.0.1:9" in message
