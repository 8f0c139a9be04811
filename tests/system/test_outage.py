"""A tracking server that goes away mid-run loses nothing: calls are spooled and delivered in order."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from support import ROOT, clean_env, free_port, tiny_args

SERVER = str(ROOT / "deploy" / "local-server")


class Server:
    """A local-server we may stop and start again on the same port and database."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, str(free_port())
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        subprocess.run([SERVER, "start", str(self.directory), self.port], check=True, timeout=120, capture_output=True)

    def stop(self) -> None:
        subprocess.run([SERVER, "stop", str(self.directory)], check=True, timeout=60, capture_output=True)
        time.sleep(1)  # the workers are gone, so the port refuses connections


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    started = Server(tmp_path / "server")
    started.start()
    try:
        yield started
    finally:
        started.stop()


def _train(tmp_path: Path, server: Server, epochs: int, **env: str) -> subprocess.Popen:
    """Start a run whose stderr (progress bars and outage notes) goes to ``tmp_path/train.log``."""
    args = ["innerlens", "self-modeling", *tiny_args(max_epochs=str(epochs), patience="0", llc_every="0", checkpoint_interval="1")]
    with open(tmp_path / "train.log", "w") as log:
        return subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log,
                                env=clean_env(MLFLOW_TRACKING_URI=server.url, MLFLOW_EXPERIMENT_NAME="outage",
                                              INNERLENS_HOME=str(tmp_path), **env))


def _log(tmp_path: Path) -> str:
    return (tmp_path / "train.log").read_text()[-3000:]


def _wait_for_step(client: MlflowClient, process: subprocess.Popen, step: int) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before the outage began"
        experiment = client.get_experiment_by_name("outage")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and max((m.step for m in client.get_metric_history(runs[0].info.run_id, "val/acc")), default=0) >= step:
            return runs[0].info.run_id
        time.sleep(0.2)
    pytest.fail(f"no run reached step {step}")


def _assert_nothing_lost(client: MlflowClient, run_id: str, epochs: int, tmp_path: Path) -> None:
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    history = pd.read_parquet(client.download_artifacts(run_id, "history.parquet", str(tmp_path)))
    assert history["step"].max() == epochs
    for key, expected in history.groupby("key"):
        logged = client.get_metric_history(run_id, key)
        steps = [m.step for m in logged]
        assert steps == sorted(steps) and len(steps) == len(set(steps)), f"{key}: out of order or duplicated"
        assert steps == expected["step"].tolist(), f"{key}: steps lost"
        assert [m.value for m in logged] == pytest.approx(expected["value"].tolist()), key
    artifacts = {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    assert {"checkpoints/last.pt", "checkpoints/best.pt"} <= artifacts


def test_server_down_for_30_s_mid_run_loses_no_metric(server: Server, tmp_path: Path) -> None:
    client = MlflowClient(server.url)
    epochs = 1000  # about 50 s of training: it goes on through the outage
    training = _train(tmp_path, server, epochs)
    run_id = _wait_for_step(client, training, 10)
    server.stop()
    time.sleep(30)
    assert training.poll() is None, "training must not stop when the server does"
    server.start()
    assert training.wait(timeout=600) == 0, _log(tmp_path)
    stderr = (tmp_path / "train.log").read_text()
    assert "tracking server unreachable" in stderr and "tracking server is back" in stderr, stderr[-2000:]
    _assert_nothing_lost(client, run_id, epochs, tmp_path)
    assert not (tmp_path / "mlruns" / "spool" / run_id).exists()  # delivered, then cleaned up


def test_spool_outlives_the_run_and_innerlens_sync_delivers_it(server: Server, tmp_path: Path) -> None:
    client = MlflowClient(server.url)
    epochs = 120
    training = _train(tmp_path, server, epochs, INNERLENS_OUTAGE_WAIT_S="2")
    run_id = _wait_for_step(client, training, 5)
    server.stop()
    assert training.wait(timeout=600) == 0, _log(tmp_path)  # training finishes; its calls wait in the spool
    assert "innerlens sync" in _log(tmp_path)
    spool = tmp_path / "mlruns" / "spool" / run_id
    assert (spool / "journal.jsonl").exists()

    env = clean_env(INNERLENS_HOME=str(tmp_path))
    refused = subprocess.run(["innerlens", "sync"], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "still waiting" in refused.stdout  # still down: nothing lost, nothing sent
    server.start()
    synced = subprocess.run(["innerlens", "sync"], env=env, capture_output=True, text=True, timeout=300)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert f"run {run_id}: delivered" in synced.stdout
    _assert_nothing_lost(client, run_id, epochs, tmp_path)
    again = subprocess.run(["innerlens", "sync"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to sync" in again.stdout


def test_a_server_that_never_answers_is_one_line_after_a_notice(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Accepts the connection, then says nothing: the pre-flight gives up after its own short timeout, once."""
    import socket

    from mlflow.tracking import MlflowClient as Client

    from innerlens import tracking
    from innerlens.errors import ConfigError

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes connections; nobody ever reads or answers
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setattr(tracking.preflight, "PREFLIGHT_TIMEOUT_S", 4)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")  # the run's own setting: the pre-flight does not wait that long
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        with pytest.raises(ConfigError, match="is unreachable"):
            tracking.check_tracking_store(Client(uri))
    assert f"contacting tracking server {uri}" in capsys.readouterr().err
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "120"  # restored after the pre-flight
