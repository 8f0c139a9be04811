"""The paper's MLP wiring and the Fashion-MNIST reader."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from innerlens.data.images import fashion_mnist, read_idx
from innerlens.models.mlp import SelfModelingMLP


def test_extra_outputs_are_a_linear_map_of_the_hidden_layer_with_the_target_detached() -> None:
    torch.manual_seed(0)
    model = SelfModelingMLP(20, 10, [16], [0])
    x = torch.randn(5, 20)
    logits, pairs = model.forward_with_self_model(x)
    prediction, target = pairs[0]
    hidden = torch.relu(model.hidden[0](x))
    assert torch.allclose(target, hidden) and not target.requires_grad  # the post-ReLU hidden layer, detached
    weight, bias = model.output.weight[10:], model.output.bias[10:]
    assert torch.allclose(prediction, hidden @ weight.T + bias, atol=1e-6)  # the output layer's extra rows
    assert torch.allclose(logits, model(x)) and logits.shape == (5, 10)
    prediction.pow(2).mean().backward()
    assert model.output.weight.grad[:10].abs().sum() == 0  # the self-model loss reaches only its own rows here...
    assert model.hidden[0].weight.grad.abs().sum() > 0  # ...and the hidden layer through the prediction, not the target


def test_the_classifier_weights_leave_out_the_self_model_rows() -> None:
    model = SelfModelingMLP(20, 10, [16, 16, 16], [0, 2])
    assert model.output.out_features == 10 + 32
    task = model.task_weight_matrices()
    assert sum(t.numel() for t in task) == 20 * 16 + 16 * 16 * 2 + 16 * 10


def _write_idx(path: Path, array: np.ndarray, code: int) -> None:
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


def test_fashion_mnist_reader_pools_train_and_test_and_scales_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), "t10k": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)}
    labels = {"train": np.array([1, 2, 3], np.uint8), "t10k": np.array([9, 0], np.uint8)}
    for split in ("train", "t10k"):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images[split], 0x08)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels[split], 0x08)
    task = fashion_mnist(tmp_path)
    assert task.x.shape == (5, 784) and task.y.tolist() == [1, 2, 3, 9, 0]
    assert task.x[3].tolist() == pytest.approx((images["t10k"][0].reshape(-1) / 255 * 2 - 1).tolist(), abs=1e-6)
    assert read_idx(tmp_path / "train-images-idx3-ubyte.gz").shape == (3, 28, 28)


def test_a_file_that_is_not_idx_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.gz"
    with gzip.open(bad, "wb") as handle:
        handle.write(b"\x89PNG....")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)


def test_missing_package_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from innerlens.configs.self_modeling import SelfModelingConfig
    from innerlens.errors import ConfigError

    monkeypatch.setenv("INNERLENS_FASHION_MNIST", str(tmp_path))
    with pytest.raises(ConfigError, match="dataset-fashion-mnist") as error:
        SelfModelingConfig(model="mlp", task="fashion_mnist", variant="last_layer")
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="does not fit --model transformer"):
        SelfModelingConfig(task="fashion_mnist")


def test_relabelled_inputs_train_the_same_network_with_other_rounding() -> None:
    """The MLP's rounding control: the same training in exact arithmetic (the epochs agree to float
    noise, arm by arm), yet another float path (the weights are not bit-identical), for the self-model
    arm and the control arm, whose targets read the relabelled input."""
    from innerlens.configs.self_modeling import SelfModelingConfig
    from innerlens.families.self_modeling import RELABEL_SEED, SelfModelingExperiment

    torch.set_num_threads(1)
    for variant in ("last_layer", "input_control"):
        common = dict(model="mlp", task="digits", optimizer="sgd", lr=0.005, batch_size=512, hidden=32, variant=variant, self_model_weight=1.0, seed=3)
        plain = SelfModelingExperiment(SelfModelingConfig(**common), torch.device("cpu"))
        relabelled = SelfModelingExperiment(SelfModelingConfig(**common, relabel_inputs=True), torch.device("cpu"))
        order = torch.randperm(64, generator=torch.Generator().manual_seed(3 + RELABEL_SEED))
        assert not torch.equal(order, torch.arange(64))
        assert torch.equal(relabelled.data["train"][0], plain.data["train"][0][:, order])
        for epoch in range(3):
            a, b = plain.train_round(epoch), relabelled.train_round(epoch)
            assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-4)
        first, relabelled_first = plain.model.hidden[0].weight, relabelled.model.hidden[0].weight
        assert torch.allclose(relabelled_first, first[:, order], atol=1e-5)
        assert not torch.equal(relabelled_first, first[:, order])  # another float path, not a copy
        assert not torch.equal(relabelled.model.output.weight, plain.model.output.weight)


def test_relabel_inputs_is_refused_for_the_transformer() -> None:
    from innerlens.configs.self_modeling import SelfModelingConfig
    from innerlens.errors import ConfigError

    with pytest.raises(ConfigError, match="--stack-seeds"):
        SelfModelingConfig(relabel_inputs=True)
