"""Config -> CLI -> params stay one source of truth, and bad input never starts a run."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from innerlens.cli import normalize_args
from innerlens.commands import entry_points
from innerlens.errors import ConfigError
from innerlens.families.self_modeling import SelfModelingConfig
from innerlens.mlproject import render_mlproject

ROOT = Path(__file__).resolve().parents[2]


def test_mlproject_matches_configs() -> None:
    text = (ROOT / "MLproject").read_text()
    assert text == render_mlproject(entry_points()), "regenerate with: innerlens mlproject --write"
    document = yaml.safe_load(text)
    for entry in entry_points():
        declared = document["entry_points"][entry.name]["parameters"]
        fields = {s.name: s for s in entry.config.specs(include_hidden=False) if s.name not in entry.config.environment_only_fields}
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


def test_config_error_is_raised_before_anything() -> None:
    with pytest.raises(ConfigError):
        SelfModelingConfig(val_fraction=0.0)


HEAVY = ("torch", "mlflow", "transformer_lens", "matplotlib", "pandas", "numpy", "optuna")


@pytest.mark.parametrize("argv", [["--help"], ["self-modeling", "--help"], ["tune", "--help"], ["grokking", "--p", "100"]])
def test_help_and_option_errors_import_no_heavy_library(argv: list[str]) -> None:
    """`innerlens --help` and an option's one-line error must not pay for torch, mlflow and co."""
    import subprocess
    import sys

    probe = ("import sys\nfrom innerlens.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr


def test_no_entry_point_offers_an_option_its_run_ignores() -> None:
    """A language model's loss has no accuracy: generator hides --target-accuracy/--target-split."""
    from innerlens.configs.generator import GeneratorConfig
    from innerlens.configs.selector import SelectorConfig

    assert not {"target_accuracy", "target_split"} & {s.name for s in GeneratorConfig.specs(include_hidden=False)}
    assert {"target_accuracy", "target_split"} <= {s.name for s in SelectorConfig.specs(include_hidden=False)}


def test_a_named_regime_fills_its_values_and_refuses_contradictions() -> None:
    from innerlens.cli import cli
    from innerlens.configs.self_modeling import REGIMES
    from innerlens.configs.self_modeling_comparison import SelfModelingComparisonConfig

    command = cli.commands["self-modeling-comparison"]
    grokking = SelfModelingComparisonConfig.from_strings(command.make_context("x", ["--regime", "grokking"]).params)
    assert {name: getattr(grokking, name) for name in REGIMES["grokking"]} == REGIMES["grokking"]
    assert all(single.regime == "grokking" and single.samples == 5000 for single in grokking.single_runs())
    stable = SelfModelingComparisonConfig.from_strings(command.make_context("x", []).params)
    assert (stable.regime, stable.samples, stable.batch_size) == ("stable", None, 64)
    with pytest.raises(ConfigError, match="--regime grokking means .*got --batch-size 64"):
        SelfModelingConfig(regime="grokking", **{**REGIMES["grokking"], "batch_size": 64})
    assert SelfModelingConfig(regime="stable", batch_size=32).batch_size == 32


def test_each_class_checks_its_own_fields_once_and_studies_check_their_runs_in_full() -> None:
    from innerlens.configs.grokking import GrokkingConfig
    from innerlens.configs.self_modeling import SelfModelingConfig
    from innerlens.configs.self_modeling_comparison import SelfModelingComparisonConfig

    # the shared shape check reaches every family that mixes ModelShape in, without a super() call
    with pytest.raises(ConfigError, match="--n-heads 5 must divide --d-model 64"):
        SelfModelingConfig(n_heads=5)
    with pytest.raises(ConfigError, match="--n-heads 5 must divide --d-model 128"):
        GrokkingConfig(n_heads=5)
    with pytest.raises(ConfigError, match="--n-heads 8 x --d-head 32 must equal --d-model 128"):
        GrokkingConfig(n_heads=8)  # the family's own check runs after the shape's
    with pytest.raises(ConfigError, match="must sum to 1"):  # TrainConfig's, at the bottom of the chain
        SelfModelingConfig(train_fraction=0.9)
    # a study is not refused for a hidden single-run field it never trains (variant=middle_layer) ...
    assert SelfModelingComparisonConfig(variants=("baseline", "first_layer"), n_layers=2).n_layers == 2
    with pytest.raises(ConfigError, match="--variant middle_layer needs --n-layers >= 3"):
        SelfModelingConfig(variant="middle_layer", n_layers=2)
    # ... but each run it trains is checked in full, and the shared checks still apply to it
    with pytest.raises(ConfigError, match="--variant all_layers needs --n-layers >= 3"):
        SelfModelingComparisonConfig(variants=("baseline", "all_layers"), n_layers=2)
    with pytest.raises(ConfigError, match="--ray-address/--gpus-per-run: only with --executor ray"):
        SelfModelingComparisonConfig(gpus_per_run=1.0)
    with pytest.raises(ConfigError, match="--n-heads 5 must divide"):
        SelfModelingComparisonConfig(n_heads=5)


def test_the_ray_runtime_env_carries_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray stores a runtime_env in its control store and shows it in its state API: no variable named
    like a secret, and no password inside a URI, may travel there."""
    from innerlens.drivers.ray_executor import SECRET_NAME, worker_environment

    secrets = {"MLFLOW_TRACKING_PASSWORD": "hunter2", "AWS_SECRET_ACCESS_KEY": "abc", "AWS_ACCESS_KEY_ID": "id",
               "PGPASSWORD": "pw", "INNERLENS_ADMIN_TOKEN": "t", "AWS_SESSION_TOKEN": "s", "MLFLOW_TRACKING_TOKEN": "tok"}
    for name, value in {**secrets, "MLFLOW_EXPERIMENT_NAME": "e", "AWS_REGION": "eu-west-1", "PGHOST": "db",
                        "INNERLENS_OPTUNA_STORAGE": "postgresql://optuna:s3cret@db:5432/optuna"}.items():
        monkeypatch.setenv(name, value)
    env = worker_environment("http://admin:hunter2@mlflow:5000")
    assert not any(SECRET_NAME.search(name) for name in env) and not set(secrets) & set(env)
    assert env["MLFLOW_TRACKING_URI"] == "http://admin@mlflow:5000"
    assert env["INNERLENS_OPTUNA_STORAGE"] == "postgresql://optuna@db:5432/optuna"
    assert env["AWS_REGION"] == "eu-west-1" and env["PGHOST"] == "db" and env["MLFLOW_EXPERIMENT_NAME"] == "e"
    assert not any(value in text for value in ("hunter2", "s3cret", "abc") for text in env.values())


def test_an_unset_optional_switch_arrives_from_mlflow_run_as_none_and_stays_unset() -> None:
    """`mlflow run` passes every parameter, an unset optional boolean as `none` (MLproject's default)."""
    from innerlens.cli import normalize_args
    from innerlens.families.self_modeling import SelfModelingConfig

    specs = list(SelfModelingConfig.specs(include_hidden=False))
    assert normalize_args(["--measure_llc", "none", "--seed", "3"], specs) == ["--seed", "3"]
    assert normalize_args(["--measure_llc", "false"], specs) == ["--no-measure-llc"]
    assert SelfModelingConfig.from_strings({"measure_llc": "none"}).measure_llc is None


def test_overlapping_preflights_leave_the_http_settings_as_they_found_them(monkeypatch) -> None:
    """Stacked seeds run their pre-flights in threads at once: A enters, B enters, A leaves, B leaves.
    The quick timeout and zero retries must not outlive the last of them."""
    import os
    import threading

    from innerlens.tracking.preflight import QUICK_REQUESTS, _quick_requests

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    b_inside, a_left = threading.Event(), threading.Event()
    seen: list[str | None] = []

    def second() -> None:
        with _quick_requests():
            b_inside.set()
            a_left.wait(10)
            seen.append(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT"))  # A has left: B still runs quick

    thread = threading.Thread(target=second)
    with _quick_requests():
        thread.start()
        b_inside.wait(10)
    a_left.set()
    thread.join(10)
    assert seen == [QUICK_REQUESTS["MLFLOW_HTTP_REQUEST_TIMEOUT"]]
    assert os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") == "30" and "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


def test_no_mlproject_command_carries_a_storage_url() -> None:
    """A postgresql:// URL with its password would sit in argv (`ps`) and the params: tune reads it from the environment."""
    project = yaml.safe_load(render_mlproject(entry_points()))
    assert "storage" not in project["entry_points"]["tune"]["parameters"]
    assert "--storage" not in project["entry_points"]["tune"]["command"]


def test_entry_point_scripts_and_tune_list_derive_from_the_registry() -> None:
    """A family is declared once (registry.FAMILIES): its script is the template (innerlens mlproject --write
    writes it), the CLI order follows the declarations, and tune offers exactly the families with a search space."""
    from innerlens.commands import entrypoint_script
    from innerlens.configs.tune import TUNABLE
    from innerlens.registry import FAMILIES

    scripts = {path.stem: path.read_text() for path in (ROOT / "entrypoints").glob("*.py")}
    assert scripts == {entry.name: entrypoint_script(entry) for entry in entry_points()}
    assert [e.name for e in entry_points() if e.is_family] == [f.name for f in FAMILIES]
    assert set(TUNABLE) == {f.name for f in FAMILIES if f.tunable}
    assert set(TUNABLE) >= {"self_modeling", "grokking"}
    # the search space has one home, the family's Config; a family's code that declared its own would be a second
    assert [f.name for f in FAMILIES if hasattr(f.load(), "SEARCH")] == []
