"""Checks made before a run is created, so bad input or an unreachable server is one line and no run."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, Iterator

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from innerlens.errors import ConfigError
from innerlens.spool import Spool
from innerlens.tracking.delivery import first_line, is_outage, spool_root
from innerlens.tracking.reads import load_checkpoint, load_config
from innerlens.tracking.redaction import redact_secrets
from innerlens.tracking.store import TAG_FAMILY, configure_tracking

PREFLIGHT_TIMEOUT_S = 10  # a server that accepts connections but never answers: an error in seconds, not minutes


QUICK_REQUESTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(PREFLIGHT_TIMEOUT_S), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
_quick_lock = threading.Lock()
_quick_holders = 0
_quick_saved: dict[str, str | None] = {}


@contextlib.contextmanager
def _quick_requests() -> Iterator[None]:
    """MLflow's HTTP calls in this block give up after one try of PREFLIGHT_TIMEOUT_S; the settings
    in force before (the user's, or :func:`detect_outages_quickly`'s) come back when the last of
    several overlapping blocks ends (stacked seeds run their pre-flights in threads at once; the
    environment is the process's, so the first to enter saves it and the last to leave restores it)."""
    global _quick_holders, _quick_saved
    with _quick_lock:
        if _quick_holders == 0:
            _quick_saved = {key: os.environ.get(key) for key in QUICK_REQUESTS}
            os.environ.update(QUICK_REQUESTS)
        _quick_holders += 1
    try:
        yield
    finally:
        with _quick_lock:
            _quick_holders -= 1
            if _quick_holders == 0:
                for key, value in _quick_saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value


def check_tracking_store(client: MlflowClient | None = None, uri: str | None = None) -> None:
    """A one-line error, before anything is logged, when the tracking store cannot be used.

    Quiet when the store answers (or refuses) at once; after 3 s of waiting it says whom it waits for.
    """
    client = client or MlflowClient(uri)
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
            raise ConfigError(f"tracking server {redact_secrets(uri)} is unreachable ({first_line(error)}); start it, or unset "
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


def resumable_config(run_id: str, family: str, force: bool = False) -> dict[str, Any]:
    """The stored ``config.json`` of the run ``--resume`` names, after the checks a resume needs (a
    reachable store, a run of this family that is not RUNNING unless ``force``, no undelivered spool,
    a checkpoint this version reads); empty if it was killed before logging one."""
    from innerlens.engine import check_checkpoint_format

    configure_tracking()
    client = MlflowClient()
    check_tracking_store(client)
    check_run_exists(run_id, family)
    if client.get_run(run_id).info.status == "RUNNING" and not force:
        raise ConfigError(f"--resume {run_id}: the run is RUNNING, so another process may be training it; if that "
                          "process is gone (SIGKILL, a lost node), add --force-resume")
    check_no_spool(run_id)
    if has_checkpoint(run_id):
        check_checkpoint_format(load_checkpoint(run_id), run_id)
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

