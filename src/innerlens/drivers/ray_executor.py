"""Run a study's runs on a Ray cluster: one Ray task per run, sized in CPUs and (fractional) GPUs.

Ray schedules; MLflow still records every run (workers log to ``MLFLOW_TRACKING_URI`` themselves);
Optuna still decides trials. A task whose worker process or node dies is retried by Ray
(``max_retries``) and continues its MLflow run from the last checkpoint (see
:func:`innerlens.drivers.executor.study_run`). Ctrl-C or SIGTERM on the driver cancels the tasks:
each run ends KILLED, as with the local executor.
"""
from __future__ import annotations

import os
import re
import socket
from typing import Any, Callable

from innerlens.drivers.executor import Executor, TaskResult, settle
from innerlens.drivers.signals import terminate_as_interrupt
from innerlens.errors import ConfigError, RunFailed
from innerlens.tracking.redaction import redact_secrets, without_password

# Environment a worker needs to reach what the driver reaches (the run id is the driver's own). Ray keeps a
# runtime_env in its control store and shows it in its state API and logs, so nothing secret travels
# there: passwords, keys and tokens reach workers through their node's environment or a mounted secret.
_FORWARDED_PREFIXES = ("MLFLOW_", "INNERLENS_", "AWS_", "PG")
_NOT_FORWARDED = ("MLFLOW_RUN_ID",)
SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|CREDENTIAL|KEY|AUTH|SESSION", re.IGNORECASE)
PROBE_TIMEOUT_S = 300  # a worker's first start imports torch and MLflow: slow on a loaded node
CANCEL_GRACE_S = 60.0  # how long a cancelled task has to end its run KILLED before Ray is shut down


def worker_environment(tracking_uri: str) -> dict[str, str]:
    """What every task's process gets through Ray's runtime_env: the driver's tracking URI and the
    non-secret settings around it. Variables named like a secret are left out, and a password inside
    a URI is cut out of it (the worker's node supplies ``MLFLOW_TRACKING_PASSWORD`` and the like)."""
    env = {k: without_password(v) for k, v in os.environ.items()
           if k.startswith(_FORWARDED_PREFIXES) and k not in _NOT_FORWARDED and not SECRET_NAME.search(k)}
    env["MLFLOW_TRACKING_URI"] = without_password(tracking_uri)
    return env


def is_local_store(uri: str) -> bool:
    """A tracking or storage URI only this machine can open (a file, SQLite, a journal file)."""
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def _node_ips() -> set[str]:
    import ray

    return {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}


def cluster_is_local() -> bool:
    """Every live node of the connected cluster runs on this machine (files here are files there)."""
    import ray

    here = {ray.util.get_node_ip_address(), "127.0.0.1", socket.gethostbyname(socket.gethostname())}
    return _node_ips() <= here


def _probe(tracking_uri: str) -> str:
    """On a worker: the node id, or raise the one-line reason this worker cannot reach the tracking server."""
    import ray

    from innerlens import tracking

    tracking.configure_tracking()
    tracking.check_tracking_store(uri=tracking_uri)
    return ray.get_runtime_context().get_node_id()


def _run_task(function: Callable[[Any], Any], argument: Any, threads: int) -> Any:
    """On a worker: the task, with its thread count, its node recorded on the run it starts."""
    import ray
    import torch

    from innerlens import tracking

    torch.set_num_threads(threads)
    with tracking.placement({tracking.TAG_RAY_NODE: ray.get_runtime_context().get_node_id()}):
        return function(argument)


