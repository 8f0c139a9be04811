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
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import mlflow
import pandas as pd
import requests
import torch
from botocore.exceptions import BotoCoreError
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from tqdm.auto import tqdm

from innerlens.config import Config, ConfigError, redact_secrets
from innerlens.spool import Spool, spools_under

DEFAULT_EXPERIMENT = "innerlens"
TAG_FAMILY = "innerlens.family"
TAG_VARIANT = "innerlens.variant"
TAG_SEED = "innerlens.seed"
TAG_GIT_COMMIT = "innerlens.git_commit"
TAG_STEP_UNIT = "innerlens.step_unit"
TAG_TASK = "innerlens.task"  # a study's name for one of its runs: how a retried task finds the run it started
TAG_RAY_NODE = "innerlens.ray_node_id"
TAG_EXECUTOR = "innerlens.executor"  # on a study's parent run: where its runs executed


def project_root() -> Path:
    """The innerlens checkout (where MLproject lives); INNERLENS_HOME overrides it."""
    if "INNERLENS_HOME" in os.environ:
        return Path(os.environ["INNERLENS_HOME"]).resolve()
    source_checkout = Path(__file__).resolve().parents[2]
    if (source_checkout / "MLproject").exists():
        return source_checkout
    return Path.cwd()


def models_root() -> Path:
    """Where built-in models (the trained tiny LM) and downloaded registry versions are cached:
    ``mlruns/models`` of the checkout, or ``INNERLENS_MODEL_CACHE`` (one cache for many checkouts)."""
    if "INNERLENS_MODEL_CACHE" in os.environ:
        return Path(os.environ["INNERLENS_MODEL_CACHE"]).resolve()
    return project_root() / "mlruns" / "models"


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
    # Small artifacts (config.json, history) are read often; a bar per read would break one-line errors.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        uri, _ = embedded_store()
    mlflow.set_tracking_uri(uri)
    detect_outages_quickly()
    return uri


def detect_outages_quickly() -> None:
    """MLflow retries a failed request for minutes by default; a few seconds tell an outage, and the
    tracker's spool (not a blocked call) rides it out. Settings the user made win."""
    for name, value in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}.items():
        os.environ.setdefault(name, value)


# MLflow 3's UI opens an experiment without this tag in its GenAI view (traces, judges) after asking
# for its type; innerlens experiments are model training, shown under "Model training".
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


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
    return client.create_experiment(name, artifact_location=artifact_location, tags=dict([EXPERIMENT_KIND]))


def _as_model_training(client: MlflowClient, experiment_id: str) -> None:
    """Tag an experiment someone else created (``mlflow run --experiment-name``) as model training, once."""
    key, kind = EXPERIMENT_KIND
    if key not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, key, kind)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


PREFLIGHT_TIMEOUT_S = 10  # a server that accepts connections but never answers: an error in seconds, not minutes


@contextlib.contextmanager
def _quick_requests() -> Iterator[None]:
    """MLflow's HTTP calls in this block give up after one try of PREFLIGHT_TIMEOUT_S; the settings
    in force before (the user's, or :func:`detect_outages_quickly`'s) come back after it."""
    quick = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(PREFLIGHT_TIMEOUT_S), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    saved = {key: os.environ.get(key) for key in quick}
    os.environ.update(quick)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_tracking_store(client: MlflowClient) -> None:
    """A one-line error, before anything is logged, when the tracking store cannot be used.

    Quiet when the store answers (or refuses) at once; after 3 s of waiting it says whom it waits for.
    """
    uri = client.tracking_uri
    notice = threading.Timer(3.0, lambda: print(f"innerlens: contacting tracking server {redact_secrets(uri)} "
                                                f"(up to {PREFLIGHT_TIMEOUT_S} s)...", file=sys.stderr, flush=True))
    notice.daemon = True
    notice.start()
    try:
        with _quick_requests():
            client.search_experiments(max_results=1)
    except Exception as error:
        if isinstance(error, MlflowException) and error.get_http_status_code() in (401, 403):
            raise ConfigError(f"tracking server {redact_secrets(uri)} refused the credentials: set MLFLOW_TRACKING_USERNAME and "
                              f"MLFLOW_TRACKING_PASSWORD (`deploy/stack env` prints them)") from None
        if is_outage(error):
            raise ConfigError(f"tracking server {redact_secrets(uri)} is unreachable ({_first_line(error)}); start it, or unset "
                              f"MLFLOW_TRACKING_URI to use the local store") from None
        raise
    finally:
        notice.cancel()


