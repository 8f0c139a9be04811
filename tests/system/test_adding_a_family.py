"""The README's "Adding a family", followed literally in a copy of the project: a toy family is
declared in the places the README names, and nowhere else; then the layout tests pass on the copy,
and the new family runs, tunes and compares through the CLI like the built-in ones."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
from mlflow.tracking import MlflowClient
from support import ROOT, clean_env

TOY_CONFIG = '''"""toy's options."""
from __future__ import annotations

from dataclasses import dataclass

from innerlens.config import EpochConfig, option, positive
from innerlens.search_space import SearchSpec


@dataclass(frozen=True)
class ToyConfig(EpochConfig):
    family_name = "toy"
    search = SearchSpec("val/loss", "minimize", lambda trial: {"lr": trial.suggest_float("lr", 1e-3, 0.3, log=True)})

    width: int = option(4, "Hidden units of the toy regressor.", check=positive)
    lr: float = option(0.05, "SGD learning rate.", check=positive)
'''

TOY_FAMILY = '''"""toy: a small regressor on a fixed noisy line; the README's minimal family."""
from __future__ import annotations

from typing import Any

import torch

from innerlens.configs.toy import ToyConfig
from innerlens.engine import FitResult, Selection
from innerlens.plan import Plan, RunLog


class ToyExperiment:
    def __init__(self, config: ToyConfig, device: torch.device) -> None:
        self.generator = torch.Generator().manual_seed(config.seed)
        x = torch.linspace(-1, 1, 96).unsqueeze(1)
        y = 2 * x + 0.1 * torch.randn(x.shape, generator=self.generator)
        self.splits = {"train": (x[::2], y[::2]), "val": (x[1::4], y[1::4]), "test": (x[3::4], y[3::4])}
        torch.manual_seed(config.seed)
        self.model = torch.nn.Sequential(torch.nn.Linear(1, config.width), torch.nn.Tanh(),
                                         torch.nn.Linear(config.width, 1)).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr)

    def _loss(self, split: str) -> torch.Tensor:
        x, y = self.splits[split]
        return torch.nn.functional.mse_loss(self.model(x), y)

    def train_round(self, epoch: int) -> dict[str, float]:
        loss = self._loss("train")
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"train/loss": float(loss)}

    def evaluate(self, epoch: int) -> dict[str, float]:
        with torch.no_grad():
            return {"val/loss": float(self._loss("val")), "test/loss": float(self._loss("test"))}


def build(config: ToyConfig, device: torch.device, **options: Any) -> Plan:
    selection = Selection(monitor="val/loss", mode="min", patience=config.patience)
    return Plan(ToyExperiment(config, device), variant=f"width{config.width}", run_name=f"toy-s{config.seed}",
                selection=selection, rounds=config.max_epochs)


def report(log: RunLog, plan: Plan, fit: FitResult) -> None:
    log.log_metrics(fit.state.best_step, {"final/val_loss": fit.best_metrics["val/loss"]})
'''


def _copy_project(target: Path) -> None:
    """The tracked files a family touches and the tests that hold the layout (no build outputs)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src", target / "src", ignore=ignore)
    shutil.copytree(ROOT / "entrypoints", target / "entrypoints", ignore=ignore)
    shutil.copy(ROOT / "MLproject", target / "MLproject")
    (target / "tests" / "unit").mkdir(parents=True)
    for name in ("conftest.py", "support.py", "unit/test_structure.py", "unit/test_config_cli.py"):
        shutil.copy(ROOT / "tests" / name, target / "tests" / name)


def _declare_toy(project: Path) -> None:
    """Exactly the steps the README lists, each an edit a person would make."""
    package = project / "src" / "innerlens"
    (package / "configs" / "toy.py").write_text(TOY_CONFIG)
    (package / "families" / "toy.py").write_text(TOY_FAMILY)
    registry = package / "registry.py"
    text = registry.read_text()
    text = text.replace("from innerlens.configs.metalign import MetalignConfig\n",
                        "from innerlens.configs.metalign import MetalignConfig\nfrom innerlens.configs.toy import ToyConfig\n")
    text = text.replace("\n\nFAMILIES: tuple", '\n\ndef _toy() -> ModuleType:\n    from innerlens.families import toy\n\n'
                        '    return toy\n\n\nFAMILIES: tuple')
    text, added = re.subn(r"\n\)\n", '\n    EntryPoint("toy", ToyConfig, "A toy regressor.", _toy, headline_metrics=("train/loss", '
                          '"val/loss")),\n)\n', text, count=1)
    assert added == 1, "registry.FAMILIES changed shape: update this test and the README together"
    registry.write_text(text)


def _innerlens(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", "from innerlens.cli import main; main()", *args], cwd=project,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_family_added_as_the_readme_says_runs_tunes_and_compares(tmp_path: Path) -> None:
    project = tmp_path / "project"
    _copy_project(project)
    _declare_toy(project)
    env = clean_env(PYTHONPATH=os.pathsep.join([str(project / "src"), str(project / "tests")]),
                    MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", MLFLOW_EXPERIMENT_NAME="toy",
                    INNERLENS_HOME=str(tmp_path))
    _innerlens(project, env, "mlproject", "--write")  # `make mlproject`: the MLproject entry and entrypoints/toy.py
    assert (project / "entrypoints" / "toy.py").exists()
    assert "toy:" in (project / "MLproject").read_text()

    layout = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/test_structure.py",
                             "tests/unit/test_config_cli.py", "-k", "structure or mlproject or derive or registry"], cwd=project,
                            env=env, capture_output=True, text=True, timeout=600)
    assert layout.returncode == 0, layout.stdout[-3000:]  # the structure and declaration tests hold on the copy

    ran = _innerlens(project, env, "toy", "--width", "8", "--max-epochs", "20", "--patience", "0")
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("toy").experiment_id
    (run,) = client.search_runs([experiment], "tags.`innerlens.family` = 'toy'")
    assert run.info.status == "FINISHED"
    assert run.data.metrics["final/val_loss"] < 0.5  # it learnt the line (the variance of y is about 1.3)
    shown = ran.stdout.splitlines()[1]  # after "run ... finished": its declared headline metrics at the chosen step
    assert shown.startswith("at the validation-chosen evaluation: train/loss ") and ", val/loss " in shown
    assert float(shown.split("val/loss ")[1]) == float(f"{run.data.metrics['final/val_loss']:.4g}")

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _innerlens(project, env, "tune", "--family", "toy", "--n-trials", "3", "--sampler", "random", "--pruner", "none",
               "--storage", storage, "--fixed", "max_epochs=10 patience=0")
    study = optuna.load_study(study_name="tune-toy", storage=storage)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3
    assert study.best_value == min(t.value for t in study.trials)  # minimised, on validation loss

    # The width-8 run against the tune trials (width 4), on the family's own headline metrics.
    _innerlens(project, env, "compare", "--family", "toy", "--output-dir", str(tmp_path / "report"))
    compare_run = client.search_runs([experiment], "tags.`innerlens.family` = 'compare'")[0]
    summary = pd.read_csv(client.download_artifacts(compare_run.info.run_id, "tables/summary.csv", str(tmp_path)))
    assert set(summary["key"]) == {"train/loss", "val/loss"}  # the toy's declared headline metrics, without --metrics
    assert {"width4", "width8"} <= set(summary["group"])
    assert "width8" in (tmp_path / "report" / "report.html").read_text()
