"""innerlens sync against a store that refuses one spool: the others are still delivered."""
from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from innerlens.cli import main
from innerlens.spool import Spool


def _spooled_run(client: MlflowClient, root: Path, uri: str, name: str, folder_prefix: str) -> str:
    run_id = client.create_run(mlflow.get_experiment_by_name("tests").experiment_id, run_name=name).info.run_id
    spool = Spool.create(root / f"{folder_prefix}{run_id}", {"run_id": run_id, "tracking_uri": uri, "artifact_uri": f"{root}/artifacts/{run_id}"})
    assert spool.claim()
    spool.append({"op": "batch", "metrics": [["val/acc", 0.5, 0, 1]], "params": [], "tags": []})
    spool.release()
    return run_id


def test_a_refused_spool_is_set_aside_and_the_healthy_one_after_it_is_delivered(local_store: str, tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    client = MlflowClient(local_store)
    root = tmp_path / "spool"
    deleted = _spooled_run(client, root, local_store, "deleted", "a")  # sorts first: sync meets it before the healthy one
    healthy = _spooled_run(client, root, local_store, "healthy", "b")
    client.delete_run(deleted)
    with pytest.raises(SystemExit) as exit_status:
        main(["sync", "--spool-dir", str(root)])
    assert exit_status.value.code == 1  # one was refused: not a clean sync
    out = capsys.readouterr().out
    assert f"run {healthy}: delivered 1 calls" in out
    assert f"run {deleted}: cannot deliver its spool: refused by the server" in out
    assert [m.value for m in client.get_metric_history(healthy, "val/acc")] == [0.5]
    assert (root / "refused" / f"a{deleted}" / "reason.txt").is_file() and not (root / f"a{deleted}").exists()
    main(["sync", "--spool-dir", str(root), "--list"])
    listed = capsys.readouterr().out
    assert f"run {deleted}: 1 calls, refused:" in listed and healthy not in listed
    main(["sync", "--spool-dir", str(root)])  # the refused spool no longer fails every later sync
    assert "nothing to sync" in capsys.readouterr().out


def test_a_spool_an_earlier_attempt_left_is_set_aside_once_the_run_was_resumed_elsewhere(
        local_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Ray retry on another node resumes the run (attempt 1); the spool attempt 0 left on this node
    must not replay its old metrics and older checkpoint over the newer ones."""
    from innerlens.tracking import TAG_GENERATION

    client = MlflowClient(local_store)
    root = tmp_path / "spool"
    stale = _spooled_run(client, root, local_store, "resumed elsewhere", "a")  # its spool: attempt 0 (no generation)
    current = _spooled_run(client, root, local_store, "same attempt", "b")
    client.set_tag(stale, TAG_GENERATION, "1")
    client.set_tag(current, TAG_GENERATION, "0")
    with pytest.raises(SystemExit) as exit_status:
        main(["sync", "--spool-dir", str(root)])
    assert exit_status.value.code == 1
    out = capsys.readouterr().out
    assert f"run {current}: delivered 1 calls" in out and f"run {stale}: cannot deliver its spool: stale" in out
    assert client.get_metric_history(stale, "val/acc") == []  # nothing replayed
    assert (root / "refused" / f"a{stale}" / "reason.txt").read_text().startswith("written by attempt 0")