def check_run_exists(run_id: str, family: str) -> None:
    """Fail with a one-line error unless ``run_id`` is a run of ``family`` in the tracking store."""
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"--resume: no run {run_id!r} in tracking store {redact_secrets(mlflow.get_tracking_uri())}") from None
    run_family = run.data.tags.get(TAG_FAMILY)
    if run_family is not None and run_family != family:
        raise ConfigError(f"--resume: run {run_id} is a {run_family!r} run, not {family!r}")


def resumable_config(run_id: str, family: str) -> dict[str, Any]:
    """The stored ``config.json`` of the run ``--resume`` names, after the checks a resume needs
    (a reachable store, a run of this family, no undelivered spool); empty if it was killed before logging one."""
    configure_tracking()
    check_tracking_store(MlflowClient())
    check_run_exists(run_id, family)
    check_no_spool(run_id)
    try:
        return load_config(run_id, family)
    except (MlflowException, OSError):
        return {}


def check_no_spool(run_id: str) -> None:
    """A run must not resume while calls it spooled are undelivered: ``sync`` would later replay
    them over what the resumed run logs (duplicate points, a stale ``last.pt``)."""
    directory = spool_root() / run_id
    if directory.exists() and (directory / "journal.jsonl").exists():
        waiting = len(Spool(directory))
        if waiting:
            raise ConfigError(f"--resume {run_id}: {waiting} tracking calls of this run wait in {directory}; "
                              "run `innerlens sync` first, then resume")


def has_checkpoint(run_id: str, name: str = "last") -> bool:
    """Whether the run has ``checkpoints/<name>.pt`` (a run killed before its first one has none)."""
    return f"checkpoints/{name}.pt" in {a.path for a in MlflowClient().list_artifacts(run_id, "checkpoints")}


MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call


def spool_root() -> Path:
    """Where runs keep the calls an unreachable tracking server could not take (``innerlens sync`` replays them)."""
    return project_root() / "mlruns" / "spool"


def is_outage(error: BaseException) -> bool:
    """Whether a failed tracking call may succeed later (server, network, storage down) rather than being refused.

    The server's own refusals (HTTP 4xx: bad value, no permission, no such run) are not outages:
    spooling them would only defer the error.
    """
    if isinstance(error, MlflowException):  # connection failures arrive as INTERNAL_ERROR (500)
        return error.get_http_status_code() >= 500
    return isinstance(error, (requests.RequestException, OSError, BotoCoreError))


def send_entry(client: MlflowClient, artifacts: Any, run_id: str, entry: dict[str, Any], file: Path | None) -> None:
    """Deliver one tracking call, as :class:`RunTracker` queues it and :class:`~innerlens.spool.Spool` keeps it."""
    kind = entry["op"]
    if kind == "batch":
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, timestamp, step) for key, value, timestamp, step in entry.get("metrics", [])],
            params=[Param(k, v) for k, v in entry.get("params", [])],
            tags=[RunTag(k, v) for k, v in entry.get("tags", [])],
        )
    elif kind == "artifact":
        artifacts.log_artifact(str(file), entry["path"])
    elif kind == "artifacts":
        artifacts.log_artifacts(str(file), entry["path"])
    elif kind == "terminate":
        client.set_terminated(run_id, entry["status"], entry["end_time"])
    else:
        raise AssertionError(f"unknown tracking call {kind!r}")


def deliver_spool(spool: Spool, client: MlflowClient, artifacts: Any, run_id: str) -> int | None:
    """Send a spool in order: how many entries went, or None when the server is still out (they wait)."""
    try:
        return spool.deliver(lambda entry, file: send_entry(client, artifacts, run_id, entry, file))
    except Exception as error:
        if not is_outage(error):
            raise
        return None


