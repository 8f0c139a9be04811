"""metalign's parts: embeddings, episodes, held-out dimensions, CKA controls, learners and behaviour fits (no store)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from innerlens.analysis.cognitive import correct_probability, curve_by_dimension, fit_temperature, online_logistic_logits
from innerlens.data.embeddings import load_human_data, load_objects, synthetic_objects
from innerlens.data.episodes import EpisodeSampler, median_labels
from innerlens.errors import ConfigError
from innerlens.families.metalign import MetalignConfig, MetalignExperiment, prepare_data


@pytest.fixture
def objects() -> tuple[torch.Tensor, torch.Tensor]:
    features, reference = synthetic_objects(300, 6, 16, 0.3, seed=0)
    return torch.from_numpy(features), torch.from_numpy(reference)


def test_episode_inputs_carry_the_previous_label_and_the_object(objects: tuple[torch.Tensor, torch.Tensor]) -> None:
    features, reference = objects
    sampler = EpisodeSampler(features, reference, [1, 2], torch.arange(300), 20)
    episodes = sampler.sample(32, torch.Generator().manual_seed(0))
    assert episodes.inputs.shape == (32, 20, 2 + 16)
    assert torch.all(episodes.inputs[:, 0, :2] == 0)
    previous = episodes.inputs[:, 1:, :2]
    assert torch.equal(previous.argmax(-1).float(), episodes.labels[:, :-1])
    assert torch.all(previous.sum(-1) == 1)
    assert torch.equal(episodes.inputs[..., 2:], features[episodes.objects])
    assert all(len(set(row.tolist())) == 20 for row in episodes.objects)  # distinct objects per episode


def test_labels_are_median_splits_flipped_per_episode(objects: tuple[torch.Tensor, torch.Tensor]) -> None:
    features, reference = objects
    truth = median_labels(reference)
    assert truth.mean(0).sub(0.5).abs().max() < 0.02
    generator = torch.Generator().manual_seed(1)
    fixed = EpisodeSampler(features, reference, [0, 3], torch.arange(300), 30, fixed_label=True).sample(64, generator)
    assert torch.equal(fixed.labels, truth[fixed.objects, fixed.dimensions[:, None]])
    flipped = EpisodeSampler(features, reference, [0, 3], torch.arange(300), 30).sample(400, generator)
    agrees = (flipped.labels == truth[flipped.objects, flipped.dimensions[:, None]]).all(dim=1)
    inverted = (flipped.labels == 1 - truth[flipped.objects, flipped.dimensions[:, None]]).all(dim=1)
    assert torch.all(agrees | inverted)
    assert 0.4 < agrees.float().mean() < 0.6


def test_weighted_sampling_favours_objects_far_from_the_median(objects: tuple[torch.Tensor, torch.Tensor]) -> None:
    features, reference = objects
    distance = (reference[:, 0] - reference[:, 0].median()).abs()
    generator = torch.Generator().manual_seed(2)
    draws = {weighted: EpisodeSampler(features, reference, [0], torch.arange(300), 20, weighted=weighted).sample(200, generator)
             for weighted in (False, True)}
    assert distance[draws[True].objects].mean() > 1.3 * distance[draws[False].objects].mean()
    # ... yet both labels stay equally likely: no feature-free "majority label" strategy
    unflipped = median_labels(reference)[draws[True].objects, 0]
    assert 0.45 < unflipped.float().mean() < 0.55


def _held_out_r2(reference: np.ndarray, held_out: list[int]) -> np.ndarray:
    """R² of each held-out dimension regressed on the others."""
    others = np.c_[np.delete(reference, held_out, axis=1), np.ones(len(reference))]
    target = reference[:, held_out]
    residual = target - others @ np.linalg.lstsq(others, target, rcond=None)[0]
    return 1 - (residual**2).sum(0) / ((target - target.mean(0)) ** 2).sum(0)


def test_synthetic_dimensions_share_a_latent_space_only_when_asked() -> None:
    for latent in (0, 6):
        features, reference = synthetic_objects(1500, 16, 32, 0.5, seed=3, latent=latent)
        assert (reference > 0).all() and features.shape == (1500, 32)
        assert ((reference < 0.05).mean(0) >= 0.35).all()  # sparse: 40 % of objects sit at the SPoSE-like floor
        assert np.all(np.diff(reference.mean(0)) <= 0)  # sorted by magnitude, as the SPoSE files
        r2 = _held_out_r2(reference, [0, 1, 2])
        assert (r2 > 0.6).all() if latent else (r2 < 0.05).all()


def test_held_out_dimensions_never_reach_training(tmp_path: Path) -> None:
    config = MetalignConfig(synthetic_objects=400, synthetic_dimensions=6, eval_dims=(1, 4), sequence_length=20,
                            eval_episodes=16, d_model=16, n_layers=1, n_heads=2, d_mlp=32)
    data = prepare_data(config, tmp_path)
    experiment = MetalignExperiment(config, data.objects, torch.device("cpu"))
    assert set(experiment.train_dims) == {0, 2, 3, 5}
    drawn = torch.cat([experiment.train_sampler.sample(64, experiment.generator).dimensions for _ in range(5)])
    assert set(drawn.tolist()) == {0, 2, 3, 5}
    assert set(experiment.episodes["val"].dimensions.tolist()) <= {0, 2, 3, 5}
    assert set(experiment.episodes["test"].dimensions.tolist()) == {1, 4}
    splits = experiment.splits
    assert not set(experiment.episodes["test"].objects.flatten().tolist()) - set(splits.test.tolist())
    assert not set(experiment.episodes["val"].objects.flatten().tolist()) - set(splits.val.tolist())


def test_cka_controls_see_test_objects_only_and_the_ridge_map_is_fitted_on_training_objects(tmp_path: Path) -> None:
    from innerlens.analysis.alignment import RIDGE, alignment_table

    config = MetalignConfig(synthetic_objects=400, synthetic_dimensions=6, eval_dims=(1, 4), sequence_length=20,
                            eval_episodes=16, d_model=16, n_layers=1, n_heads=2, d_mlp=32)
    data = prepare_data(config, tmp_path)
    experiment = MetalignExperiment(config, data.objects, torch.device("cpu"))
    test = experiment.splits.test
    controls, layers = experiment.controls(), experiment.object_representations()
    assert {"backbone", RIDGE, "input@init", "layer_0@init"} == set(controls)
    assert all(len(values) == len(test) for values in [*controls.values(), *layers.values()])
    assert controls[RIDGE].shape[1] == len(experiment.train_dims)  # it predicts training dimensions only
    experiment.reference[test] += 100.0  # test objects' reference values never reach the ridge fit
    assert np.allclose(experiment.controls()[RIDGE], controls[RIDGE])
    fresh = MetalignExperiment(config, data.objects, torch.device("cpu")).object_representations()  # an untrained run
    assert np.allclose(controls["layer_0@init"], fresh["layer_0"])  # the control is this run's own initialisation
    table = alignment_table({**controls, **layers}, data.objects.reference[test.numpy()], [1, 4], repeats=5, seed=0)
    assert set(table["kind"]) == {"backbone", "ridge", "init", "trained"}


def test_synthetic_participants_come_from_a_learner_neither_model_is() -> None:
    from innerlens.analysis.cognitive import prototype_logits
    from innerlens.families.metalign import simulated_humans

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 40, 5, generator=generator)
    labels = (x[..., 0] > 0).float()
    prototype = prototype_logits(x, labels)
    first_of_each = (labels.cumsum(1) >= 1) & ((1 - labels).cumsum(1) >= 1)
    assert torch.all(prototype[~torch.roll(first_of_each, 1, 1) | (torch.arange(40) == 0)] == 0)  # nothing to compare yet
    hits = ((prototype > 0).float() == labels).float()
    assert hits[:, -10:].mean() > 0.8  # it learns the rule
    assert not torch.allclose(prototype, online_logistic_logits(x, labels), atol=0.1)  # and is not the logistic learner

    config = MetalignConfig(synthetic_objects=300, synthetic_dimensions=6, eval_dims=(1, 4), sequence_length=20,
                            synthetic_participants=40)
    features, reference = synthetic_objects(300, 6, config.synthetic_features, config.synthetic_noise, config.seed,
                                            latent=config.synthetic_latent)
    human = simulated_humans(features, reference, config)
    assert set(human["dimension"]) == {1, 4} and human["correct"].isin([0, 1]).all()
    late, early = human[human["trial"] > 15]["correct"].mean(), human[human["trial"] <= 3]["correct"].mean()
    assert late > early  # the participants learn within an episode


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_loaders_reject_malformed_files_with_one_line(tmp_path: Path) -> None:
    good_reference = _write(tmp_path / "ref.txt", "0.1 0.2\n0.3 0.4\n0.5 0.6\n")
    np.savez(tmp_path / "three.npz", features=np.ones((3, 4)))
    np.savez(tmp_path / "two.npz", features=np.ones((2, 4)))
    np.savez(tmp_path / "many.npz", a=np.ones((3, 4)), b=np.ones((3, 4)))
    cases = {
        "no such file": (str(tmp_path / "missing.npz"), good_reference, None),
        "row 2 has 1 values": (str(tmp_path / "three.npz"), _write(tmp_path / "ragged.txt", "1 2\n3\n4 5\n"), None),
        "non-numeric": (str(tmp_path / "three.npz"), _write(tmp_path / "words.txt", "1 2\n3 x\n4 5\n"), None),
        "name one with --backbone-key": (str(tmp_path / "many.npz"), good_reference, None),
        "'c' is not in": (str(tmp_path / "many.npz"), good_reference, "c"),
        "--backbone has 2 objects but --reference has 3": (str(tmp_path / "two.npz"), good_reference, None),
        "not a readable .npz": (_write(tmp_path / "text.npz", "hello"), good_reference, None),
    }
    for expected, (backbone, reference, key) in cases.items():
        with pytest.raises(ConfigError) as error:
            load_objects(backbone, reference, key)
        assert expected in str(error.value) and "\n" not in str(error.value)
    human_cases = {
        "missing column(s) ['participant']": "dimension,trial,correct\n0,1,1\n",
        "'correct' must be 0 or 1": "dimension,trial,correct,participant\n0,1,2,a\n",
        "dimension(s) [7] not in": "dimension,trial,correct,participant\n7,1,1,a\n",
    }
    for expected, text in human_cases.items():
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
            load_human_data(_write(tmp_path / "human.csv", text), num_dimensions=2)


def test_logistic_learner_starts_at_chance_and_learns_a_linear_rule() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 60, 5, generator=generator)
    labels = (x[..., 0] + 0.5 * x[..., 1] > 0).float()
    logits = online_logistic_logits(x, labels)
    p = correct_probability(logits, labels)
    assert torch.all(logits[:, 0] == 0)
    hits = ((logits > 0).float() == labels).float()
    assert p[:, :3].mean() < 0.65 and p[:, -20:].mean() > 0.75
    assert hits[:, -20:].mean() > 0.9


def test_temperature_fit_recovers_the_temperature_that_made_the_choices() -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(300, 40, 4, generator=generator)
    labels = (x[..., 0] > 0).float()
    dimensions = torch.arange(300) % 3
    logits = online_logistic_logits(x, labels)
    choices = torch.bernoulli(correct_probability(logits, labels, 3.0), generator=generator)
    human = pd.DataFrame(choices.int().numpy()).assign(dimension=dimensions.numpy(), participant=np.arange(300).astype(str))
    human = human.melt(id_vars=["dimension", "participant"], var_name="trial", value_name="correct")
    human["trial"] = human["trial"].astype(int) + 1
    temperature, nll = fit_temperature(logits, labels, dimensions, human)
    assert temperature == pytest.approx(3.0, rel=0.25)
    assert nll < np.log(2)
    assert curve_by_dimension(correct_probability(logits, labels), dimensions)["trial"].min() == 1
