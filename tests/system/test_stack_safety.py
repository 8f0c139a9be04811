"""deploy/stack refuses what would make a shared host unsafe, before starting anything."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _up(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("INNERLENS_", "MLFLOW_"))}
    environment.update({"INNERLENS_STACK_DIR": str(tmp_path / "stack"), **env})
    return subprocess.run([str(ROOT / "deploy" / "stack"), "up"], env=environment, capture_output=True, text=True, timeout=120)


def test_a_non_loopback_host_with_the_in_memory_s3_is_refused(tmp_path: Path) -> None:
    done = _up(tmp_path, INNERLENS_STACK_HOST="0.0.0.0", INNERLENS_PG_URL="postgresql://u@127.0.0.1:9")
    assert done.returncode == 1 and "INNERLENS_S3_ENDPOINT" in done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert not (tmp_path / "stack" / "s3.pid").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the root-only data path; as another user the cluster lives in the stack dir")
@pytest.mark.parametrize("planted", ["symlink", "foreign directory"])
def test_a_planted_postgres_parent_is_refused_as_root(tmp_path: Path, planted: str) -> None:
    parent, target = tmp_path / "innerlens-postgres", tmp_path / "attacker"
    target.mkdir()
    if planted == "symlink":
        parent.symlink_to(target)
    else:
        parent.mkdir()
        os.chown(parent, 65534, 65534)
    done = _up(tmp_path, INNERLENS_PG_PARENT=str(parent))
    assert done.returncode == 1 and "refusing" in done.stderr, done.stderr
    assert list(target.iterdir()) == []  # nothing was written through it


def _stack(tmp_path: Path, command: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("INNERLENS_", "MLFLOW_", "PG"))}
    environment.update({"INNERLENS_STACK_DIR": str(tmp_path / "stack"), **env})
    return subprocess.run([str(ROOT / "deploy" / "stack"), command], env=environment, capture_output=True, text=True, timeout=120)


def test_a_stale_pid_file_never_stops_an_unrelated_process(tmp_path: Path) -> None:
    (tmp_path / "stack").mkdir()
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        for name in ("mlflow", "s3"):
            (tmp_path / "stack" / f"{name}.pid").write_text(str(bystander.pid))  # the pid was reused by `sleep`
        done = _stack(tmp_path, "down", INNERLENS_PG_URL="postgresql://u@127.0.0.1:9")
        assert done.returncode == 0, done.stderr
        assert bystander.poll() is None  # still running
        assert not (tmp_path / "stack" / "mlflow.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_stack_files_are_private_and_urls_carry_no_password(team_stack) -> None:
    for name in ("secrets.env", "client.env", "stack.conf", "basic_auth.ini"):
        assert (team_stack.directory / name).stat().st_mode & 0o077 == 0, name
    client_env = (team_stack.directory / "client.env").read_text()
    assert team_stack.env["PGPASSWORD"] and "@" in team_stack.env["INNERLENS_TUNE_STORAGE"]
    assert not any(team_stack.env["PGPASSWORD"] in url for key, url in team_stack.env.items() if key.endswith("STORAGE"))
    assert f"PGPASSWORD={team_stack.env['PGPASSWORD']}" in client_env.replace("'", "")


def test_a_password_in_the_pg_url_stays_out_of_argv(team_stack, tmp_path: Path) -> None:
    """The user gives the URL with its password; psql must get it through PGPASSWORD, never argv."""
    import shutil

    real = shutil.which("psql") or sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))[-1]
    probe = tmp_path / "bin"
    probe.mkdir()
    (probe / "psql").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {tmp_path}/argv.log\nexec {real} "$@"\n')
    (probe / "psql").chmod(0o755)
    password = team_stack.env["PGPASSWORD"]
    url = team_stack.database_url("postgres").rsplit("/", 1)[0].replace("://innerlens@", f"://innerlens:{password}@")
    done = _stack(tmp_path, "status", INNERLENS_PG_URL=url, PATH=f"{probe}:{os.environ['PATH']}")
    assert "postgres  up" in done.stdout, done.stdout + done.stderr  # authenticated through PGPASSWORD
    logged = (tmp_path / "argv.log").read_text()
    assert "postgres" in logged and password not in logged


def test_local_server_stop_leaves_a_process_that_reused_its_pid_alone(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        (tmp_path / "server.pid").write_text(str(bystander.pid))
        done = subprocess.run([str(ROOT / "deploy" / "local-server"), "stop", str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "not running" in done.stdout
        assert bystander.poll() is None and not (tmp_path / "server.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()
