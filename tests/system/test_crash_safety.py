"""Runs survive SIGKILL: checkpoints are never half-written and --resume ends where an uninterrupted run ends."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from support import TINY, clean_env, tiny_args

from innerlens import tracking
from innerlens.families.self_modeling import SelfModelingConfig

ARGS = ["self-modeling", *tiny_args(max_epochs="40", patience="0", llc_every="0", checkpoint_interval="0.5")]


def _start(tmp_path: Path, *extra: str) -> subprocess.Popen:
    env = clean_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", MLFLOW_EXPERIMENT_NAME="crash")
    with open(tmp_path / "train.log", "a") as log:  # a file, not a pipe: progress bars would fill a pipe and block
        return subprocess.Popen(["innerlens", *ARGS, *extra], env=env, cwd=tmp_path, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=log)


def _new_run(client: MlflowClient, known: set[str]) -> str | None:
    experiment = client.get_experiment_by_name("crash")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return next((r.info.run_id for r in runs if r.info.run_id not in known), None)


def _kill_after(process: subprocess.Popen, client: MlflowClient, step: int, *, run_id: str | None = None,
                known: frozenset[str] = frozenset(), sig: signal.Signals = signal.SIGKILL) -> str:
    """Send ``sig`` to the process group once its run (``run_id``, else a run not in ``known``) has logged val/acc at ``step``."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended before the kill at step {step} (see train.log)"
        run_id = run_id or _new_run(client, known)
        if run_id and max((m.step for m in client.get_metric_history(run_id, "val/acc")), default=0) >= step:
            os.killpg(process.pid, sig)
            process.wait(timeout=120)
            return run_id
        time.sleep(0.1)
    pytest.fail(f"the run never reached step {step}")


