"""RunTracker: one background writer per run, so training never waits on the tracking server."""
from __future__ import annotations

import io
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.entities import Metric
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from innerlens.spool import Spool
from innerlens.tracking.delivery import MAX_METRICS_PER_BATCH, deliver_spool, first_line, is_outage, say, send_entry, spool_root
from innerlens.tracking.model_registry import register_model as register_version
from innerlens.tracking.reads import list_checkpoints, load_checkpoint
from innerlens.tracking.redaction import redact_secrets
from innerlens.tracking.store import figure_name


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
        generation: int = 0,
    ) -> None:
        self.run_id = run_id
        self.generation = generation  # the run's resume count: its spool says which attempt wrote it
        self.metrics_interval_s = metrics_interval_s
        self.retry_interval_s = retry_interval_s
        self.outage_wait_s = float(os.environ.get("INNERLENS_OUTAGE_WAIT_S", 120)) if outage_wait_s is None else outage_wait_s
        self._metric_buffer: list[Metric] = []
        self._metrics_sent_at = -math.inf
        self.logged: list[tuple[int, str, float]] = []  # every metric this attempt logged: what a study reads back
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
        meta = {"run_id": self.run_id, "tracking_uri": redact_secrets(mlflow.get_tracking_uri()), "artifact_uri": self.artifact_uri,
                "generation": str(self.generation)}
        self._spool = Spool.own(directory, meta)  # held while the run lives: `innerlens sync` leaves it to the run
        self._retried_at = time.monotonic()
        say(f"tracking server unreachable ({first_line(error)}); training goes on, calls are spooled in {directory}")

    def _retry(self) -> bool:
        """Deliver the spool in order; True when it is empty (the server is back)."""
        assert self._spool is not None
        self._retried_at = time.monotonic()
        sent = deliver_spool(self._spool, self.client, self._artifacts, self.run_id)
        if sent is None:
            return False
        say(f"tracking server is back: delivered {sent} spooled calls")
        self._spool = None
        return True

    def _wait_for_server(self) -> None:
        """On the worker thread, at close: retry the spool until it empties or ``outage_wait_s`` passes."""
        deadline = time.monotonic() + self.outage_wait_s
        while self.spooled and not self._retry() and time.monotonic() < deadline:
            time.sleep(min(self.retry_interval_s, max(0.0, deadline - time.monotonic())))
        if self.spooled:
            say(f"tracking server still unreachable: {self.spooled} calls of run {self.run_id} wait in "
                 f"{self._spool.directory}; deliver them with `innerlens sync` once it is back")

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Queue one step's metrics; they leave in a single ``log_batch`` with any buffered steps."""
        timestamp = int(time.time() * 1000)
        self._metric_buffer.extend(Metric(key, float(value), timestamp, step) for key, value in metrics.items())
        self.logged.extend((step, key, float(value)) for key, value in metrics.items())
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
        """Serialise and upload ``checkpoints/<name>.pt`` in the background; pass a :func:`innerlens.engine.snapshot`.

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

    def list_checkpoints(self, folder: str = "") -> list[str]:
        """Checkpoint names under ``checkpoints/<folder>`` of this run (delivered ones: flush first)."""
        self.flush()
        return list_checkpoints(self.run_id, folder)

    def load_checkpoint(self, name: str) -> dict[str, Any]:
        self.flush()
        return load_checkpoint(self.run_id, name)

    def register_model(self, artifact_path: str, name: str) -> str:
        """Register ``artifact_path`` of this run (after what was queued has gone) as a new version of ``name``."""
        self.flush()
        return register_version(self.run_id, artifact_path, name)

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
