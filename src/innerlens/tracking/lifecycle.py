"""A run's life: start (or resume, or nest under a study), end with the right status, reopen to add."""
from __future__ import annotations

import contextlib
import contextvars
import getpass
import os
import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from innerlens.config import Config
from innerlens.tracking.preflight import check_no_spool, check_run_exists, check_tracking_store
from innerlens.tracking.redaction import redact_secrets
from innerlens.tracking.store import (
    TAG_FAMILY,
    TAG_GENERATION,
    TAG_GIT_COMMIT,
    TAG_RESUMED,
    TAG_SEED,
    TAG_STEP_UNIT,
    TAG_VARIANT,
    configure_tracking,
    experiment_id,
    git_commit,
    mark_as_model_training,
)
from innerlens.tracking.writer import RunTracker


@contextlib.contextmanager
def open_finished_run(run_id: str) -> Iterator[RunTracker]:
    """Add artifacts and tags to an existing run without reopening it (its status stays as it was)."""
    configure_tracking()
    tracker = RunTracker(run_id)
    try:
        yield tracker
    finally:
        tracker.close()


class EndsRunAs(Exception):
    """Raised inside a run to end it with ``status`` rather than FAILED; any other exception fails it."""

    status = "FAILED"


@dataclass(frozen=True)
class RunContext:
    """Where a driver's run belongs: its parent run, extra tags and params, and who to tell its id."""

    parent_run_id: str
    tags: dict[str, str]
    params: dict[str, str]
    on_start: Callable[[str], None] | None = None  # told the run id once the run exists


PARENT_RUN_TAG = "mlflow.parentRunId"
# The runs this process has open, innermost last (innerlens keeps its own list instead of MLflow's
# private fluent active-run stack): a run started inside another never reopens `mlflow run`'s run.
_open_runs: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("innerlens_open_runs", default=())


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


def end_run_as(run_id: str, status: str) -> None:
    """End a run that its own process can no longer end (its worker died)."""
    MlflowClient().set_terminated(run_id, status)


@contextlib.contextmanager
def start_run(
    config: Config,
    *,
    variant: str,
    run_name: str | None = None,
    parent: RunContext | None = None,
    step_unit: str = "epoch",
) -> Iterator[RunTracker]:
    """Open (or, with ``config.resume``, reopen) an MLflow run for ``config``, nested under
    ``parent`` when a driver gives one.

    A new run gets params, tags and ``config.json``; a resumed run keeps the params it has (and
    gets any it was killed before logging). A crash ends the run FAILED (KILLED on Ctrl-C) after
    flushing what was queued, so the last checkpoint and every logged metric survive for ``--resume``.
    """
    configure_tracking()
    resume = getattr(config, "resume", None)
    client = MlflowClient()
    check_tracking_store(client)
    outer_run = None
    context = parent
    if resume:
        check_run_exists(resume, config.family_name)
        check_no_spool(resume)
        run_id = _reopen_run(client, resume)
    elif context is not None:
        experiment = client.get_run(context.parent_run_id).info.experiment_id
        run_id = _create_run(client, experiment, run_name, context.parent_run_id, {**context.tags, **_placement.get()})
    else:
        outer_run = os.environ.get("MLFLOW_RUN_ID") if not _open_runs.get() else None
        if outer_run:
            run_id = _reopen_run(client, outer_run)
        else:
            run_id = _create_run(client, experiment_id(client), run_name, None, {})
    if outer_run:
        # Consumed: nested runs started later must not reopen the launcher's run.
        os.environ.pop("MLFLOW_RUN_ID", None)
    if not resume and context is None:
        mark_as_model_training(client, client.get_run(run_id).info.experiment_id)
    token = _open_runs.set((*_open_runs.get(), run_id))
    if context is not None and context.on_start is not None and not resume:
        context.on_start(run_id)
    generation = int(client.get_run(run_id).data.tags.get(TAG_GENERATION, "-1")) + 1 if resume else 0
    tracker = RunTracker(run_id, generation=generation)
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        # Under `mlflow run` the launcher has logged the params it was given already; a resumed run its own.
        logged = client.get_run(run_id).data.params if outer_run or resume else {}
        params = {name: redact_secrets(value) for name, value in {**config.to_params(), **(context.params if context else {})}.items()}
        tags = {
            TAG_FAMILY: config.family_name,
            TAG_VARIANT: variant,
            TAG_SEED: str(getattr(config, "seed", "")),
            TAG_GIT_COMMIT: git_commit(),
            TAG_STEP_UNIT: step_unit,
        }
        # A resumed run keeps its record: only what it was killed before logging is added.
        record = {TAG_GENERATION: str(generation)}
        if resume:
            record[TAG_RESUMED] = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} on {socket.gethostname()} by {getpass.getuser()}"
        tracker.log_batch(params={k: v for k, v in params.items() if k not in logged}, tags=record if resume else {**tags, **record})
        if not resume:
            tracker.log_text(redact_secrets(config.to_json()), "config.json")
        yield tracker
        status = RunStatus.to_string(RunStatus.FINISHED)
    except KeyboardInterrupt:
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    except EndsRunAs as error:  # a stop that is not a failure (a pruned Optuna trial: KILLED)
        status = error.status
        raise
    finally:
        try:
            tracker.close(status)  # the end status goes last, after every metric and artifact
        finally:
            _open_runs.reset(token)


def _create_run(client: MlflowClient, experiment: str, run_name: str | None, parent_run_id: str | None,
                tags: dict[str, str]) -> str:
    """A new run with the source, user and git tags MLflow's UI shows (as ``mlflow.start_run`` adds them)."""
    from mlflow.tracking.context.registry import resolve_tags

    resolved = resolve_tags(tags)
    if parent_run_id:
        resolved[PARENT_RUN_TAG] = parent_run_id
    return client.create_run(experiment, run_name=run_name, tags=resolved).info.run_id


def _reopen_run(client: MlflowClient, run_id: str) -> str:
    """Mark an existing run RUNNING again (a resumed run, or the one ``mlflow run`` created for us)."""
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    return run_id
