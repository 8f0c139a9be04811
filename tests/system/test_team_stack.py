"""The team stack from deploy/stack: runs in PostgreSQL, artifacts in S3, basic auth in front."""
from __future__ import annotations

import base64
import io
import subprocess
import urllib.error
import urllib.request

import boto3
import pandas as pd
import psycopg
from support import ROOT, TINY, MlflowRun, TeamStack, clean_env


def _search_experiments(stack: TeamStack, authorization: str | None) -> int:
    request = urllib.request.Request(
        f"{stack.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1",
        headers={"Authorization": authorization} if authorization else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_requests_without_valid_credentials_are_refused(team_stack: TeamStack) -> None:
    assert _search_experiments(team_stack, None) == 401
    assert _search_experiments(team_stack, _basic("admin", "not-the-password")) == 401
    assert _search_experiments(team_stack, _basic("admin", team_stack.env["MLFLOW_TRACKING_PASSWORD"])) == 200


def test_a_run_without_credentials_fails_in_one_line(team_stack: TeamStack) -> None:
    env = clean_env(MLFLOW_TRACKING_URI=team_stack.tracking_uri)  # no MLFLOW_TRACKING_USERNAME/PASSWORD
    result = subprocess.run(["innerlens", "self-modeling", "--max-epochs", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"innerlens: error: tracking server {team_stack.tracking_uri} refused the credentials: set MLFLOW_TRACKING_USERNAME "
        "and MLFLOW_TRACKING_PASSWORD (`deploy/stack env` prints them)"
    ]


def test_status_reports_every_service(team_stack: TeamStack) -> None:
    # Only the state directory: the ports come from what `up` recorded there.
    result = subprocess.run([str(ROOT / "deploy" / "stack"), "status"], capture_output=True, text=True, timeout=60,
                            env=clean_env(INNERLENS_STACK_DIR=str(team_stack.directory)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [["postgres", "up"], ["s3", "up"], ["mlflow", "up"]]


def test_family_run_lands_in_postgres_and_s3(team_stack: TeamStack, mlflow_run: MlflowRun) -> None:
    params = {**TINY, "max_epochs": "3", "llc_every": "0"}
    mlflow_run("self_modeling", params, experiment="stack", env=clean_env(**team_stack.env), timeout=600)

    with psycopg.connect(team_stack.database_url("mlflow"), password=team_stack.env["PGPASSWORD"]) as db:
        run_id, status, artifact_uri = db.execute(
            "SELECT r.run_uuid, r.status, r.artifact_uri FROM runs r JOIN experiments e USING (experiment_id) "
            "WHERE e.name = 'stack' ORDER BY r.start_time DESC LIMIT 1").fetchone()
        metric_rows = db.execute("SELECT count(*) FROM metrics WHERE run_uuid = %s", (run_id,)).fetchone()[0]
        epochs = db.execute("SELECT max(step) FROM metrics WHERE run_uuid = %s AND key = 'val/acc'", (run_id,)).fetchone()[0]
        stored = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = %s", (run_id,)).fetchall())
        stored |= dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = %s", (run_id,)).fetchall())
    assert status == "FINISHED" and epochs == 3
    assert stored["innerlens.family"] == "self_modeling" and stored["max_epochs"] == "3"
    secrets = (team_stack.env["MLFLOW_TRACKING_PASSWORD"], team_stack.env["PGPASSWORD"])
    assert not any(secret in value for value in stored.values() for secret in secrets)
    assert artifact_uri.startswith("mlflow-artifacts:/")  # proxied: clients need no S3 credentials

    s3 = boto3.client("s3", endpoint_url=team_stack.env["INNERLENS_S3_ENDPOINT"],
                      aws_access_key_id="innerlens-dev", aws_secret_access_key="innerlens-dev")
    bucket = team_stack.env["INNERLENS_S3_BUCKET"]
    prefix = "mlartifacts/" + artifact_uri.removeprefix("mlflow-artifacts:/") + "/"
    keys = {o["Key"].removeprefix(prefix) for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    assert {"checkpoints/last.pt", "checkpoints/best.pt", "config.json", "history.parquet", "figures/loss.png"} <= keys
    history = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=bucket, Key=prefix + "history.parquet")["Body"].read()))
    assert len(history) == metric_rows  # every logged value is in PostgreSQL exactly once


def test_workers_get_a_least_privilege_user_not_the_admin(team_stack: TeamStack) -> None:
    """`deploy/stack worker-env EXPERIMENT`: a user that may write runs there and may not manage users."""
    import os

    from mlflow.tracking import MlflowClient

    result = subprocess.run([str(ROOT / "deploy" / "stack"), "worker-env", "workers"], capture_output=True, text=True,
                            timeout=120, env=clean_env(INNERLENS_STACK_DIR=str(team_stack.directory)))
    assert result.returncode == 0, result.stderr
    settings = dict(line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines())
    assert settings["MLFLOW_TRACKING_USERNAME"] == "innerlens-worker"
    password = settings["MLFLOW_TRACKING_PASSWORD"]
    assert password != team_stack.env["MLFLOW_TRACKING_PASSWORD"]
    again = subprocess.run([str(ROOT / "deploy" / "stack"), "worker-env", "workers"], capture_output=True, text=True,
                           timeout=120, env=clean_env(INNERLENS_STACK_DIR=str(team_stack.directory)))
    assert again.returncode == 0 and again.stdout == result.stdout  # idempotent: one user, one password
    worker = _basic("innerlens-worker", password)
    assert _search_experiments(team_stack, worker) == 200
    create_user = urllib.request.Request(f"{team_stack.tracking_uri}/api/2.0/mlflow/users/create", method="POST",
                                         data=b'{"username": "mallory", "password": "mallory-password"}',
                                         headers={"Authorization": worker, "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(create_user, timeout=30)
        status = 200
    except urllib.error.HTTPError as error:
        status = error.code
    assert status == 403
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME="innerlens-worker", MLFLOW_TRACKING_PASSWORD=password)
    try:
        client = MlflowClient(team_stack.tracking_uri)
        experiment = client.get_experiment_by_name("workers").experiment_id
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "val/acc", 0.5)
        assert client.get_run(run.info.run_id).data.metrics == {"val/acc": 0.5}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_down_never_stops_a_process_that_only_mentions_mlflow(tmp_path) -> None:
    """A reused pid whose command line says "mlflow" somewhere is not the server `up` started."""
    import os
    import sys

    directory = tmp_path / "stack"
    directory.mkdir(mode=0o700)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "notes-about-mlflow server"])
    try:
        (directory / "mlflow.pid").write_text(str(bystander.pid))
        result = subprocess.run([str(ROOT / "deploy" / "stack"), "down"], capture_output=True, text=True, timeout=60,
                                env=clean_env(INNERLENS_STACK_DIR=str(directory), INNERLENS_PG_URL="postgresql://u@127.0.0.1:9"))
        assert result.returncode == 0, result.stderr
        assert bystander.poll() is None  # still running
    finally:
        bystander.kill()
    assert os.path.exists(directory / "secrets.env")


def test_the_stack_refuses_a_state_directory_others_can_write(tmp_path) -> None:
    """Its files are sourced as code: a group- or world-writable directory would run a stranger's."""
    directory = tmp_path / "stack"
    directory.mkdir()
    directory.chmod(0o777)
    result = subprocess.run([str(ROOT / "deploy" / "stack"), "status"], capture_output=True, text=True, timeout=60,
                            env=clean_env(INNERLENS_STACK_DIR=str(directory)))
    assert result.returncode == 1 and "only it can write" in result.stderr and result.stderr.count("\n") == 1
