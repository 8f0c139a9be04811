"""Config -> CLI -> params stay one source of truth, and bad input never starts a run."""
from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import yaml

from innerlens.cli import entry_points, main, normalize_args
from innerlens.config import ConfigError
from innerlens.families.self_modeling import SelfModelingConfig
from innerlens.mlproject import render_mlproject

ROOT = Path(__file__).resolve().parents[1]


def test_mlproject_matches_configs() -> None:
    text = (ROOT / "MLproject").read_text()
    assert text == render_mlproject(entry_points()), "regenerate with: innerlens mlproject > MLproject"
    document = yaml.safe_load(text)
    for entry in entry_points():
        declared = document["entry_points"][entry.name]["parameters"]
        fields = {s.name: s for s in entry.config.specs(include_hidden=False)}
        assert set(declared) == set(fields)
        for name, spec in fields.items():
            assert entry.config.from_strings({name: declared[name]["default"]}).to_dict()[name] == spec.default
        assert (ROOT / "entrypoints" / f"{entry.name}.py").exists()


def test_params_round_trip() -> None:
    config = SelfModelingConfig(variant="all_layers", target_accuracy=0.9, detach_target=False, llc_nbeta=3.5)
    params = config.to_params()
    assert "resume" not in params
    assert SelfModelingConfig.from_strings(params) == config


def test_mlflow_run_spellings_are_accepted() -> None:
    specs = list(SelfModelingConfig.specs())
    args = normalize_args(["--max_epochs", "3", "--detach_target", "false", "--seed=4", "--detach-target=true"], specs)
    assert args == ["--max-epochs", "3", "--no-detach-target", "--seed=4", "--detach-target"]


BAD_INPUTS = [
    ("self-modeling", ["--variant", "penultimate"], "--variant: unknown value 'penultimate'"),
    ("self-modeling", ["--train-fraction", "0.8"], "must sum to 1"),
    ("self-modeling", ["--samples", "many"], "--samples: expected an integer"),
    ("self-modeling", ["--samples", "20000"], "exceeds the 9409 distinct examples"),
    ("self-modeling", ["--n-heads", "5"], "--n-heads 5 must divide --d-model 64"),
    ("self-modeling", ["--n-layers", "2", "--variant", "middle_layer"], "needs --n-layers >= 3"),
    ("self-modeling", ["--target-accuracy", "1.5"], "--target-accuracy: must be between 0 and 1"),
    ("self-modeling", ["--device", "tpu"], "--device: unknown value 'tpu'"),
    ("self-modeling", ["--resume", "0123456789abcdef"], "--resume: no run '0123456789abcdef'"),
    ("self-modeling", ["--lr", "-1"], "--lr: must be > 0"),
    ("self-modeling", ["--detach-target", "maybe"], "--detach-target: expected true or false"),
    ("self-modeling", ["--p", "1"], "--p: must be >= 2"),
    ("self-modeling", ["--no-such-option", "1"], "No such option"),
    ("grokking", ["--p", "100"], "--p: must be an odd prime"),
    ("grokking", ["--task", "pow"], "--task: unknown value 'pow'"),
    ("grokking", ["--max-steps", "250"], "--max-steps 250 must be a multiple of --eval-every 100"),
    ("grokking", ["--n-heads", "8"], "--n-heads 8 x --d-head 32 must equal --d-model 128"),
    ("grokking", ["--analysis-every", "150"], "--analysis-every 150 must be a multiple of --eval-every 100"),
    ("grokking", ["--p", "3", "--train-fraction", "0.1", "--val-fraction", "0.45", "--test-fraction", "0.45"], "too few for the split fractions"),
    ("grokking", ["--batch-size", "5000"], "exceeds the 3830 training pairs"),
    ("grokking", ["--loss-dtype", "float16"], "--loss-dtype: unknown value"),
    ("grokking", ["--resume", "feedfacefeedface"], "--resume: no run 'feedfacefeedface'"),]


@pytest.mark.parametrize("command,args,message", BAD_INPUTS, ids=[f"{a[0]}{a[1][0]}" for a in BAD_INPUTS])
def test_bad_input_is_one_line_and_creates_no_run(
    command: str, args: list[str], message: str, local_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("innerlens: error: ") and message in err, err
    assert mlflow.search_runs(search_all_experiments=True).empty


@pytest.mark.parametrize(
    "args,message",
    [(["--seeds", "0,x"], "--seeds: expected an integer"), (["--variants", "baseline,nope"], "unknown value 'nope'")],
)
def test_comparison_bad_input(args: list[str], message: str, local_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["self-modeling-comparison", *args])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert mlflow.search_runs(search_all_experiments=True).empty


def test_config_error_is_raised_before_anything() -> None:
    with pytest.raises(ConfigError):
        SelfModelingConfig(val_fraction=0.0)