class RunTracker:
    """Logs to one MLflow run through a single ordered background worker that survives outages.

    Metrics are sent in one ``log_batch`` per step, or, when steps come faster than
    ``metrics_interval_s``, one per interval holding every step since the last send (each value
    keeps its own step): a small model's epoch is short enough that a database round trip per
    epoch would be a visible share of it. ``flush`` and ``close`` send what is buffered.

    When the tracking server stops answering, training goes on: calls are appended to a
    :class:`~innerlens.spool.Spool`, retried every ``retry_interval_s`` and delivered in order
    once it answers. ``close`` waits up to ``outage_wait_s`` for that; what is still undelivered
    stays in the spool for ``innerlens sync``.
    """

    def __init__(
        self,
        run_id: str,
        metrics_interval_s: float = 1.0,
        retry_interval_s: float = 5.0,
        outage_wait_s: float | None = None,
    ) -> None:
        self.run_id = run_id
        self.metrics_interval_s = metrics_interval_s
        self.retry_interval_s = retry_interval_s
        self.outage_wait_s = float(os.environ.get("INNERLENS_OUTAGE_WAIT_S", 120)) if outage_wait_s is None else outage_wait_s
        self._metric_buffer: list[Metric] = []
        self._metrics_sent_at = -math.inf
        self.client = MlflowClient()
        # Resolved now, while the server answers: uploads during an outage must not need a lookup.
        self.artifact_uri = self.client.get_run(run_id).info.artifact_uri
        self._artifacts = get_artifact_repository(self.artifact_uri)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mlflow-{run_id[:8]}")
        self._pending: list[Future] = []
        self._staging = Path(tempfile.mkdtemp(prefix=f"innerlens-{run_id[:8]}-"))
        self._spool: Spool | None = None
        self._retried_at = -math.inf

    @property
    def spooled(self) -> int:
        """Calls waiting in the spool for the tracking server."""
        return len(self._spool) if self._spool is not None else 0

    def _submit(self, fn: Any, *args: Any) -> None:
        finished = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for future in finished:
            future.result()  # surface a failed earlier call now rather than at the end
        self._pending.append(self._worker.submit(fn, *args))

    def _queue(self, entry: dict[str, Any], file: Path | None = None) -> None:
        self._submit(self._deliver, entry, file)

    def _deliver(self, entry: dict[str, Any], file: Path | None) -> None:
        """On the worker thread: send, or spool behind anything already spooled so order holds."""
        if not self.spooled:
            try:
                send_entry(self.client, self._artifacts, self.run_id, entry, file)
                return
            except Exception as error:
                if not is_outage(error):
                    raise
                self._start_spooling(error)
        assert self._spool is not None
        self._spool.append(entry, file)
        if time.monotonic() - self._retried_at >= self.retry_interval_s:
            self._retry()

    def _start_spooling(self, error: BaseException) -> None:
        directory = spool_root() / self.run_id
        meta = {"run_id": self.run_id, "tracking_uri": redact_secrets(mlflow.get_tracking_uri()), "artifact_uri": self.artifact_uri}
        self._spool = Spool.own(directory, meta)  # held while the run lives: `innerlens sync` leaves it to the run
        self._retried_at = time.monotonic()
        _say(f"tracking server unreachable ({_first_line(error)}); training goes on, calls are spooled in {directory}")

    def _retry(self) -> bool:
        """Deliver the spool in order; True when it is empty (the server is back)."""
        assert self._spool is not None
        self._retried_at = time.monotonic()
        sent = deliver_spool(self._spool, self.client, self._artifacts, self.run_id)
        if sent is None:
            return False
        _say(f"tracking server is back: delivered {sent} spooled calls")
        self._spool = None
        return True

    def _wait_for_server(self) -> None:
        """On the worker thread, at close: retry the spool until it empties or ``outage_wait_s`` passes."""
        deadline = time.monotonic() + self.outage_wait_s
        while self.spooled and not self._retry() and time.monotonic() < deadline:
            time.sleep(min(self.retry_interval_s, max(0.0, deadline - time.monotonic())))
        if self.spooled:
            _say(f"tracking server still unreachable: {self.spooled} calls of run {self.run_id} wait in "
                 f"{self._spool.directory}; deliver them with `innerlens sync` once it is back")

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
            self._queue({"op": "batch", "metrics": [[m.key, m.value, m.timestamp, m.step] for m in batch]})
        self._metrics_sent_at = time.monotonic()

    def log_batch(self, params: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> None:
        self._queue({"op": "batch", "params": [[k, str(v)] for k, v in (params or {}).items()],
                     "tags": [[k, str(v)] for k, v in (tags or {}).items()]})

    def set_tags(self, tags: dict[str, str]) -> None:
        self.log_batch(tags=tags)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._write_and_upload(artifact_file, lambda path: path.write_text(text))

    def log_bytes(self, data: bytes, artifact_file: str) -> None:
        self._write_and_upload(artifact_file, lambda path: path.write_bytes(data))

    def log_figure(self, figure: Any, name: str) -> None:
        """Save a matplotlib figure as ``figures/<name>.png`` (``name`` made path-safe: labels may hold spaces or '/')."""
        name = figure_name(name)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(figure)  # logged: free it (long sweeps draw hundreds)
        self._write_and_upload(f"figures/{name}.png", lambda path: path.write_bytes(buffer.getvalue()))

    def log_history(self, history: pd.DataFrame) -> None:
        self._write_and_upload("history.parquet", lambda path: history.to_parquet(path, index=False))

    def save_checkpoint(self, name: str, payload: dict[str, Any]) -> None:
        """Serialise and upload ``checkpoints/<name>.pt`` in the background; pass a :func:`snapshot`.

        Buffered metrics are queued first: the single ordered worker then delivers every metric a
        checkpoint covers before the checkpoint, so a kill in between cannot leave ``--resume``
        a checkpoint ahead of the logged metrics (a permanent gap).
        """
        self._send_metrics()
        self._write_and_upload(f"checkpoints/{name}.pt", lambda path: torch.save(payload, path))

    def log_directory(self, source: str | Path, artifact_path: str) -> None:
        """Upload a directory's files under ``artifact_path``; copied first, so ``source`` may go away."""
        staged = Path(tempfile.mkdtemp(dir=self._staging)) / Path(artifact_path).name
        shutil.copytree(source, staged)
        self._queue({"op": "artifacts", "path": artifact_path}, staged)

    def _write_and_upload(self, artifact_file: str, write: Any) -> None:
        self._submit(self._write_then_deliver, artifact_file, write)

    def _write_then_deliver(self, artifact_file: str, write: Any) -> None:
        # A fresh folder per call: a spooled file is moved away and must not be overwritten by the next write.
        target = Path(tempfile.mkdtemp(dir=self._staging)) / Path(artifact_file).name
        partial = target.with_name(target.name + ".partial")
        write(partial)
        os.replace(partial, target)  # the staged file is never half-written
        artifact_dir = str(Path(artifact_file).parent) if "/" in artifact_file else None
        self._deliver({"op": "artifact", "path": artifact_dir}, target)
        if target.exists():
            shutil.rmtree(target.parent)

    def flush(self) -> None:
        """Send buffered metrics, wait for every queued call; re-raise the first that failed (outages excepted)."""
        self._send_metrics()
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self, status: str | None = None) -> None:
        """Flush; with ``status``, end the run with it (after everything else, spooled or not)."""
        try:
            if status is not None:
                self._send_metrics()
                self._queue({"op": "terminate", "status": status, "end_time": int(time.time() * 1000)})
            self.flush()
            if self.spooled:
                self._worker.submit(self._wait_for_server).result()
        finally:
            self._worker.shutdown(wait=True)
            shutil.rmtree(self._staging, ignore_errors=True)


