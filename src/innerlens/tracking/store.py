"""Where runs go: the tracking store, the experiment, the tags innerlens sets, and how to look at them."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from innerlens.errors import ConfigError
from innerlens.tracking.redaction import redact_secrets

DEFAULT_EXPERIMENT = "innerlens"


TAG_FAMILY = "innerlens.family"


TAG_VARIANT = "innerlens.variant"


TAG_SEED = "innerlens.seed"


TAG_GIT_COMMIT = "innerlens.git_commit"


TAG_STEP_UNIT = "innerlens.step_unit"


TAG_TASK = "innerlens.task"  # a study's name for one of its runs: how a retried task finds the run it started
# How many times the run was resumed (0: never); its spool carries it, so `sync` drops calls an
# earlier attempt left on a node after the run was resumed elsewhere.
TAG_GENERATION = "innerlens.generation"
TAG_RESUMED = "innerlens.resumed"  # when, where and by whom the latest resume ran
TAG_UNIT = "innerlens.executor_task"  # the executor's task that trains the run (its task, or its stacked cell)


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
    try:
        mlruns.mkdir(parents=True, exist_ok=True)
        if not os.access(mlruns, os.W_OK):
            raise PermissionError(mlruns)
    except OSError:
        where = "INNERLENS_HOME" if "INNERLENS_HOME" in os.environ else "the checkout"
        raise ConfigError(f"cannot write the embedded store at {mlruns} ({where}); point INNERLENS_HOME at a "
                          "writable directory or set MLFLOW_TRACKING_URI") from None
    return f"sqlite:///{mlruns / 'mlflow.db'}", mlruns / "artifacts"


TRACKING_SCHEMES = ("file", "http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")


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
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else "file"
    if scheme not in TRACKING_SCHEMES:
        raise ConfigError(f"MLFLOW_TRACKING_URI={redact_secrets(uri)}: unknown scheme {scheme!r}; use http(s)://host:port, "
                          "sqlite:///path, postgresql://... or unset it for the embedded store")
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


def experiment_id(client: MlflowClient) -> str:
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


def mark_as_model_training(client: MlflowClient, experiment_id: str) -> None:
    """Tag an experiment someone else created (``mlflow run --experiment-name``) as model training, once."""
    key, kind = EXPERIMENT_KIND
    if key not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, key, kind)


def git_commit() -> str:
    """The commit the code came from: git's, else the one an image was built from (INNERLENS_GIT_COMMIT)."""
    baked = os.environ.get("INNERLENS_GIT_COMMIT", "unknown")
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return baked
    return out.stdout.strip() if out.returncode == 0 else baked


def figure_name(name: str) -> str:
    """A safe artifact name: folders kept, every other character outside [A-Za-z0-9._=-] becomes '_'."""
    parts = [re.sub(r"[^A-Za-z0-9._=-]+", "_", part).strip("._") or "_" for part in name.split("/")]
    return "/".join(parts)


LOCAL_UI = "http://127.0.0.1:5000"  # what `mlflow ui` serves by default
# MLflow 3.17's UI opens an experiment in its GenAI view unless told otherwise; this URL parameter (read by
# its workflow-type provider before the per-browser setting) opens the Machine learning view's runs table.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def runs_table(base: str, experiment: str) -> str:
    """The experiment's runs table in the UI's Machine learning view, whatever the browser last chose."""
    return f"{base.rstrip('/')}/#/experiments/{experiment}/runs?{MODEL_TRAINING_VIEW}"


def run_page(base: str, run_id: str, experiment: str, *, artifact: str | None = None) -> str:
    """The MLflow UI page of a run (its Overview, or with ``artifact`` its Artifacts tab at that file),
    in the Machine learning view (checked in headless Chromium: tests/system/test_ui_links.py)."""
    page = f"{base.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"
    return f"{page}/artifacts/{artifact}?{MODEL_TRAINING_VIEW}" if artifact else f"{page}?{MODEL_TRAINING_VIEW}"


def ui_hint(run_id: str | None = None, artifacts: tuple[str, ...] = ()) -> str:
    """How to look at what was just logged: the run's page (and ``artifacts``' pages) on the server in
    use; for a local store, the ``mlflow ui`` command and the pages it will serve."""
    uri = redact_secrets(mlflow.get_tracking_uri())
    served = uri.startswith(("http://", "https://"))
    lines = [] if served else [f"open the MLflow UI with:  mlflow ui --backend-store-uri {uri}"]
    if run_id is None:
        return "\n".join(lines) or f"open {uri} in a browser"
    try:
        experiment = MlflowClient().get_run(run_id).info.experiment_id
    except Exception:  # the server is out (the run's calls wait in its spool): say where to look later
        lines.append(f"run {run_id}: the tracking server did not answer; its page is under {uri} once it is back")
        return "\n".join(lines)
    base = uri if served else LOCAL_UI
    lines.append(f"run page: {run_page(base, run_id, experiment)}")
    lines.append(f"all runs: {runs_table(base, experiment)}")
    lines += [f"{name}: {run_page(base, run_id, experiment, artifact=name)}" for name in artifacts]
    return "\n".join(lines)


def tracking_uri() -> str:
    """The tracking store in use (after :func:`configure_tracking`)."""
    return mlflow.get_tracking_uri()
