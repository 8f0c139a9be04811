"""Selector's parts: head architecture, frozen generator, heatmap layout, the ECE floor, the bigram control (no store)."""
from __future__ import annotations

import numpy as np
import torch
from support import ROOT

from innerlens.data.labelled import GROUP_A, order_corpus
from innerlens.engine import Selection, fit
from innerlens.families.selector import SelectorConfig, SelectorExperiment, default_layers
from innerlens.models.loading import ModelCache
from innerlens.models.selector_head import FinalTokenAttention, SelectorHead, valid_heads
from innerlens.viz.selector import attention_heatmap

MODELS = ROOT / "mlruns" / "models"


def test_head_shapes_and_heads_that_divide() -> None:
    head = SelectorHead(d_model=16, n_layers_read=2, n_heads=4)
    features = [torch.randn(3, 7, 16), torch.randn(3, 7, 16)]
    logits, weights = head(features, torch.tensor([6, 3, 0]))
    assert logits.shape == (3, 2) and [w.shape for w in weights] == [(3, 4, 7), (3, 4, 7)]
    assert head.mlp_in.out_features == 3 * 32  # aspect ratio 3 on the concatenation
    assert valid_heads(64, 40) == 32 and valid_heads(120, 40) == 40 and valid_heads(768, 40) == 48
    assert default_layers(12) == (2, 6) and default_layers(4) == (1, 2)


def test_attention_rows_sum_to_one_up_to_the_final_token() -> None:
    block = FinalTokenAttention(16, 4)
    last = torch.tensor([6, 2, 0])
    _, weights = block(torch.randn(3, 7, 16), last)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 4))
    for row, final in enumerate(last.tolist()):
        assert (weights[row, :, final + 1 :] == 0).all()


def test_block_has_no_residual_path() -> None:
    block = FinalTokenAttention(16, 4)
    with torch.no_grad():
        block.value.weight.zero_()
        block.value.bias.zero_()
    a, _ = block(torch.randn(2, 5, 16), torch.tensor([4, 4]))
    b, _ = block(10 * torch.randn(2, 5, 16), torch.tensor([4, 2]))
    assert torch.allclose(a, b) and torch.allclose(a[0], block.out.bias)  # nothing of the input gets through


def test_corpus_words_carry_no_label() -> None:
    frame = order_corpus(300, seed=0)
    for text in frame["text"]:
        assert sum(f"{name} " in text or f"{name}," in text or f"{name}." in text for name in GROUP_A) == 1
    assert 0.35 < frame["label"].mean() < 0.65


def test_generator_stays_frozen_while_the_head_trains() -> None:
    experiment = SelectorExperiment(SelectorConfig(num_texts=120, max_epochs=2), torch.device("cpu"), ModelCache(MODELS))
    before = {k: v.clone() for k, v in experiment.generator_model.bridge.state_dict().items()}
    head_before = {k: v.clone() for k, v in experiment.model.state_dict().items()}
    fit(experiment, max_epochs=2, selection=Selection(monitor="val/auc"), callbacks=[], progress=False)
    after = experiment.generator_model.bridge.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(head_before[k], v) for k, v in experiment.model.state_dict().items())
    assert experiment.features[0].shape[:2] == experiment.ids.shape  # cached once, all positions


def test_heatmap_has_one_pane_per_block_and_one_row_per_token() -> None:
    tokens = ["The", " cat", " sat", "."]
    weights = {"h_select_h1": np.random.rand(32, 4), "h_select_h2": np.random.rand(32, 4)}
    figure = attention_heatmap(tokens, weights)
    panes = [ax for ax in figure.axes if ax.get_title().startswith("h_select_h")]
    assert [ax.get_title() for ax in panes] == ["h_select_h1", "h_select_h2"]
    for ax in panes:
        assert [label.get_text() for label in ax.get_yticklabels()] == tokens
        image = ax.get_images()[0]
        assert image.get_array().shape == (4, 32) and image.get_clim() == (0.0, 1.0)
    assert len(figure.axes) == 4  # a colorbar per pane


def test_the_ece_floor_is_what_a_perfectly_calibrated_model_scores_and_the_interval_covers_it() -> None:
    import numpy as np

    from innerlens.analysis.calibration import calibration_metrics, ece_floor

    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0.05, 0.95, 150)
    floor = ece_floor(probabilities)
    assert 0.05 < floor < 0.12  # binning noise alone at n = 150 (≈ 0.08), not zero
    assert ece_floor(rng.uniform(0.05, 0.95, 5000)) < floor / 3  # it shrinks with n
    calibrated = calibration_metrics("test/ece", probabilities, (rng.random(150) < probabilities).astype(float))
    assert calibrated["test/ece_ci_low"] <= calibrated["test/ece"] <= calibrated["test/ece_ci_high"]
    overconfident = np.clip(probabilities * 2 - 0.5, 0.01, 0.99)  # the labels still follow `probabilities`
    biased = calibration_metrics("test/ece", overconfident, (rng.random(150) < probabilities).astype(float))
    assert biased["test/ece_ci_low"] > biased["test/ece_floor"]  # miscalibration stands clear of the floor


def test_bigrams_see_the_name_order_that_bag_of_words_cannot() -> None:
    """The label is which group's name comes first: unigram counts are at chance by construction, word
    bigrams ("alice met", "met bob") nearly solve it: the control that says how hard the task is."""
    from innerlens.families.selector import bag_of_words_auc

    frame = order_corpus(600, 0)
    order = torch.randperm(600, generator=torch.Generator().manual_seed(0))
    train, test = order[:420], order[420:]
    assert bag_of_words_auc(frame, train, test) < 0.65
    assert bag_of_words_auc(frame, train, test, ngrams=2) > 0.9
