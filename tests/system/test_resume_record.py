"""Resume keeps the run's own configuration and record, refuses a leftover spool, and a fit restored
from its final checkpoint trains nothing more; checkpoints never overtake the metrics they cover."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

SMALL = ["--p", "23", "--samples", "400", "--n-layers", "3", "--d-model", "32", "--d-mlp", "64", "--batch-size", "64",
         "--max-epochs", "3", "--patience", "0", "--checkpoint-interval", "0", "--llc-chains", "2", "--llc-draws", "5",
         "--llc-burnin", "2", "--variant", "baseline"]


def _innerlens(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "innerlens"), *args], capture_output=True, text=True)


def _run(local_store: str, *extra: str) -> str:
    done = _innerlens("self-modeling", *SMALL, *extra)
    assert done.returncode == 0, done.stderr
    return next(line.split()[1] for line in done.stdout.splitlines() if line.endswith("finished"))


def test_resume_adopts_the_stored_seed_and_refuses_a_different_one(local_store: str) -> None:
    run_id = _run(local_store, "--seed", "3")
    client = MlflowClient()
    before = client.get_run(run_id)
    config_before = mlflow.artifacts.load_text(f"{before.info.artifact_uri}/config.json")

    refused = _innerlens("self-modeling", *SMALL, "--resume", run_id, "--seed", "1")
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "--seed (run has 3)" in refused.stderr

    resumed = _innerlens("self-modeling", *SMALL, "--resume", run_id, "--max-epochs", "4")
    assert resumed.returncode == 0, resumed.stderr
    after = client.get_run(run_id)
    assert after.data.tags["innerlens.seed"] == "3" and after.data.params["seed"] == "3"
    assert mlflow.artifacts.load_text(f"{after.info.artifact_uri}/config.json") == config_before
    steps = [m.step for m in client.get_metric_history(run_id, "val/acc")]
    assert steps == [1, 2, 3, 4]  # trained on from epoch 3 with the run's own seed, each epoch once
    assert json.loads(config_before)["seed"] == 3


def test_resuming_a_finished_fit_trains_no_extra_round(local_store: str) -> None:
    run_id = _run(local_store)
    resumed = _innerlens("self-modeling", *SMALL, "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert [m.step for m in MlflowClient().get_metric_history(run_id, "val/acc")] == [1, 2, 3]


def test_resume_with_a_leftover_spool_stops_in_one_line(local_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from innerlens.spool import Spool

    run_id = _run(local_store)
    monkeypatch.setenv("INNERLENS_HOME", str(tmp_path / "home"))
    from innerlens.tracking import spool_root

    spool = Spool.create(spool_root() / run_id, {"run_id": run_id, "tracking_uri": local_store, "artifact_uri": "x"})
    assert spool.claim()  # as the run that spooled held it
    spool.append({"op": "batch", "metrics": []})
    spool.release()  # the run is gone; its spool waits
    refused = _innerlens("self-modeling", *SMALL, "--resume", run_id)
    assert refused.returncode == 2 and "innerlens sync" in refused.stderr
    assert refused.stderr.strip().count("\n") == 0


def test_a_checkpoint_is_queued_after_the_metrics_it_covers(local_store: str) -> None:
    from innerlens import tracking
    from innerlens.families.self_modeling import SelfModelingConfig

    order: list[str] = []
    mlflow.set_experiment("tests")
    with tracking.start_run(SelfModelingConfig(), variant="baseline") as tracker:
        tracker.metrics_interval_s = 3600.0  # metrics would otherwise wait in memory
        original = tracker._submit

        def spy(fn: object, *args: object) -> None:  # what the single ordered worker will run, in order
            entry = args[0]
            order.append(f"step {max(m[3] for m in entry['metrics'])}" if isinstance(entry, dict) and entry["op"] == "batch" else str(entry))
            original(fn, *args)

        tracker._submit = spy  # type: ignore[method-assign]
        tracker.log_metrics(1, {"val/acc": 0.5})
        tracker.log_metrics(2, {"val/acc": 0.6})
        tracker.save_checkpoint("last", {"epoch": 2})
        tracker.flush()
    assert order.index("step 2") < order.index("checkpoints/last.pt"), order  # step 2 was still buffered


def test_a_resume_is_recorded_a_running_run_needs_force_and_an_old_checkpoint_is_refused(local_store: str, tmp_path: Path) -> None:
    """Each resume is an attempt: the generation tag counts them and says when, where and by whom.
    A run the store shows RUNNING may still be training elsewhere: resuming it needs --force-resume."""
    import torch

    from innerlens import tracking
    from innerlens.tracking import TAG_GENERATION, TAG_RESUMED

    run_id = _run(local_store)
    client = MlflowClient()
    assert client.get_run(run_id).data.tags[TAG_GENERATION] == "0" and TAG_RESUMED not in client.get_run(run_id).data.tags
    assert _innerlens("self-modeling", *SMALL, "--resume", run_id, "--max-epochs", "4").returncode == 0
    tags = client.get_run(run_id).data.tags
    assert tags[TAG_GENERATION] == "1" and " on " in tags[TAG_RESUMED]
    client.update_run(run_id, status="RUNNING")  # as a SIGKILLed process leaves it
    refused = _innerlens("self-modeling", *SMALL, "--resume", run_id, "--max-epochs", "5")
    assert refused.returncode == 2 and "--force-resume" in refused.stderr and refused.stderr.strip().count("\n") == 0
    forced = _innerlens("self-modeling", *SMALL, "--resume", run_id, "--max-epochs", "5", "--force-resume")
    assert forced.returncode == 0, forced.stderr
    after = client.get_run(run_id)
    assert after.data.tags[TAG_GENERATION] == "2" and after.info.status == "FINISHED"
    assert "force_resume" not in after.data.params  # how it was run, not what it computes

    # A checkpoint of an older format (before checkpoints had a version) is refused before the run is reopened.
    checkpoint = tracking.load_checkpoint(run_id)
    del checkpoint["format"]
    torch.save(checkpoint, tmp_path / "last.pt")
    client.log_artifact(run_id, str(tmp_path / "last.pt"), "checkpoints")
    refused = _innerlens("self-modeling", *SMALL, "--resume", run_id, "--max-epochs", "6")
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0
    assert "checkpoint is format 1, this innerlens reads format 2" in refused.stderr
    assert client.get_run(run_id).info.status == "FINISHED"


