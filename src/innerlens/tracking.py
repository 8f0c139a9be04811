"""Everything innerlens sends to MLflow: runs, tags, params, batched metrics, artifacts, resume.

This is the only module (besides compare and tune) that imports mlflow. Logging calls go
through one background worker so training never waits on the tracking server and the
server sees every call in the order it was made.
"""
from __future__ import annotations

import contextlib
import contextvars
import io
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import mlflow
import pandas as pd
import torch
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from innerlens.config import Config, ConfigError

DEFAULT_EXPERIMENT = "innerlens"
TAG_FAMILY = "innerlens.family"
TAG_VARIANT = "innerlens.variant"
TAG_SEED = "innerlens.seed"
TAG_GIT_COMMIT = "innerlens.git_commit"
TAG_STEP_UNIT = "innerlens.step_unit"


def project_root() -> Path:
    """The innerlens checkout (where MLproject lives); INNERLENS_HOME overrides it."""
    if "INNERLENS_HOME" in os.environ:
        return Path(os.environ["INNERLENS_HOME"]).resolve()
    source_checkout = Path(__file__).resolve().parents[2]
    if (source_checkout / "MLproject").exists():
        return source_checkout
    return Path.cwd()


def embedded_store() -> tuple[str, Path]:
    """The default local store: SQLite under ``mlruns/`` with artifacts beside it."""
    mlruns = project_root() / "mlruns"
    mlruns.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{mlruns / 'mlflow.db'}", mlruns / "artifacts"


def configure_tracking() -> str:
    """Point MLflow at ``MLFLOW_TRACKING_URI`` or, without it, at the embedded store.

    Returns the tracking URI in use. With the embedded store, the experiment's artifacts are
    pinned under ``mlruns/artifacts`` so they do not depend on the working directory.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        uri, _ = embedded_store()
    mlflow.set_tracking_uri(uri)
    return uri


def _experiment_id(client: MlflowClient) -> str:
    """The experiment runs go to: the one ``mlflow run`` chose, else MLFLOW_EXPERIMENT_NAME or 'innerlens'."""
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    store_uri, artifact_root = embedded_store()
    if mlflow.get_tracking_uri() == store_uri:
        # (mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, so the env var cannot tell.)
        artifact_location = (artifact_root / name).as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def check_run_exists(run_id: str, family: str) -> None:
    """Fail with a one-line error unless ``run_id`` is a run of ``family`` in the tracking store."""
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"--resume: no run {run_id!r} in tracking store {mlflow.get_tracking_uri()}") from None
    run_family = run.data.tags.get(TAG_FAMILY)
    if run_family is not None and run_family != family:
        raise ConfigError(f"--resume: run {run_id} is a {run_family!r} run, not {family!r}")


def has_checkpoint(run_id: str, name: str = "last") -> bool:
    """Whether the run has ``checkpoints/<name>.pt`` (a run killed before its first one has none)."""
    return f"checkpoints/{name}.pt" in {a.path for a in MlflowClient().list_artifacts(run_id, "checkpoints")}


MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call


class RunTracker:
    """Logs to one MLflow run through a single ordered background worker.

    Metrics are sent in one ``log_batch`` per step, or, when steps come faster than
    ``metrics_interval_s``, one per interval holding every step since the last send (each value
    keeps its own step): a small model's epoch is short enough that a database round trip per
    epoch would be a visible share of it. ``flush`` and ``close`` send what is buffered.
    """

    def __init__(self, run_id: str, metrics_interval_s: float = 1.0) -> None:
        self.run_id = run_id
        self.metrics_interval_s = metrics_interval_s
        self._metric_buffer: list[Metric] = []
        self._metrics_sent_at = -math.inf
        self.client = MlflowClient()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mlflow-{run_id[:8]}")
        self._pending: list[Future] = []
        self._staging = Path(tempfile.mkdtemp(prefix=f"innerlens-{run_id[:8]}-"))
        self._artifact_repo: Any = None

    def _submit(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        finished = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for future in finished:
            future.result()  # surface a failed earlier call now rather than at the end
        self._pending.append(self._worker.submit(fn, *args, **kwargs))

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Queue one step's metrics; they leave in a single ``log_batch`` with any buffered steps."""
        timestamp = int(time.time() * 1000)
        self._metric_buffer.extend(Metric(key, float(value), timestamp, step) for key, value in metrics.items())
        due = time.monotonic() - self._metrics_sent_at >= self.metrics_interval_s
        if due or len(self._metric_buffer) >= MAX_METRICS_PER_BATCH // 2:
            self._send_metrics()

    def _send_metrics(self) -> None:
        while self._metric_buffer:
            batch = self._metric_buffer[:MAX_METRICS_PER_BATCH]
            self._metric_buffer = self._metric_buffer[MAX_METRICS_PER_BATCH:]
            self._submit(self.client.log_batch, self.run_id, metrics=batch)
        self._metrics_sent_at = time.monotonic()

    def set_tags(self, tags: dict[str, str]) -> None:
        self._submit(self.client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, text: str, artifact_file: str) -> None:
        self._write_and_upload(artifact_file, lambda path: path.write_text(text))

    def log_bytes(self, data: bytes, artifact_file: str) -> None:
        self._write_and_upload(artifact_file, lambda path: path.write_bytes(data))

    def log_figure(self, figure: Any, name: str) -> None:
        """Save a matplotlib figure as ``figures/<name>.png``."""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(figure)  # logged: free it (long sweeps draw hundreds)
        self._write_and_upload(f"figures/{name}.png", lambda path: path.write_bytes(buffer.getvalue()))

    def log_history(self, history: pd.DataFrame) -> None:
        self._write_and_upload("history.parquet", lambda path: history.to_parquet(path, index=False))

    def save_checkpoint(self, name: str, payload: dict[str, Any]) -> None:
        """Serialise and upload ``checkpoints/<name>.pt`` in the background; pass a :func:`snapshot`."""
        self._write_and_upload(f"checkpoints/{name}.pt", lambda path: torch.save(payload, path))

    def log_directory(self, source: str | Path, artifact_path: str) -> None:
        """Upload a directory's files under ``artifact_path``; copied first, so ``source`` may go away."""
        staged = self._staging / artifact_path
        shutil.copytree(source, staged, dirs_exist_ok=True)
        self._submit(lambda: self._artifacts().log_artifacts(str(staged), artifact_path))

    def _write_and_upload(self, artifact_file: str, write: Any) -> None:
        self._submit(self._write_then_log, artifact_file, write)

    def _write_then_log(self, artifact_file: str, write: Any) -> None:
        target = self._staging / artifact_file
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        write(partial)
        os.replace(partial, target)  # the staged file is never half-written
        artifact_dir = str(Path(artifact_file).parent) if "/" in artifact_file else None
        self._artifacts().log_artifact(str(target), artifact_dir)

    def _artifacts(self) -> Any:
        """The run's artifact repository, resolved once (not one run lookup per upload)."""
        if self._artifact_repo is None:
            self._artifact_repo = get_artifact_repository(self.client.get_run(self.run_id).info.artifact_uri)
        return self._artifact_repo

    def flush(self) -> None:
        """Send buffered metrics, wait for every queued call; re-raise the first that failed."""
        self._send_metrics()
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._worker.shutdown(wait=True)
            shutil.rmtree(self._staging, ignore_errors=True)


