"""The self-modeling study: parallel workers give the sequential results, and every cell is paired
with the baseline on its seed."""
from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from support import TINY_LLC, TINY_MODEL

from innerlens.drivers.self_modeling_comparison import SelfModelingComparisonConfig, run_comparison, run_summaries

TINY = dict(**TINY_MODEL, **TINY_LLC, max_epochs=2)


def test_parallel_workers_equal_sequential_runs_and_cells_pair_with_the_baseline(local_store: str) -> None:
    summaries = {}
    for workers in (0, 2):
        config = SelfModelingComparisonConfig(variants=("baseline", "middle_layer"), seeds=(0, 1),
                                              self_model_weights=(0.1, 1.0), workers=workers, **TINY)
        parent = run_comparison(config, progress=False)
        table = run_summaries(parent)
        summaries[workers] = table.set_index(["group", "seed", "key"])["value"].sort_index()
        statistics = mlflow.artifacts.load_text(f"{mlflow.get_run(parent).info.artifact_uri}/tables/paired_statistics.csv")
        assert "middle_layer w=0.1" in statistics and "middle_layer w=1" in statistics
    sequential, parallel = summaries[0], summaries[2]
    assert sorted(set(sequential.index.get_level_values("group"))) == ["baseline", "middle_layer w=0.1", "middle_layer w=1"]
    assert list(sequential.index) == list(parallel.index)  # same runs, same metrics
    assert parallel.to_numpy() == pytest.approx(sequential.to_numpy(), rel=1e-4, abs=1e-5)


def test_the_seed_scripts_command_line_runs_and_copies_into_base_dir(local_store: str, tmp_path) -> None:
    from innerlens.cli import main

    shape = ["--p", "23", "--n-layers", "3", "--d-model", "32", "--n-heads", "4", "--d-mlp", "64", "--workers", "0",
             "--measure-llc", "false", "--no-gamma-sensitivity", "--variants", "baseline,middle_layer"]
    line = ["--max_epochs", "1", "--samples", "200", "--target_accuracy", "0.99", "--seed", "3", "--show_plots", "False",
            "--base_dir", str(tmp_path / "out")]
    for extra in ([], ["--skip_training"]):
        main(["self-modeling-comparison", *shape, *line, *extra])  # returns: exit code 0
    copied = tmp_path / "out"
    assert (copied / "figures" / "dose_response.png").exists() and (copied / ".innerlens-output").is_file()
    runs = sorted(path.name for path in (copied / "runs").iterdir())
    assert runs == ["baseline_w=0_seed_3", "middle_layer_w=0.01_seed_3"]
    assert (copied / "runs" / runs[0] / "checkpoints" / "best.pt").exists()
    assert any(p.name.startswith("out.") for p in tmp_path.iterdir())  # the first copy was archived, not deleted


def test_rerunning_a_named_study_continues_it_and_refuses_other_options(local_store: str) -> None:
    """A study run in parts: the same command under the same --study-name keeps the finished runs and
    resumes the unfinished ones in the same parent; a command that would compute something else is refused."""
    from mlflow.tracking import MlflowClient

    from innerlens.errors import ConfigError
    from innerlens.tracking import children

    config = SelfModelingComparisonConfig(variants=("baseline", "middle_layer"), seeds=(0, 1), study_name="in-parts",
                                          workers=0, gamma_sensitivity=False, **{**TINY, "llc_chains": 2})
    parent = run_comparison(config, progress=False)
    client = MlflowClient()
    first = {c.info.run_id: c.data.tags["innerlens.task"] for c in children(parent)}
    interrupted = next(iter(first))
    client.set_terminated(interrupted, "KILLED")  # as if the study had been stopped while this run trained
    client.set_terminated(parent, "KILLED")
    from innerlens.drivers.self_modeling_comparison import left_out

    assert left_out(parent) == f"left out of the tables: 1 run(s) not FINISHED: {first[interrupted]} (KILLED)"
    again = run_comparison(config, progress=False)
    assert left_out(parent) == ""
    assert again == parent  # the same study
    second = {c.info.run_id: (c.data.tags["innerlens.task"], c.info.status) for c in children(parent)}
    assert set(second) == set(first)  # no run trained twice: the finished ones kept, the killed one continued
    assert {status for _, status in second.values()} == {"FINISHED"}
    assert client.get_run(parent).info.status == "FINISHED"
    with pytest.raises(ConfigError, match="continuing a study keeps its options; these differ: --max-epochs"):
        run_comparison(config.replace(max_epochs=3), progress=False)


