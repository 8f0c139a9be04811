"""The model registry: register a run's model, and download a registered one."""
from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from innerlens.errors import ConfigError
from innerlens.tracking.redaction import redact_secrets

REGISTRY_PREFIX = "models:/"


def register_model(run_id: str, artifact_path: str, name: str, tags: dict[str, str] | None = None) -> str:
    """Register ``artifact_path`` of a run as a new version of ``name`` with ``tags``; return the version."""
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
    return str(client.create_model_version(name, source, run_id=run_id, tags=tags).version)


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