def snapshot(value: Any) -> Any:
    """A copy of nested dicts/lists whose tensors no later optimiser step can change."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(v) for v in value)
    return value


def last_logged_step(run_id: str, key: str) -> int:
    """The highest step of ``key`` the run has logged (0 when none)."""
    return max((m.step for m in MlflowClient().get_metric_history(run_id, key)), default=0)


def load_checkpoint(run_id: str, name: str = "last") -> dict[str, Any]:
    """Download ``checkpoints/<name>.pt`` of a run and load it with ``weights_only=True``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"checkpoints/{name}.pt", dst_path=tmp
        )
        return torch.load(path, map_location="cpu", weights_only=True)


def list_checkpoints(run_id: str, folder: str = "") -> list[str]:
    """Checkpoint names (without ``.pt``) under ``checkpoints/<folder>`` of a run, sorted."""
    path = f"checkpoints/{folder}".rstrip("/")
    entries = MlflowClient().list_artifacts(run_id, path)
    return sorted(Path(e.path).stem for e in entries if e.path.endswith(".pt"))


def load_config(run_id: str, family: str) -> dict[str, Any]:
    """The ``config.json`` a run of ``family`` was started with (one-line error otherwise)."""
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"no run {run_id!r} in tracking store {mlflow.get_tracking_uri()}") from None
    if run.data.tags.get(TAG_FAMILY) != family:
        raise ConfigError(f"run {run_id} is a {run.data.tags.get(TAG_FAMILY)!r} run, not {family!r}")
    return json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/config.json"))