def test_a_stopped_studys_history_keeps_its_unfinished_runs_epoch_by_epoch(local_store: str) -> None:
    """What a README line about a stopped run cites: every run, KILLED ones too, with the values the store holds."""
    from mlflow.tracking import MlflowClient

    from innerlens.drivers.study_history import study_history
    from innerlens.errors import ConfigError
    from innerlens.tracking import children

    config = SelfModelingComparisonConfig(variants=("baseline", "middle_layer"), seeds=(0,), study_name="stopped",
                                          workers=0, gamma_sensitivity=False, measure_llc=False, **TINY)
    parent = run_comparison(config, progress=False)
    client = MlflowClient()
    runs = {c.info.run_name: c.info.run_id for c in children(parent)}
    client.set_terminated(runs["middle_layer-s0"], "KILLED")
    table = study_history("stopped", ["train/acc", "selfmodel/layer_1/loss"])
    assert sorted(set(zip(table["run"], table["status"]))) == [("baseline-s0", "FINISHED"), ("middle_layer-s0", "KILLED")]
    assert table.groupby("run")["epoch"].apply(list).tolist() == [[1, 2], [1, 2]]  # every epoch of both runs
    killed = table[table["run"] == "middle_layer-s0"]
    stored = [m.value for m in sorted(client.get_metric_history(runs["middle_layer-s0"], "train/acc"), key=lambda m: m.step)]
    assert killed["train/acc"].tolist() == pytest.approx(stored)
    assert table[table["run"] == "baseline-s0"]["selfmodel/layer_1/loss"].isna().all()  # the baseline has no self-model
    with pytest.raises(ConfigError, match="not logged by stopped's runs: no/such"):
        study_history("stopped", ["train/acc", "no/such"])
    with pytest.raises(ConfigError, match="no study called 'absent'"):
        study_history("absent", ["train/acc"])


def test_a_study_asks_the_server_only_for_what_its_runs_did_not_return(local_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every metric a run logged comes back in its RunResult; the study draws from those, and what it
    holds equals what the server stored, row for row."""
    from innerlens.drivers import self_modeling_comparison
    from innerlens.tracking import children, children_history

    handed: dict[str, object] = {}

    def recording(parent_run_id: str, known: dict | None = None):  # type: ignore[no-untyped-def]
        handed.update(known or {})
        return children_history(parent_run_id, known)

    monkeypatch.setattr(self_modeling_comparison, "children_history", recording)
    config = SelfModelingComparisonConfig(variants=("baseline", "last_layer"), seeds=(0,), workers=0, **TINY)
    parent = run_comparison(config, progress=False)
    runs = {run.info.run_id for run in children(parent)}
    assert set(handed) == runs  # both runs returned everything they logged: nothing was asked of the server
    stored = children_history(parent).sort_values(["run_id", "key", "step"], ignore_index=True)
    returned = children_history(parent, known=handed).sort_values(["run_id", "key", "step"], ignore_index=True)
    assert len(stored) > 20 * len(runs) and set(stored["key"]) >= {"train/loss", "val/acc", "weights/std_final"}
    pd.testing.assert_frame_equal(returned[["run_id", "key", "step", "value"]], stored[["run_id", "key", "step", "value"]],
                                  check_dtype=False)
