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
