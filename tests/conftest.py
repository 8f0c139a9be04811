"""Shared fixtures: an isolated local store per test, a real MLflow server, tiny configs."""
from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]

# One cache of built-in models (the trained tiny LM) for every test, including those that move
# INNERLENS_HOME: it is trained once per checkout, not once per test.
os.environ.setdefault("INNERLENS_MODEL_CACHE", str(ROOT / "mlruns" / "models"))
# Subprocesses (`mlflow run`, `mlflow server`, `python entrypoints/...`) use this interpreter's env.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

# Small enough for CI's two cores, large enough that every code path runs.
TINY = {
    "samples": "400",
    "p": "23",
    "n_layers": "3",
    "d_model": "32",
    "n_heads": "4",
    "d_mlp": "64",
    "batch_size": "64",
    "max_epochs": "3",
    "llc_every": "2",
    "llc_draws": "5",
    "llc_chains": "2",
    "llc_burnin": "0",
    "lr": "0.003",
}


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with its schema migrated (a second and a half each time), made once."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> str:
    """A fresh SQLite store (with artifacts beside it) for in-process runs."""
    import mlflow

    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tests")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("tests")  # created here so its artifacts land in tmp_path, not the cwd
    return uri


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on a free loopback port, started by the project's own script."""
    directory = tmp_path_factory.mktemp("server")
    script = ROOT / "deploy" / "local-server"
    subprocess.run([str(script), "start", str(directory), str(_free_port())], check=True, timeout=120)
    try:
        yield (directory / "server.url").read_text().strip()
    finally:
        subprocess.run([str(script), "stop", str(directory)], check=False, timeout=60)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how large the bad-input suite was and how much of it passed."""
    def cases(outcome: str) -> int:
        return sum(1 for report in terminalreporter.stats.get(outcome, [])
                   if getattr(report, "when", "call") == "call" and report.nodeid.startswith("tests/test_bad_input.py"))

    ran = cases("passed") + cases("failed")
    if ran:
        terminalreporter.write_line(f"bad-input suite: {ran} cases across the entry points, {cases('passed')} passed")


def tiny_args(**overrides: str) -> list[str]:
    values = {**TINY, **overrides}
    return [arg for key, value in values.items() for arg in (f"--{key.replace('_', '-')}", value)]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(extra)
    return env


@dataclass(frozen=True)
class TeamStack:
    """A running ``deploy/stack``: its state directory and the client settings it wrote."""

    directory: Path
    env: dict[str, str]

    @property
    def tracking_uri(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    def database_url(self, name: str) -> str:
        """A libpq URL of one of the stack's databases (the password comes from PGPASSWORD)."""
        return self.env["INNERLENS_OPTUNA_STORAGE"].rsplit("/", 1)[0] + f"/{name}"


def _client_env(path: Path) -> dict[str, str]:
    pairs = [word for line in path.read_text().splitlines() for word in shlex.split(line)[1:]]
    return dict(pair.split("=", 1) for pair in pairs)


@pytest.fixture(scope="session")
def team_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamStack]:
    """PostgreSQL + moto S3 + an authenticated mlflow server, brought up by ``deploy/stack`` on free ports."""
    directory = tmp_path_factory.mktemp("stack")
    env = clean_env(
        INNERLENS_STACK_DIR=str(directory),
        INNERLENS_MLFLOW_PORT=str(_free_port()),
        INNERLENS_PG_PORT=str(_free_port()),
        INNERLENS_S3_PORT=str(_free_port()),
    )
    script = ROOT / "deploy" / "stack"
    up = subprocess.run([str(script), "up"], env=env, capture_output=True, text=True, timeout=240)
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        yield TeamStack(directory, _client_env(directory / "client.env"))
    finally:
        subprocess.run([str(script), "down"], env=clean_env(INNERLENS_STACK_DIR=str(directory)), check=False, timeout=120)
        datadir = directory / "postgres.datadir"
        if datadir.exists():
            shutil.rmtree(datadir.read_text().strip(), ignore_errors=True)
