"""Getting calls to the server through outages: the spool of undelivered calls and ``innerlens sync``."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import mlflow
import requests
from botocore.exceptions import BotoCoreError
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from tqdm.auto import tqdm

from innerlens.spool import Spool, spools_under
from innerlens.tracking.redaction import redact_secrets
from innerlens.tracking.store import TAG_GENERATION, detect_outages_quickly, project_root

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


def deliver_spool(spool: Spool, client: MlflowClient, artifacts: Any, run_id: str,
                  before_first: Callable[[], None] | None = None) -> int | None:
    """Send a spool in order: how many entries went, or None when the server is still out (they wait).
    ``before_first`` runs once the journal has been read, before the first entry is sent."""
    pending = [before_first] if before_first else []

    def send(entry: dict[str, Any], file: Path | None) -> None:
        while pending:
            pending.pop()()
        send_entry(client, artifacts, run_id, entry, file)

    try:
        return spool.deliver(send)
    except Exception as error:
        if not is_outage(error):
            raise
        return None


class StaleSpool(Exception):
    """A spool an earlier attempt of its run wrote, before the run was resumed elsewhere."""


def check_generation(client: MlflowClient, meta: dict[str, str]) -> None:
    """Raise :class:`StaleSpool` when the run was resumed (elsewhere) after this spool's attempt wrote it."""
    current = int(client.get_run(meta["run_id"]).data.tags.get(TAG_GENERATION, "0"))
    written = int(meta.get("generation", "0"))
    if written < current:
        raise StaleSpool(f"written by attempt {written} of the run, which attempt {current} has resumed since; "
                         "delivering it would replay old metrics and an older checkpoint")


REFUSED = "refused"  # spools the server refused (a deleted run, no permission), set aside with their reason


def sync(root: Path | None = None) -> list[tuple[str, int, int, bool, str]]:
    """Deliver every spooled run under ``root`` in order: (run id, delivered, still waiting, run still
    alive, what is wrong with its spool or "") per run; one bad spool does not stop the others. A spool
    the server refuses (HTTP 4xx: its run was deleted, the user may not write it) is moved to
    ``<root>/refused/`` with a ``reason.txt``, so it neither blocks nor repeats on every sync."""
    detect_outages_quickly()
    root = root or spool_root()
    results = []
    for spool in spools_under(root):
        try:
            results.append(_sync_one(spool))
        except (ValueError, KeyError, OSError) as error:  # a corrupt journal line or a missing file
            results.append((spool.directory.name, 0, len(spool), False, f"{type(error).__name__}: {first_line(error)}"))
        except StaleSpool as error:
            run_id = spool.meta["run_id"]
            kept = set_aside(spool, root, str(error))
            results.append((run_id, 0, len(spool), False, f"stale: {error}; moved to {kept}"))
        except MlflowException as error:  # not an outage (deliver_spool waits those out): the server said no
            run_id = spool.meta["run_id"]
            kept = set_aside(spool, root, first_line(error))
            results.append((run_id, 0, len(spool), False, f"refused by the server ({first_line(error)}); moved to {kept}"))
    return results


def set_aside(spool: Spool, root: Path, reason: str) -> Path:
    """Move a refused spool under ``root/refused/`` with its reason, releasing it."""
    target = root / REFUSED / spool.directory.name
    target.parent.mkdir(parents=True, exist_ok=True)
    (spool.directory / "reason.txt").write_text(reason + "\n")
    spool.directory.rename(target)
    spool.release()
    return target


def waiting_spools(root: Path | None = None) -> list[tuple[str, int, str]]:
    """(run id, calls waiting, why) of every spool under ``root``, refused ones included, without
    touching them (``innerlens sync --list``)."""
    root = root or spool_root()
    listed = []
    for spool in spools_under(root):
        holder = "its run is still writing it" if not spool.claim() else "waiting for the server"
        spool.release()
        listed.append((spool.meta["run_id"], len(spool), holder))
    for spool in spools_under(root / REFUSED):
        reason = (spool.directory / "reason.txt").read_text().strip() if (spool.directory / "reason.txt").exists() else "refused"
        listed.append((spool.meta["run_id"], len(spool), f"refused: {reason}"))
    return listed


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
        for _ in spool.pending():  # a corrupt journal is reported before the server is asked anything
            pass
        sent = deliver_spool(spool, client, get_artifact_repository(meta["artifact_uri"]), meta["run_id"],
                             before_first=lambda: check_generation(client, meta))
    except Exception:
        mlflow.set_tracking_uri(previous)
        raise
    mlflow.set_tracking_uri(previous)
    spool.release()
    return meta["run_id"], sent or 0, len(spool), False, ""


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def say(message: str) -> None:
    """A note for the person watching, above any progress bar."""
    tqdm.write(f"innerlens: {message}", file=sys.stderr)

