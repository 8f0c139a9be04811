"""deploy/stack refuses what would make a shared host unsafe, before starting anything."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