def sync(root: Path | None = None) -> list[tuple[str, int, int, bool, str]]:
    """Deliver every spooled run under ``root`` in order: (run id, delivered, still waiting, run still
    alive, what is wrong with its spool or "") per run; one bad spool does not stop the others."""
    detect_outages_quickly()
    results = []
    for spool in spools_under(root or spool_root()):
        try:
            results.append(_sync_one(spool))
        except (ValueError, KeyError, OSError) as error:  # a corrupt journal line or a missing file
            results.append((spool.directory.name, 0, len(spool), False, f"{type(error).__name__}: {_first_line(error)}"))
    return results


def _sync_one(spool: Spool) -> tuple[str, int, int, bool, str]:
    meta = spool.meta
    if not spool.claim():
        return meta["run_id"], 0, len(spool), True, ""
    previous = mlflow.get_tracking_uri()
    # run.json keeps the URI with any password masked; the same server's URI from this shell has it.
    uri = previous if "***@" in meta["tracking_uri"] and redact_secrets(previous) == meta["tracking_uri"] else meta["tracking_uri"]
    client = MlflowClient(uri)
    mlflow.set_tracking_uri(uri)  # mlflow-artifacts:/ URIs resolve against it
    try:
        sent = deliver_spool(spool, client, get_artifact_repository(meta["artifact_uri"]), meta["run_id"])
    finally:
        mlflow.set_tracking_uri(previous)
    return meta["run_id"], sent or 0, len(spool), False, ""


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _say(message: str) -> None:
    """A note for the person watching, above any progress bar."""
    tqdm.write(f"innerlens: {message}", file=sys.stderr)


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
        raise ConfigError(f"no run {run_id!r} in tracking store {redact_secrets(mlflow.get_tracking_uri())}") from None
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
        raise ConfigError(f"{uri}: no such registered model version in {redact_secrets(mlflow.get_tracking_uri())} "
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
# Where a study's run executes (the Ray node), set by the executor around the task; added to the run's tags.
_placement: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("innerlens_placement", default={})


@contextlib.contextmanager
def placement(tags: dict[str, str]) -> Iterator[None]:
    """Nested runs started in here also carry these tags (the executor says where the task runs)."""
    token = _placement.set(tags)
    try:
        yield
    finally:
        _placement.reset(token)


def task_run(parent_run_id: str, task: str) -> tuple[str, str] | None:
    """(run id, status) of the run an earlier attempt of ``task`` started under the parent, if any.

    A task retried after its worker died continues that run (``--resume``) instead of starting a second one.
    """
    runs = MlflowClient().search_runs(
        [MlflowClient().get_run(parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`{TAG_TASK}` = '{task}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return (runs[0].info.run_id, runs[0].info.status) if runs else None


def end_run_as(run_id: str, status: str) -> None:
    """End a run that its own process can no longer end (its worker died)."""
    MlflowClient().set_terminated(run_id, status)


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
    check_tracking_store(client)
    outer_run = None
    context = _run_context.get()
    if resume:
        check_run_exists(resume, config.family_name)
        check_no_spool(resume)
        active = mlflow.start_run(run_id=resume)
    elif context is not None:
        active = mlflow.start_run(
            experiment_id=client.get_run(context.parent_run_id).info.experiment_id,
            run_name=run_name,
            nested=mlflow.active_run() is not None,
            parent_run_id=context.parent_run_id,
            tags={**context.tags, **_placement.get()},
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
    if not resume and context is None and not nested:
        _as_model_training(client, active.info.experiment_id)
    run_id = active.info.run_id
    if context is not None and context.on_start is not None and not resume:
        context.on_start(run_id)
    tracker = RunTracker(run_id)
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        # Under `mlflow run` the launcher has logged the params it was given already; a resumed run its own.
        logged = client.get_run(run_id).data.params if outer_run or resume else {}
        params = {**config.to_params(), **(context.params if context else {})}
        tags = {
            TAG_FAMILY: config.family_name,
            TAG_VARIANT: variant,
            TAG_SEED: str(getattr(config, "seed", "")),
            TAG_GIT_COMMIT: git_commit(),
            TAG_STEP_UNIT: step_unit,
        }
        # A resumed run keeps its record: only what it was killed before logging is added.
        tracker.log_batch(params={k: v for k, v in params.items() if k not in logged}, tags={} if resume else tags)
        if not resume:
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
            tracker.close(status)  # the end status goes last, after every metric and artifact
        finally:
            _leave_active_run()


def _leave_active_run() -> None:
    """Pop MLflow's fluent active run without the server call ``mlflow.end_run`` makes.

    The tracker has delivered (or, during an outage, spooled) the run's end already; another
    ``set_terminated`` here would fail in an outage and race the spool when the server returns.
    """
    stack = mlflow.tracking.fluent._active_run_stack.get()
    if stack:
        stack.pop()


def figure_name(name: str) -> str:
    """A safe artifact name: folders kept, every other character outside [A-Za-z0-9._=-] becomes '_'."""
    parts = [re.sub(r"[^A-Za-z0-9._=-]+", "_", part).strip("._") or "_" for part in name.split("/")]
    return "/".join(parts)


def ui_hint() -> str:
    """How to look at what was just logged."""
    uri = redact_secrets(mlflow.get_tracking_uri())
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"open the MLflow UI with:  mlflow ui --backend-store-uri {uri}"
