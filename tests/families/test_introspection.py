"""Introspection on a local store: range errors, unfreezing by name, live vs fixed targets, end to end."""
from __future__ import annotations

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from support import ROOT

from innerlens.analysis.neurons import scan
from innerlens.cli import main
from innerlens.configs.introspection import IntrospectionConfig
from innerlens.families.introspection_setup import trainable_parameters
from innerlens.models.hooks import activation as hook_name
from innerlens.models.introspection_head import at_position
from innerlens.models.loading import ModelCache, encode, load_model

MODELS = ROOT / "mlruns" / "models"


CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny", CPU, cache=ModelCache(MODELS))


def test_scan_matches_a_full_forward(tiny) -> None:
    texts = ["The old mill was quiet.", "Ada sold two maps in Lisbon at dawn.", "Why?", "Seven letters, one stamp."]
    ids, last = encode(tiny.tokenizer, texts, CPU, 32)
    result = scan(tiny.bridge, ids, last, layer_type="mlp_out", layers=[0, 2], names=[hook_name("mlp_out", 0), hook_name("mlp_out", 2)],
                  position=None, select=at_position, batch_size=3)
    _, cache = tiny.bridge.run_with_cache(ids)
    for row, layer in enumerate([0, 2]):
        direct = cache[hook_name("mlp_out", layer)][torch.arange(4), last].double()  # last real token
        assert result.variance.shape[1] == tiny.d_mlp
        assert torch.allclose(result.variance[row], direct.var(0, unbiased=False), atol=1e-6)
        assert torch.allclose(result.range[row], direct.max(0).values - direct.min(0).values, atol=1e-6)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--layer", "9"], "--layer 9 is out of range: tiny has layers 0..3"),
        (["--layer", "1", "--neuron", "256"], "--neuron 256 is out of range: mlp_out of tiny has neurons 0..255"),
        (["--layer", "1", "--neuron", "64", "--layer-type", "resid_post"], "resid_post of tiny has neurons 0..63"),
        (["--layer-type", "hook_mlp_out"], "--layer-type: unknown value 'hook_mlp_out'; choose from mlp_out, resid_post"),
        (["--token-position", "first"], "--token-position: must be 'last' or a token index"),
        (["--token-position", "500"], "--token-position 500 is beyond the shortest text"),
        (["--texts", "/no/such/file.txt"], "--texts: no such file"),
        (["--unfreeze", "from_layer"], "needs --unfreeze-from"),
        (["--feature-layer", "-2"], "--feature-layer -2 is out of range: tiny has layers -1 (the embeddings)..3"),
        (["--layer", "1", "--neuron", "3", "--feature-layer", "2"], "--feature-layer 2 is not below the target's layer 1"),
        (["--targets", "live_gradient"], "--targets live_gradient needs trainable model weights"),
        (["--model", "/tmp"], "directory has no config.json"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str, local_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["introspection", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert mlflow.search_runs(search_all_experiments=True).empty


def _trainable(tiny, **options) -> set[str]:
    config = IntrospectionConfig(**options)
    return {name.replace("._original_component", "") for name in trainable_parameters(tiny.bridge, config, target_layer=1)}


def test_the_default_tiny_model_is_a_trained_language_model_far_below_the_unigram_baseline(tiny) -> None:
    from innerlens.data.texts import generate_texts
    from innerlens.models.loading import lm_loss, real_tokens, unigram_loss

    corpus = generate_texts(400, seed=123)  # texts neither the tokenizer nor the model was trained on
    ids, last = encode(tiny.tokenizer, corpus, CPU, 64)
    mask = real_tokens(ids, last)
    with torch.no_grad():
        model_loss = float(lm_loss(tiny.bridge, ids, mask))
    rows = [row[: int(end) + 1].tolist() for row, end in zip(ids, last)]
    baseline = unigram_loss(rows[:200], rows[200:], len(tiny.tokenizer))  # token frequencies from other texts
    assert model_loss < 0.5 * baseline, (model_loss, baseline)
    untrained = load_model("tiny-random", CPU, cache=ModelCache(MODELS))
    with torch.no_grad():
        assert float(lm_loss(untrained.bridge, ids, mask)) > baseline  # the control knows nothing


def test_unfreezing_strategies_free_exactly_what_they_promise(tiny) -> None:
    everything = {n.replace("._original_component", "") for n, _ in tiny.bridge.named_parameters()}
    assert _trainable(tiny, unfreeze="none") == set()
    assert _trainable(tiny, unfreeze="all") == everything
    after = _trainable(tiny, unfreeze="after_target")  # target in layer 1 -> blocks 2, 3 train
    assert after and all(n.startswith(("transformer.h.2.", "transformer.h.3.")) for n in after)
    assert {n for n in everything if n.startswith(("transformer.h.2.", "transformer.h.3."))} == after
    selective = _trainable(tiny, unfreeze="selective", unfreeze_components=("attention", "embeddings"))
    assert {n for n in selective if ".mlp." in n or "ln_" in n} == set()
    assert {"transformer.wte.weight", "transformer.wpe.weight"} <= selective
    assert all(any(f"transformer.h.{i}.attn." in n for n in selective) for i in range(4))
    assert _trainable(tiny, unfreeze="from_layer", unfreeze_from=3) == {n for n in everything if n.startswith("transformer.h.3.")}


def test_frozen_regression_head_predicts_held_out_texts(local_store: str) -> None:
    from innerlens import session

    run_id = session.run("introspection", IntrospectionConfig(num_samples=200, max_epochs=20, unfreeze="none"), progress=False).run_id
    metrics = MlflowClient().get_run(run_id).data.metrics
    assert metrics["test/r2_at_best"] > metrics["baseline/mean/test_r2"] + 0.5
    # the headline is the head's R² beyond a frozen ridge probe on the same features, both logged
    assert metrics["test/delta_vs_probe"] == pytest.approx(metrics["test/r2_at_best"] - metrics["baseline/probe/test_r2"])
    assert metrics["test/variance_collapsed_at_best"] == 0.0


SEED_INTROSPECTION_LINES = [  # the seed's usage lines, scaled down (texts, epochs)
    "--layer 2 --neuron 10 --token-pos last --epochs 1 --learning-rate 1e-4 --val-split 0.15 --test-split 0.15 --num-samples 60",
    "--regression False --early-stopping --device --epochs 1 --num-samples 60",
    "--regression True --no-early-stopping --device= --epochs 1 --num-samples 60 --unfreeze all --targets live",
]


@pytest.mark.parametrize("line", SEED_INTROSPECTION_LINES)
def test_the_seed_scripts_command_lines_are_accepted(line: str, local_store: str) -> None:
    main(["introspection", *line.split()])  # returns: exit code 0
    run = mlflow.search_runs(search_all_experiments=True, order_by=["attributes.start_time DESC"]).iloc[0]
    words = line.split()
    assert run["params.task"] == ("classification" if "False" in words else "regression")
    assert run["params.patience"] == ("0" if "--no-early-stopping" in words else "8")
    assert run["params.device"] == "auto" and run["params.max_epochs"] == "1"


def test_unreachable_model_name_is_one_line(local_store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a machine without network: fail fast, not after retries
    with pytest.raises(SystemExit) as exit_info:
        main(["introspection", "--model", "innerlens-test/no-such-model"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model innerlens-test/no-such-model: could not load it" in err, err
    assert mlflow.search_runs(search_all_experiments=True).empty