def load_history(run_id: str) -> pd.DataFrame:
    """A finished run's ``history.parquet`` (tidy step, key, value)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="history.parquet", dst_path=tmp)
        return pd.read_parquet(path)


REGISTRY_PREFIX = "models:/"


def register_model(run_id: str, artifact_path: str, name: str) -> str:
    """Register ``artifact_path`` of a run as a new version of ``name``; return the version."""
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
    return str(client.create_model_version(name, source, run_id=run_id).version)


def download_registered(uri: str, destination: Path) -> tuple[Path, str]:
    """``models:/NAME/VERSION`` (or ``/latest``) -> (local directory with its files, version)."""
    name, _, version = uri[len(REGISTRY_PREFIX):].partition("/")
    client = MlflowClient()
    try:
        if version in ("", "latest"):
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise MlflowException("no versions")
            version = str(max(int(v.version) for v in versions))
        model_version = client.get_model_version(name, version)
    except MlflowException:
        raise ConfigError(f"{uri}: no such registered model version in {mlflow.get_tracking_uri()} "
                          f"(run the generator entry point first, or give a model name or directory)") from None
    target = destination / f"{name}-v{version}"
    if not (target / "config.json").exists():
        mlflow.artifacts.download_artifacts(artifact_uri=model_version.source, dst_path=str(target.parent / (target.name + ".download")))
        downloaded = target.parent / (target.name + ".download")
        inner = downloaded / Path(model_version.source).name
        (inner if inner.is_dir() else downloaded).replace(target)
        shutil.rmtree(downloaded, ignore_errors=True)
    return target, version


def download_run_artifacts(run_id: str, destination: Path) -> Path:
    """Copy every artifact of a run into ``destination`` (a local copy next to the store)."""
    destination.mkdir(parents=True, exist_ok=True)
    mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(destination))
    return destination


@contextlib.contextmanager
def open_finished_run(run_id: str) -> Iterator[RunTracker]:
    """Add artifacts and tags to an existing run without reopening it (its status stays as it was)."""
    configure_tracking()
    tracker = RunTracker(run_id)
    try:
        yield tracker
    finally:
        tracker.close()


@dataclass(frozen=True)
class RunContext:
    """Where runs started inside :func:`run_context` belong: a parent run, extra tags and params."""

    parent_run_id: str
    tags: dict[str, str]
    params: dict[str, str]
    on_start: Callable[[str], None] | None = None  # told the run id once the run exists


_run_context: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("innerlens_run_context", default=None)


@contextlib.contextmanager
def run_context(
    parent_run_id: str, tags: dict[str, str], params: dict[str, str], on_start: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Runs a family starts in here are nested under ``parent_run_id`` (in any process) and carry these tags/params."""
    token = _run_context.set(RunContext(parent_run_id, tags, params, on_start))
    try:
        yield
    finally:
        _run_context.reset(token)


@contextlib.contextmanager
def start_run(
    config: Config,
    *,
    variant: str,
    run_name: str | None = None,
    nested: bool = False,
    step_unit: str = "epoch",
) -> Iterator[RunTracker]:
    """Open (or, with ``config.resume``, reopen) an MLflow run for ``config``.

    A new run gets params, tags and ``config.json``; a resumed run keeps the params it has (and
    gets any it was killed before logging). A crash ends the run FAILED (KILLED on Ctrl-C) after
    flushing what was queued, so the last checkpoint and every logged metric survive for ``--resume``.
    """
    configure_tracking()
    resume = getattr(config, "resume", None)
    client = MlflowClient()
    outer_run = None
    context = _run_context.get()
    if resume:
        check_run_exists(resume, config.family_name)
        active = mlflow.start_run(run_id=resume)
    elif context is not None:
        active = mlflow.start_run(
            experiment_id=client.get_run(context.parent_run_id).info.experiment_id,
            run_name=run_name,
            nested=mlflow.active_run() is not None,
            parent_run_id=context.parent_run_id,
            tags=context.tags,
        )
    else:
        outer_run = os.environ.get("MLFLOW_RUN_ID") if not nested and mlflow.active_run() is None else None
        active = mlflow.start_run(
            run_id=outer_run,
            experiment_id=None if outer_run else _experiment_id(client),
            run_name=None if outer_run else run_name,
            nested=nested,
        )
    if outer_run:
        # Consumed: nested runs started later must not reopen the launcher's run.
        os.environ.pop("MLFLOW_RUN_ID", None)
    run_id = active.info.run_id
    if context is not None and context.on_start is not None and not resume:
        context.on_start(run_id)
    tracker = RunTracker(run_id)
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        # Under `mlflow run` the launcher has logged the params it was given already; a resumed run its own.
        logged = client.get_run(run_id).data.params if outer_run or resume else {}
        tracker._submit(
            client.log_batch,
            run_id,
            params=[Param(k, v) for k, v in {**config.to_params(), **(context.params if context else {})}.items() if k not in logged],
            tags=[
                RunTag(k, str(v))
                for k, v in {
                    TAG_FAMILY: config.family_name,
                    TAG_VARIANT: variant,
                    TAG_SEED: str(getattr(config, "seed", "")),
                    TAG_GIT_COMMIT: git_commit(),
                    TAG_STEP_UNIT: step_unit,
                }.items()
            ],
        )
        tracker.log_text(config.to_json(), "config.json")
        yield tracker
        status = RunStatus.to_string(RunStatus.FINISHED)
    except KeyboardInterrupt:
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    except Exception as error:
        # An exception may say how its run ends (a pruned Optuna trial: KILLED); anything else is FAILED.
        status = getattr(error, "run_status", status)
        raise
    finally:
        try:
            tracker.close()
        finally:
            mlflow.end_run(status=status)


def ui_hint() -> str:
    """How to look at what was just logged."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"open the MLflow UI with:  mlflow ui --backend-store-uri {uri}"
