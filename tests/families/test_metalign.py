"""metalign on a local store: bad input fails with one line before any run is created."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from innerlens.data.embeddings import synthetic_objects


@pytest.fixture
def objects() -> tuple[torch.Tensor, torch.Tensor]:
    features, reference = synthetic_objects(300, 6, 16, 0.3, seed=0)
    return torch.from_numpy(features), torch.from_numpy(reference)


def test_bad_input_fails_before_any_run(tmp_path: Path, local_store: str) -> None:
    result = subprocess.run(
        ["innerlens", "metalign", "--eval-dims", "0,40", "--synthetic-objects", "300", "--sequence-length", "20"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["innerlens: error: --eval-dims [40] out of range: the reference has dimensions 0..23"]
    assert MlflowClient(local_store).search_runs([MlflowClient(local_store).get_experiment_by_name("tests").experiment_id]) == []
