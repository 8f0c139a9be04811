"""The grokking family's parts: tasks, snapshot schedules, defaults, initialisations, attention statistics (no store)."""
from __future__ import annotations

import pytest
import torch

from innerlens.data.splits import split_indices
from innerlens.data.tasks import modular_table, with_shortcut
from innerlens.families.grokking import GrokkingConfig, snapshot_steps


@pytest.mark.parametrize("operation,expected", [("add", 9 % 7), ("sub", (4 - 5) % 7), ("mul", 20 % 7)])
def test_modular_table(operation: str, expected: int) -> None:
    task = modular_table(operation, 7)
    assert task.x.shape == (49, 3) and (task.x[:, 2] == 7).all()
    row = 4 * 7 + 5  # a=4, b=5 in (a, b) order
    assert task.x[row, :2].tolist() == [4, 5] and int(task.y[row]) == expected


def test_division_inverts_multiplication() -> None:
    task = modular_table("div", 11)
    assert len(task.y) == 11 * 10 and (task.x[:, 1] != 0).all()
    assert ((task.y * task.x[:, 1]) % 11 == task.x[:, 0]).all()


def test_shortcut_predicts_the_label_only_in_training() -> None:
    task = modular_table("add", 31)
    splits = split_indices(len(task.y), (0.5, 0.25, 0.25), seed=0)
    shortcut = with_shortcut(task, splits.train, strength=0.9, seed=0)
    assert shortcut.x.shape == (31 * 31, 4) and (shortcut.x[:, :2] == task.x[:, :2]).all()

    def agreement(rows: torch.Tensor) -> float:
        return float((shortcut.x[rows, 2] == task.y[rows]).float().mean())

    assert agreement(splits.train) == pytest.approx(0.9, abs=0.03)
    assert agreement(splits.val) < 0.1 and agreement(splits.test) < 0.1


def test_snapshot_steps_are_log_spaced_evaluation_steps() -> None:
    steps = snapshot_steps(20_000, 100, 16)
    assert steps[0] == 0 and steps[1] == 100 and steps[-1] == 20_000
    assert all(s % 100 == 0 for s in steps) and steps == sorted(set(steps))
    gaps = [b - a for a, b in zip(steps[1:], steps[2:])]
    assert gaps[-1] > 10 * gaps[0]  # denser early, where training changes fastest
    assert snapshot_steps(20_000, 100, 0) == []


def test_defaults_are_the_published_setup() -> None:
    config = GrokkingConfig()
    assert (config.p, config.train_fraction, config.n_layers, config.d_model, config.n_heads, config.d_head, config.d_mlp) == (
        113, 0.3, 1, 128, 4, 32, 512
    )
    assert (config.act_fn, config.normalization, config.lr, config.weight_decay, config.beta1, config.beta2) == (
        "relu", "none", 1e-3, 1.0, 0.9, 0.98
    )
    assert (config.batch_size, config.warmup_steps, config.loss_dtype) == (0, 10, "float64")


def test_nanda_init_has_the_papers_scales_and_the_native_init_does_not() -> None:
    from innerlens.families.grokking import build_model, make_task

    config = GrokkingConfig(init="nanda")
    task, _ = make_task(config)
    nanda = dict(build_model(config, task, torch.device("cpu")).named_parameters())
    native = dict(build_model(config.replace(init="native"), task, torch.device("cpu")).named_parameters())
    for name, weight in nanda.items():
        if name.endswith("bias"):
            assert not weight.any()
            continue
        expected = (114 if name.startswith("head.") else 128) ** -0.5  # 1/sqrt(d_vocab) for the unembedding
        assert float(weight.detach().std()) == pytest.approx(expected, rel=0.05), name
    output = next(name for name in nanda if name.endswith("o._original_component.weight"))
    assert float(native[output].std()) == pytest.approx(0.8 / 128**0.5 / 2**0.5, rel=0.1)  # TransformerLens's own
    again = dict(build_model(config, task, torch.device("cpu")).named_parameters())
    assert all(torch.equal(again[name], weight) for name, weight in nanda.items())  # seeded


def test_attention_statistics_read_the_last_block_whatever_the_depth() -> None:
    from innerlens.families.grokking import GrokkingExperiment
    from innerlens.models.hooks import attention_pattern

    config = GrokkingConfig(p=11, n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, max_steps=100, eval_every=100)
    experiment = GrokkingExperiment(config, torch.device("cpu"))
    stats = experiment.head_stats()
    _, cache = experiment.model.run_with_cache(experiment.data["train"][0])
    last, first = cache[attention_pattern(1)][:, :, -1, :].double().mean(0), cache[attention_pattern(0)][:, :, -1, :].double().mean(0)
    assert torch.allclose(stats["share"], last) and not torch.allclose(stats["share"], first)