def test_sigkill_twice_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    straight = _start(tmp_path)
    assert straight.wait(timeout=600) == 0, (tmp_path / "train.log").read_text()[-2000:]
    straight_id = _new_run(client, set())

    run_id = _kill_after(_start(tmp_path), client, 5, known=frozenset({straight_id}))
    assert client.get_run(run_id).info.status == "RUNNING"  # SIGKILL leaves no chance to say otherwise
    _kill_after(_start(tmp_path, "--resume", run_id, "--force-resume"), client, 20, run_id=run_id)
    finish = _start(tmp_path, "--resume", run_id, "--force-resume")
    assert finish.wait(timeout=600) == 0, (tmp_path / "train.log").read_text()[-2000:]

    run, reference = client.get_run(run_id), client.get_run(straight_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics.keys() == reference.data.metrics.keys()
    for key, value in reference.data.metrics.items():
        assert run.data.metrics[key] == pytest.approx(value, abs=1e-6), key
    for key in ("val/acc", "train/loss"):
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert sorted(steps) == list(range(1, 41)), key  # every epoch logged exactly once across three processes
    histories = []
    for name, run in (("resumed", run_id), ("straight", straight_id)):
        (tmp_path / name).mkdir()
        histories.append(pd.read_parquet(client.download_artifacts(run, "history.parquet", str(tmp_path / name))))
    pd.testing.assert_frame_equal(*histories, atol=1e-6)


def test_sigterm_marks_the_run_killed_and_resume_completes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    process = _start(tmp_path)
    run_id = _kill_after(process, client, 3, sig=signal.SIGTERM)
    assert process.returncode == 143
    assert "terminated" in (tmp_path / "train.log").read_text().strip().splitlines()[-1]
    stopped = client.get_run(run_id)
    assert stopped.info.status == "KILLED"  # flushed and ended, not left RUNNING
    stopped_at = max(m.step for m in client.get_metric_history(run_id, "val/acc"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracking.configure_tracking()
    assert tracking.load_checkpoint(run_id, "last")["epoch"] >= 1  # the last checkpoint survives
    finish = _start(tmp_path, "--resume", run_id)
    assert finish.wait(timeout=600) == 0, (tmp_path / "train.log").read_text()[-2000:]
    assert client.get_run(run_id).info.status == "FINISHED"
    for key in ("val/acc", "train/loss"):
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert sorted(steps) == list(range(1, 41)), (key, stopped_at)  # every epoch exactly once


def test_checkpoint_readers_never_see_a_partial_file(local_store: str) -> None:
    config = SelfModelingConfig.from_strings(TINY)
    with tracking.start_run(config, variant="atomic") as tracker:
        tracker.flush()
        artifact_dir = Path(MlflowClient().get_run(tracker.run_id).info.artifact_uri.removeprefix("file://"))
        target = artifact_dir / "checkpoints" / "last.pt"
        writes, reads, failures = 25, [], []
        stop = threading.Event()

        def read_forever() -> None:
            while not stop.is_set():
                if target.exists():
                    try:
                        reads.append(int(torch.load(target, weights_only=True)["epoch"]))
                    except Exception as error:  # a torn file: the property under test fails
                        failures.append(repr(error))

        reader = threading.Thread(target=read_forever)
        reader.start()
        for epoch in range(writes):
            tracker.save_checkpoint("last", {"epoch": epoch, "weights": torch.full((2_000_000,), float(epoch))})
            tracker.flush()
        stop.set()
        reader.join()
    assert not failures, failures[:3]
    assert len(reads) > writes and reads == sorted(reads)  # read many times, never an older file after a newer one


def test_sigterm_to_a_study_stops_its_workers_and_marks_every_run_killed(tmp_path: Path) -> None:
    """What `timeout` or a scheduler does: SIGTERM to the study's process only, never to its workers."""
    study, client = _study_training(tmp_path, ["--variants", "baseline", "--seeds", "0,1", "--workers", "2"], children=2)
    os.kill(study.pid, signal.SIGTERM)
    assert study.wait(timeout=120) == 143
    runs = client.search_runs([client.get_experiment_by_name("crash").experiment_id])
    assert len(runs) == 3 and {r.info.status for r in runs} == {"KILLED"}
    with pytest.raises(ProcessLookupError):  # no worker outlived the study
        for _ in range(50):
            os.killpg(study.pid, 0)
            time.sleep(0.1)


@pytest.mark.parametrize("workers", ["0", "1"])
def test_sigterm_to_a_stacked_study_ends_every_seeds_run_killed(tmp_path: Path, workers: str) -> None:
    """--stack-seeds trains a cell's seeds as threads: SIGTERM must reach every seed's run (KILLED, in
    its own thread) before the process exits 143, in-process (--workers 0) and in a worker process."""
    study, client = _study_training(tmp_path, ["--variants", "baseline", "--seeds", "0,1,2", "--workers", workers,
                                               "--stack-seeds", "--no-gamma-sensitivity"], children=3)
    os.kill(study.pid, signal.SIGTERM)
    assert study.wait(timeout=120) == 143, (tmp_path / "study.log").read_text()[-2000:]
    runs = client.search_runs([client.get_experiment_by_name("crash").experiment_id])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"KILLED"}


def test_a_stacked_cell_whose_worker_is_killed_is_retried_to_the_end_with_every_epoch_once(tmp_path: Path) -> None:
    """SIGKILL the worker training a stacked cell: the pool retries the cell, every seed resumes from
    its checkpoint (all written at the same epoch), and each seed's run ends FINISHED with every epoch logged once."""
    study, client = _study_training(tmp_path, ["--variants", "baseline", "--seeds", "0,1", "--workers", "1", "--stack-seeds",
                                               "--no-gamma-sensitivity", "--checkpoint-interval", "0.2"],
                                    children=2, max_epochs="24", epochs_logged=5)
    workers = Path(f"/proc/{study.pid}/task/{study.pid}/children").read_text().split()
    assert workers, "the study has no worker process"
    for worker in workers:
        os.kill(int(worker), signal.SIGKILL)
    assert study.wait(timeout=600) == 0, (tmp_path / "study.log").read_text()[-2000:]
    runs = client.search_runs([client.get_experiment_by_name("crash").experiment_id])
    seeds = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    for run in seeds:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")]
        assert sorted(steps) == list(range(1, 25)), run.data.tags[tracking.TAG_TASK]  # each epoch once


def test_a_stacked_seed_that_never_arrives_fails_the_others_after_the_timeout() -> None:
    import threading

    from innerlens.families.seed_stack import SeedStack

    stack = SeedStack(2, timeout_s=0.5)
    errors: list[BaseException] = []

    def lone_seed() -> None:
        try:
            stack.train_round(object(), 0, 1)  # type: ignore[arg-type]  # its partner never calls
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=lone_seed)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive() and isinstance(errors[0], RuntimeError) and "stopped arriving" in str(errors[0])


def _study_training(tmp_path: Path, options: list[str], children: int, max_epochs: str = "400",
                    epochs_logged: int = 1) -> tuple[subprocess.Popen, MlflowClient]:
    """A long study started as its own process group, returned once each of its ``children`` runs has
    logged an epoch (what a scheduler's SIGTERM would interrupt)."""
    env = clean_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", MLFLOW_EXPERIMENT_NAME="crash")
    args = ["self-modeling-comparison", *options, *tiny_args(max_epochs=max_epochs, patience="0", llc_every="0", measure_llc="false")]
    with open(tmp_path / "study.log", "a") as log:
        study = subprocess.Popen(["innerlens", *args], env=env, cwd=tmp_path, start_new_session=True,
                                 stdout=log, stderr=log)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert study.poll() is None, (tmp_path / "study.log").read_text()[-2000:]
        experiment = client.get_experiment_by_name("crash")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        started = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        if len(started) == children and all(len(client.get_metric_history(r.info.run_id, "val/acc")) >= epochs_logged
                                            for r in started):
            return study, client
        time.sleep(0.2)
    pytest.fail("the study's runs never started training")


def test_a_named_study_stopped_by_sigterm_continues_in_the_same_runs_on_the_embedded_store(tmp_path: Path) -> None:
    """What a researcher does with a long study: run it, stop it, run the same command again. With no
    MLFLOW_TRACKING_URI (the embedded store), the second command must find the first's parent run."""
    env = {k: v for k, v in clean_env().items() if k != "MLFLOW_TRACKING_URI"}
    env["INNERLENS_HOME"] = str(tmp_path)
    command = ["innerlens", "self-modeling-comparison", "--variants", "baseline", "--seeds", "0", "--study-name", "in-parts",
               "--workers", "1", "--no-gamma-sensitivity", *tiny_args(max_epochs="50", patience="0", llc_every="0",
                                                                        measure_llc="false", checkpoint_interval="0.2")]
    with open(tmp_path / "study.log", "a") as log:
        first = subprocess.Popen(command, env=env, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    deadline = time.monotonic() + 300
    child = None
    while time.monotonic() < deadline and child is None:
        assert first.poll() is None, (tmp_path / "study.log").read_text()[-2000:]
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()]) if (tmp_path / "mlruns" / "mlflow.db").exists() else []
        child = next((r for r in runs if "mlflow.parentRunId" in r.data.tags
                      and len(client.get_metric_history(r.info.run_id, "val/acc")) >= 3), None)
        time.sleep(0.2)
    assert child is not None
    os.killpg(first.pid, signal.SIGTERM)
    assert first.wait(timeout=120) == 143
    again = subprocess.run(command, env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # one study, continued
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert [r.info.run_id for r in children] == [child.info.run_id] and children[0].info.status == "FINISHED"
