"""What the tests share besides fixtures: the checkout, tiny configs, a clean environment."""
from __future__ import annotations

import os
import shlex
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parents[1]

# Small enough for CI's two cores, large enough that every code path runs.
# The tiny self-modeling transformer every in-process test builds (keyword arguments of its Config),
# with the run controls those tests share; each test adds what it is about (epochs, LLC settings).
TINY_MODEL = dict(p=23, samples=400, n_layers=3, d_model=32, n_heads=4, d_mlp=64, batch_size=64, checkpoint_interval=0.0,
                  device="cpu")
TINY_LLC = dict(llc_chains=2, llc_draws=5, llc_burnin=2)

TINY = {
    "samples": "400",
    "p": "23",
    "n_layers": "3",
    "d_model": "32",
    "n_heads": "4",
    "d_mlp": "64",
    "batch_size": "64",
    "max_epochs": "3",
    "llc_every": "2",
    "llc_draws": "5",
    "llc_chains": "2",
    "llc_burnin": "0",
    "lr": "0.003",
}


# The same, as tune's --fixed string (no LLC).
TINY_SELF_MODELING = "samples=400 p=23 n_layers=3 d_model=32 n_heads=4 d_mlp=64 llc_every=0 measure_llc=false"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_args(**overrides: str) -> list[str]:
    values = {**TINY, **overrides}
    return [arg for key, value in values.items() for arg in (f"--{key.replace('_', '-')}", value)]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(extra)
    return env


@dataclass(frozen=True)
class TeamStack:
    """A running ``deploy/stack``: its state directory and the client settings it wrote."""

    directory: Path
    env: dict[str, str]

    @property
    def tracking_uri(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    def database_url(self, name: str) -> str:
        """A libpq URL of one of the stack's databases (the password comes from PGPASSWORD)."""
        return self.env["INNERLENS_OPTUNA_STORAGE"].rsplit("/", 1)[0] + f"/{name}"


def client_env(path: Path) -> dict[str, str]:
    pairs = [word for line in path.read_text().splitlines() for word in shlex.split(line)[1:]]
    return dict(pair.split("=", 1) for pair in pairs)


class MlflowRun(Protocol):
    def __call__(self, entry: str, params: dict[str, str], *, experiment: str, env: dict[str, str],
                 timeout: int = 900) -> subprocess.CompletedProcess: ...
