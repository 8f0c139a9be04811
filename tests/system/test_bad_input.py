"""The bad-input suite: every entry point answers bad input with one line and a non-zero exit,
before it creates a run. `make test` prints how many cases ran (see conftest)."""
from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from support import free_port

from innerlens.cli import main

# (command and options, a fragment of the one-line error). Paths under FILES are written by the fixture.
BAD_INPUTS = [
    (["self-modeling", "--variant", "penultimate"], "--variant: unknown value 'penultimate'"),
    (["self-modeling", "--train-fraction", "0.8"], "must sum to 1"),
    (["self-modeling", "--samples", "many"], "--samples: expected an integer"),
    (["self-modeling", "--samples", "20000"], "exceeds the 9409 distinct examples"),
    (["self-modeling", "--n-heads", "5"], "--n-heads 5 must divide --d-model 64"),
    (["self-modeling", "--n-layers", "2", "--variant", "middle_layer"], "needs --n-layers >= 3"),
    (["self-modeling", "--target-accuracy", "1.5"], "--target-accuracy: must be between 0 and 1"),
    (["self-modeling", "--device", "tpu"], "--device: unknown value 'tpu'"),
    (["self-modeling", "--resume", "0123456789abcdef"], "--resume: no run '0123456789abcdef'"),
    (["self-modeling", "--lr", "-1"], "--lr: must be > 0"),
    (["self-modeling", "--detach-target", "maybe"], "--detach-target: expected true or false"),
    (["self-modeling", "--p", "1"], "--p: must be >= 2"),
    (["self-modeling", "--no-such-option", "1"], "No such option"),
    (["self-modeling-comparison", "--seeds", "0,x"], "--seeds: expected an integer"),
    (["self-modeling-comparison", "--variants", "baseline,nope"], "unknown value 'nope'"),
    (["grokking", "--p", "100"], "--p: must be an odd prime"),
    (["grokking", "--task", "pow"], "--task: unknown value 'pow'"),
    (["grokking", "--max-steps", "250"], "--max-steps 250 must be a multiple of --eval-every 100"),
    (["grokking", "--n-heads", "8"], "--n-heads 8 x --d-head 32 must equal --d-model 128"),
    (["grokking", "--analysis-every", "150"], "--analysis-every 150 must be a multiple of --eval-every 100"),
    (["grokking", "--p", "3", "--train-fraction", "0.1", "--val-fraction", "0.45", "--test-fraction", "0.45"], "too few for the split fractions"),
    (["grokking", "--batch-size", "5000"], "exceeds the 3830 training pairs"),
    (["grokking", "--loss-dtype", "float16"], "--loss-dtype: unknown value"),
    (["grokking", "--resume", "feedfacefeedface"], "--resume: no run 'feedfacefeedface'"),
    (["grokking-sweep", "--sweep", "momentum"], "--sweep: unknown value 'momentum'"),
    (["grokking-sweep", "--sweep", "lr", "--values", "0.001,fast"], "--values: expected a number"),
    (["introspection", "--layer-type", "hook_mlp_out"], "--layer-type: unknown value 'hook_mlp_out'"),
    (["introspection", "--texts", "FILES/missing.txt"], "--texts: no such file"),
    (["introspection", "--token-position", "first"], "--token-position: must be 'last' or a token index"),
    (["generator", "--corpus", "FILES/missing.txt"], "--corpus: no such file"),
    (["generator", "--max-steps", "0"], "--max-steps: must be > 0"),
    (["selector", "--data", "FILES/missing.csv"], "--data: no such file"),
    (["selector", "--data", "FILES/no_label.csv"], "--data"),
    (["selector", "--dropout", "1.5"], "--dropout"),
    (["selector", "--generator", "models:/innerlens-no-such-model/1"], "no such registered model version"),
    (["metalign", "--backbone", "FILES/missing.npz", "--reference", "FILES/reference.txt"], "no such file"),
    (["metalign", "--backbone", "FILES/backbone.npz", "--reference", "FILES/ragged.txt"], "row 2 has 1 values"),
    (["metalign", "--eval-dims", "0,40", "--synthetic-objects", "300"], "--eval-dims [40] out of range"),
    (["metalign", "--human-data", "FILES/missing.csv"], "--human-data: no such file"),
    (["metalign", "--sequence-length", "-5"], "--sequence-length: must be > 0"),
    (["tune", "--family", "nope"], "--family: unknown value 'nope'"),
    (["tune", "--fixed", "max_epochs=3 depth=3"], "'depth=3' is not name=value for an option"),
    (["tune", "--space", "FILES/missing.yaml"], "--space: no such file"),
    (["tune", "--storage", "ftp://example.org/study"], "--storage 'ftp://example.org/study': expected"),
    (["tune", "--n-trials", "0"], "--n-trials: must be > 0"),
    (["compare", "--experiments", "no-such-experiment"], "no-such-experiment"),
    (["analyze", "0123456789abcdef"], "no run '0123456789abcdef'"),
    (["sync", "--spool-dir", "FILES/reference.txt"], "is a file"),
    (["self-modeling", "UNREACHABLE"], "is unreachable"),
    (["compare", "UNREACHABLE"], "is unreachable"),
    (["tune", "--fixed", "max_epochs=3 target_accuracy=0.9 target_split=test"], "a study reads validation only"),
    (["introspection", "--output-dir", "FILES", "--force-overwrite"], "innerlens did not write"),
    (["self-modeling", "--output-dir", "FILES"], "holds files innerlens did not write"),
    (["self-modeling", "BADURI"], "MLFLOW_TRACKING_URI=foo://bar: unknown scheme 'foo'"),
    (["self-modeling", "BADHOME"], "cannot write the embedded store"),
    (["self-modeling", "--model", "mlp", "--task", "fashion_mnist", "--variant", "last_layer", "NOFMNIST"],
     "install Debian's dataset-fashion-mnist"),
    (["self-modeling", "--model", "mlp", "--task", "modular_sum"], "--task modular_sum does not fit --model mlp"),
    (["self-modeling", "--self-model-grad-share", "1.5"], "--self-model-grad-share: must be strictly between 0 and 1"),
    (["self-modeling", "--self-model-max-weight", "10"], "--self-model-max-weight caps the matched weight"),
    (["self-modeling", "--self-model-grad-share", "0.1", "--self-model-max-weight", "0"], "--self-model-max-weight: must be > 0"),
    (["self-modeling-comparison", "--model", "mlp", "--task", "digits", "--variants", "baseline,last_layer", "--stack-seeds",
      "--patience", "0"], "--stack-seeds: stacks the transformer"),
    (["self-modeling", "--relabel-inputs"], "--relabel-inputs is the MLP's rounding control"),
    (["introspection", "--output-dir", "FILES/link", "--force-overwrite"], "is a symlink"),
    (["introspection", "--output-dir", "FILES/reference.txt"], "is a file, not a directory"),
    (["self-modeling", "--seed", "-1"], "--seed: a seed must be between 0 and 4294967295, got -1"),
    (["self-modeling", "--seed", "5000000000"], "--seed: a seed must be between 0 and 4294967295"),
    (["self-modeling-comparison", "--seeds", "0,-2"], "--seeds: a seed must be between"),
    (["tune", "--seed", "-4"], "--seed: a seed must be between"),
    (["self-modeling", "--lr", "inf"], "--lr: expected a finite number, got inf"),
    (["self-modeling", "--weight-decay", "inf"], "--weight-decay: expected a finite number"),
    (["grokking", "--checkpoint-interval", "inf"], "--checkpoint-interval: expected a finite number"),
    (["self-modeling", "--lr", "nan"], "--lr: expected a finite number"),
    (["introspection", "--texts", "FILES/latin1.txt"], "not UTF-8 text (byte 0xe9 at offset 3)"),
    (["generator", "--corpus", "FILES/latin1.txt"], "not UTF-8"),
    (["selector", "--examples", "FILES/latin1.txt"], "not UTF-8"),
    (["tune", "--space", "FILES/latin1.yaml"], "not UTF-8"),
    (["selector", "--data", "FILES/empty.csv"], "empty; expected a CSV"),
    (["selector", "--data", "FILES/binary.csv"], "not UTF-8"),
    (["metalign", "--human-data", "FILES/empty.csv"], "empty; expected a CSV"),
    (["metalign", "--backbone", "FILES/backbone.npz", "--reference", "FILES/latin1.txt"], "not UTF-8"),
    (["tune", "--space", "FILES/word_bound.yaml"], "lr: low and high must be numbers, got 'abc' and 0.1"),
    (["tune", "--space", "FILES/fraction_int.yaml"], "n_layers: an int range needs whole-number bounds"),
    (["selector", "--data", "FILES/empty_text.csv"], "has an empty text cell on line 23"),
    # a checkpoint directory with a config but no weights: the range check must come before any loading
    (["introspection", "--model", "FILES/declared_only", "--layer", "99"], "declared_only has layers 0..1"),
    (["introspection", "--layer", "99"], "--layer 99 is out of range: tiny has layers 0..3"),
]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Malformed and valid input files the cases point at."""
    import numpy as np

    (tmp_path / "reference.txt").write_text("0.1 0.2\n0.3 0.4\n0.5 0.6\n")
    (tmp_path / "ragged.txt").write_text("1 2\n3\n4 5\n")
    np.savez(tmp_path / "backbone.npz", features=np.ones((3, 4)))
    (tmp_path / "no_label.csv").write_text("text\nhello\n")
    (tmp_path / "latin1.txt").write_bytes("café au lait\nsecond line\n".encode("latin-1"))
    (tmp_path / "latin1.yaml").write_bytes("lr: {type: float, low: 1.0e-4, high: 1.0e-2}  # café\n".encode("latin-1"))
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "declared_only").mkdir()
    (tmp_path / "declared_only" / "config.json").write_text('{"model_type": "gpt2", "n_layer": 2}')
    (tmp_path / "word_bound.yaml").write_text("lr: {type: float, low: abc, high: 0.1}\n")
    (tmp_path / "fraction_int.yaml").write_text("n_layers: {type: int, low: 1.5, high: 4}\n")
    (tmp_path / "empty_text.csv").write_text("text,label\n" + "".join(f"sample {i},{i % 2}\n" for i in range(21)) + ",1\n")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "kept").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "kept")
    return tmp_path


@pytest.mark.parametrize("argv,message", BAD_INPUTS, ids=[" ".join(argv)[:60] for argv, _ in BAD_INPUTS])
def test_bad_input_is_one_line_before_any_run(
    argv: list[str], message: str, files: Path, local_store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INNERLENS_HOME", str(files))
    argv = [arg.replace("FILES", str(files)) for arg in argv]
    if "UNREACHABLE" in argv:  # a server URI nothing listens on
        argv.remove("UNREACHABLE")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    if "BADURI" in argv:  # a scheme no store has
        argv.remove("BADURI")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "foo://bar")
    if "BADHOME" in argv:  # the embedded store under a home nobody can write
        argv.remove("BADHOME")
        monkeypatch.delenv("MLFLOW_TRACKING_URI")
        monkeypatch.setenv("INNERLENS_HOME", "/proc/innerlens-home")
    if "NOFMNIST" in argv:  # Debian's package not installed
        argv.remove("NOFMNIST")
        monkeypatch.setenv("INNERLENS_FASHION_MNIST", str(files / "kept"))
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("innerlens: error: ") and message in err, err
    mlflow.set_tracking_uri(local_store)
    assert mlflow.search_runs(search_all_experiments=True).empty
    assert (files / "reference.txt").is_file() and (files / "kept").is_dir()  # nothing of the user's was deleted
