"""Shared fixtures: an isolated local store per test, a real MLflow server, tiny configs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from support import ROOT, MlflowRun, TeamStack, clean_env, client_env, free_port

TIERS = ("unit", "families", "system")  # tests/<tier>/: pure; in-process on a local store; `mlflow run`, servers, faults
UNIT_BUDGET_S = 120.0  # `make test-fast`: the tier a change is checked against first
NO_STORE = "unit-tier-has-no-tracking-store://"  # any MLflow call in a unit test fails on this scheme

# One cache of built-in models (the trained tiny LM) for every test, including those that move
# INNERLENS_HOME: it is trained once per checkout, not once per test.
os.environ.setdefault("INNERLENS_MODEL_CACHE", str(ROOT / "mlruns" / "models"))
# Subprocesses (`mlflow run`, `mlflow server`, `python entrypoints/...`) use this interpreter's env.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


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


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on a free loopback port, started by the project's own script."""
    directory = tmp_path_factory.mktemp("server")
    script = ROOT / "deploy" / "local-server"
    subprocess.run([str(script), "start", str(directory), str(free_port())], check=True, timeout=120)
    try:
        yield (directory / "server.url").read_text().strip()
    finally:
        subprocess.run([str(script), "stop", str(directory)], check=False, timeout=60)


@pytest.fixture
def mlflow_run() -> MlflowRun:
    """``mlflow run`` of this checkout's entry point with ``-P`` params; fails the test on a non-zero exit."""

    def run(entry: str, params: dict[str, str], *, experiment: str, env: dict[str, str],
            timeout: int = 900) -> subprocess.CompletedProcess:
        args = ["mlflow", "run", str(ROOT), "-e", entry, "--env-manager", "local", "--experiment-name", experiment]
        for key, value in params.items():
            args += ["-P", f"{key}={value}"]
        result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries its tier's marker (``pytest -m unit``), from the folder it lives in."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(autouse=True)
def _unit_tests_reach_no_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit tier is the one that needs no store: a unit test that reaches MLflow fails, so a test
    that needs one has to live in tests/families or tests/system."""
    if request.node.get_closest_marker("unit"):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", NO_STORE)


def _tier_seconds(terminalreporter: pytest.TerminalReporter) -> dict[str, float]:
    seconds = dict.fromkeys(TIERS, 0.0)
    for reports in terminalreporter.stats.values():
        for report in reports:
            tier = getattr(report, "nodeid", "").split("/")[1:2]
            if tier and tier[0] in seconds:
                seconds[tier[0]] += getattr(report, "duration", 0.0)
    return seconds


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Each tier's time (the unit tier against its budget), and how large the bad-input suite was."""
    seconds = _tier_seconds(terminalreporter)
    for tier, spent in seconds.items():
        if spent:
            budget = f" of its {UNIT_BUDGET_S:.0f} s budget{' (OVER BUDGET)' if spent > UNIT_BUDGET_S else ''}" if tier == "unit" else ""
            terminalreporter.write_line(f"tier {tier}: {spent:.0f} s{budget}")

    def cases(outcome: str) -> int:
        return sum(1 for report in terminalreporter.stats.get(outcome, [])
                   if getattr(report, "when", "call") == "call" and report.nodeid.endswith("test_bad_input.py") or "test_bad_input.py::" in report.nodeid)

    ran = cases("passed") + cases("failed")
    if ran:
        terminalreporter.write_line(f"bad-input suite: {ran} cases across the entry points, {cases('passed')} passed")


@pytest.fixture(scope="session")
def team_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamStack]:
    """PostgreSQL + moto S3 + an authenticated mlflow server, brought up by ``deploy/stack`` on free ports."""
    directory = tmp_path_factory.mktemp("stack")
    env = clean_env(
        INNERLENS_STACK_DIR=str(directory),
        INNERLENS_MLFLOW_PORT=str(free_port()),
        INNERLENS_PG_PORT=str(free_port()),
        INNERLENS_S3_PORT=str(free_port()),
    )
    script = ROOT / "deploy" / "stack"
    up = subprocess.run([str(script), "up"], env=env, capture_output=True, text=True, timeout=240)
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        yield TeamStack(directory, client_env(directory / "client.env"))
    finally:
        subprocess.run([str(script), "down"], env=clean_env(INNERLENS_STACK_DIR=str(directory)), check=False, timeout=120)
        datadir = directory / "postgres.datadir"
        if datadir.exists():
            shutil.rmtree(datadir.read_text().strip(), ignore_errors=True)