class RayExecutor(Executor):
    """One Ray task per run on the cluster at ``address`` (None: ``RAY_ADDRESS``, else a local Ray)."""

    def __init__(self, address: str | None, cpus_per_run: float, gpus_per_run: float, max_retries: int,
                 progress: bool = True, unit: str = "runs") -> None:
        self.address, self.cpus, self.gpus = address, cpus_per_run, gpus_per_run
        self.max_retries, self.progress, self.unit = max_retries, progress, unit
        self._started = False
        self._pending: dict[Any, str] = {}  # object reference -> label

    def describe(self) -> str:
        return f"Ray ({self.cpus:g} CPU, {self.gpus:g} GPU per run)"

    def start(self) -> None:
        """Join (or start) the cluster and check, in one line, that its workers can record runs."""
        import ray

        from innerlens import tracking

        if ray.is_initialized():
            return
        address = self.address or os.environ.get("RAY_ADDRESS")
        try:
            ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ConfigError(f"--executor ray: cannot join the Ray cluster at {address}: {str(error).strip().splitlines()[0]}") from None
        self._started = True
        terminate_as_interrupt()  # ray.init installs its own SIGTERM handler, which exits without ending any run
        uri = tracking.configure_tracking()
        if is_local_store(uri) and not cluster_is_local():
            self.close()
            raise ConfigError(f"--executor ray: the tracking store {redact_secrets(uri)} is a file on this machine, which "
                              "other nodes cannot open; set MLFLOW_TRACKING_URI to the team's server (deploy/stack)")
        self.env = worker_environment(tracking.tracking_uri())
        self._check_workers_reach(tracking.tracking_uri())

    def _check_workers_reach(self, uri: str) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = ray.remote(_probe)
        nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
        refs = [probe.options(num_cpus=0, max_retries=0, runtime_env={"env_vars": self.env},
                              scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(uri)
                for node in nodes]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
        for node, ref in zip(nodes, refs):
            try:
                if ref not in ready:
                    raise TimeoutError(f"no answer within {PROBE_TIMEOUT_S} s")
                ray.get(ref)
            except Exception as error:
                self.close()
                cause = getattr(error, "cause", None) or error
                message = str(cause).strip().splitlines()
                raise ConfigError(f"--executor ray: a worker on node {node[:12]} cannot reach the tracking server "
                                  f"{redact_secrets(uri)}: {message[-1] if message else type(cause).__name__}") from None

    def free(self) -> int:
        """How many more runs of this size the cluster holds now (it holds at least one)."""
        import ray

        resources = ray.cluster_resources()
        fits = int(resources.get("CPU", 1) // self.cpus) if self.cpus else 1 << 30
        if self.gpus:
            fits = min(fits, int(resources.get("GPU", 0) // self.gpus))
            if fits == 0:
                raise ConfigError(f"--gpus-per-run {self.gpus:g}: the Ray cluster has no GPU")
        return max(fits, 1) - len(self._pending)

    def submit(self, label: str, function: Callable[[Any], Any], argument: Any) -> None:
        import ray

        remote = ray.remote(_run_task).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.max_retries, retry_exceptions=False,
            scheduling_strategy="SPREAD", runtime_env={"env_vars": self.env},
        )
        self._pending[remote.remote(function, argument, max(1, int(self.cpus)))] = label

    def busy(self) -> bool:
        return bool(self._pending)

    def completed(self, timeout: float) -> list[TaskResult]:
        import ray

        if not self._pending:
            return []
        done, _ = ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        return [settle(self._pending.pop(ref), lambda: result_of(ref)) for ref in done]

    def cancel(self) -> None:
        """The tasks get KeyboardInterrupt and end their runs KILLED; Ray is shut down only after they
        have (shutting it down at once would kill them before their runs are marked)."""
        import ray

        for ref in self._pending:
            ray.cancel(ref)
        ray.wait(list(self._pending), num_returns=len(self._pending), timeout=CANCEL_GRACE_S)
        self._pending = {}

    def close(self) -> None:
        """Leave the cluster (a Ray instance this executor started stops with it)."""
        import ray

        if self._started:
            ray.shutdown()
            self._started = False


def result_of(ref: Any) -> Any:
    """A task's value; its failure as the task's own exception, or :class:`RunFailed` for a lost worker."""
    import ray
    from ray.exceptions import RayTaskError

    try:
        return ray.get(ref)
    except RayTaskError as error:  # the task raised: its own exception, with its own message
        raise (error.cause if isinstance(error.cause, BaseException) else RunFailed(str(error).strip().splitlines()[-1])) from None
    except ray.exceptions.RayError as error:  # the worker or node died more often than max_retries
        lines = str(error).strip().splitlines()
        raise RunFailed(f"{type(error).__name__}: {lines[0] if lines else ''}") from None
