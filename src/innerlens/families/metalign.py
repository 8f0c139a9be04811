"""Metalign: a sequence model meta-learned on function-learning episodes over object embeddings.

Training episodes use the training dimensions and training objects; validation episodes (early
stopping, best checkpoint) the training dimensions on validation objects; test episodes the
held-out ``--eval-dims`` on test objects, reported only. After training, the best model is
measured twice:

* representational alignment: layer-wise CKA (linear and debiased, with intervals over
  object subsamples) between its representation of each *test* object (a one-step episode
  with a zero label) and the reference embedding, on all and on the held-out dimensions,
  beside three controls: the raw backbone, the same architecture at initialisation, and a
  ridge regression of the training dimensions from the backbone fitted on training objects
  (any supervised linear map can raise linear CKA; a layer beats the backbone only if it
  also beats the ridge map and its own initialisation);
* behavioural alignment: p(correct) over trials on held-out dimensions, next to a standard
  learner (online logistic regression) and, with ``--human-data``, next to humans, each
  scored by per-trial negative log-likelihood of the humans' outcomes, every learner at its
  fitted temperature. Synthetic participants are a prototype learner, neither model compared.
"""
from __future__ import annotations

import math
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from innerlens.analysis.alignment import AT_INIT, RIDGE, alignment_table, beats_controls
from innerlens.analysis.cognitive import (
    correct_probability,
    curve_by_dimension,
    fit_temperature,
    human_nll,
    online_logistic_logits,
    prototype_logits,
)
from innerlens.configs.metalign import MetalignConfig
from innerlens.data.embeddings import HUMAN_COLUMNS, ObjectData, load_human_data, load_objects, synthetic_objects, zscore
from innerlens.data.episodes import LABEL_CHANNELS, Episodes, EpisodeSampler
from innerlens.data.splits import split_indices
from innerlens.engine import FitResult, Selection, adamw, history_frame, seed_everything
from innerlens.errors import ConfigError
from innerlens.models.meta_learner import MetaLearner
from innerlens.plan import Plan, RunLog
from innerlens.viz.curves import metric_curves
from innerlens.viz.metalign import group_figures

SYNTHETIC_HUMAN_TEMPERATURE = 0.5


@dataclass(frozen=True)
class PreparedData:
    objects: ObjectData
    human: pd.DataFrame | None
    source_dir: Path | None  # synthetic files to log with the run


def write_synthetic(directory: Path, config: MetalignConfig) -> dict[str, Path]:
    """Synthetic files in the real formats; simulated learners on the held-out dims as 'humans'."""
    features, reference = synthetic_objects(
        config.synthetic_objects, config.synthetic_dimensions, config.synthetic_features, config.synthetic_noise, config.seed,
        latent=config.synthetic_latent,
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / file for name, file in
             (("backbone", "backbone.npz"), ("reference", "reference.txt"), ("names", "dimension_names.txt"), ("human", "human.csv"))}
    np.savez(paths["backbone"], features=features)
    np.savetxt(paths["reference"], reference, fmt="%.6f")
    paths["names"].write_text("".join(f"synthetic_{k}\n" for k in range(config.synthetic_dimensions)))
    simulated_humans(features, reference, config).to_csv(paths["human"], index=False)
    return paths


def simulated_humans(features: np.ndarray, reference: np.ndarray, config: MetalignConfig) -> pd.DataFrame:
    """Each participant does one episode per held-out dimension, choosing like a prototype learner
    (distance to the class means seen so far) at a known temperature: a learner that is neither
    the meta-learner nor the logistic learner, so neither wins by being the data's generator."""
    eval_dims = [d for d in config.eval_dims if d < reference.shape[1]]
    if not eval_dims:
        return pd.DataFrame(columns=list(HUMAN_COLUMNS))
    generator = torch.Generator().manual_seed(config.seed + 7919)
    trials = min(config.sequence_length, len(features))
    sampler = EpisodeSampler(torch.from_numpy(zscore(features)), torch.from_numpy(reference), eval_dims,
                             torch.arange(len(features)), trials, weighted=config.weighted_sampling)
    episodes = sampler.sample(config.synthetic_participants * len(eval_dims), generator, balanced=True)
    logits = prototype_logits(episodes.inputs[..., LABEL_CHANNELS:], episodes.labels)
    correct = torch.bernoulli(correct_probability(logits, episodes.labels, SYNTHETIC_HUMAN_TEMPERATURE), generator=generator)
    frame = pd.DataFrame(correct.int().numpy()).assign(
        dimension=episodes.dimensions.numpy(),
        participant=[f"sim{i // len(eval_dims):03d}" for i in range(len(episodes))],
    )
    frame = frame.melt(id_vars=["dimension", "participant"], var_name="trial", value_name="correct")
    frame["trial"] = frame["trial"].astype(int) + 1
    return frame[list(HUMAN_COLUMNS)]


def prepare_data(config: MetalignConfig, scratch: Path) -> PreparedData:
    """Load (or write and load) the files and check them against the config, before any run exists."""
    source_dir = None
    backbone, reference, names, human = config.backbone, config.reference, config.dimension_names, config.human_data
    if backbone is None:
        source_dir = scratch / "data"
        paths = write_synthetic(source_dir, config)
        backbone, reference, names = paths["backbone"], paths["reference"], paths["names"]
        human = human or paths["human"]
    objects = load_objects(backbone, reference, config.backbone_key, names)
    bad = [d for d in config.eval_dims if d >= objects.num_dimensions]
    if bad:
        raise ConfigError(f"--eval-dims {bad} out of range: the reference has dimensions 0..{objects.num_dimensions - 1}")
    if objects.num_dimensions - len(config.eval_dims) < 1:
        raise ConfigError("--eval-dims leaves no dimension to train on")
    smallest = min(int(objects.num_objects * f) for f in (config.val_fraction, config.test_fraction))
    if smallest < config.sequence_length:
        raise ConfigError(
            f"--sequence-length {config.sequence_length} needs at least that many distinct objects per split; "
            f"{objects.num_objects} objects leave {smallest} in the smallest split"
        )
    frame = None
    if human:
        frame = load_human_data(human, objects.num_dimensions)
        frame = frame[frame["dimension"].isin(config.eval_dims) & (frame["trial"] <= config.sequence_length)]
        if frame.empty:
            raise ConfigError(f"--human-data {human} has no trials on --eval-dims {','.join(map(str, config.eval_dims))}")
    return PreparedData(objects, frame, source_dir)


class MetalignExperiment:
    def __init__(self, config: MetalignConfig, data: ObjectData, device: torch.device) -> None:
        seed_everything(config.seed)
        self.config, self.device = config, device
        self.features = torch.from_numpy(zscore(data.features)).to(device)
        self.reference = torch.from_numpy(data.reference).to(device)
        self.eval_dims = list(config.eval_dims)
        self.train_dims = [d for d in range(data.num_dimensions) if d not in self.eval_dims]
        splits = split_indices(data.num_objects, (config.train_fraction, config.val_fraction, config.test_fraction), config.seed)
        self.splits = splits

        def sampler(dims: list[int], objects: torch.Tensor) -> EpisodeSampler:
            return EpisodeSampler(self.features, self.reference, dims, objects, config.sequence_length,
                                  fixed_label=config.fixed_label, weighted=config.weighted_sampling)

        self.train_sampler = sampler(self.train_dims, splits.train)
        fixed = torch.Generator().manual_seed(config.seed + 1)
        self.episodes = {
            "val": sampler(self.train_dims, splits.val).sample(config.eval_episodes, fixed),
            "test": sampler(self.eval_dims, splits.test).sample(config.eval_episodes, fixed, balanced=True),
        }
        self.model = MetaLearner(self.features.shape[1] + LABEL_CHANNELS, label_channels=LABEL_CHANNELS, sequence_length=config.sequence_length,
                                 d_model=config.d_model, n_layers=config.n_layers, n_heads=config.n_heads,
                                 d_mlp=config.d_mlp, seed=config.seed, device=device)
        self.optimizer = adamw(self.model.parameters(), device, lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)

    def train_round(self, epoch: int) -> dict[str, float]:
        self.model.train()
        steps = math.ceil(self.config.episodes_per_epoch / self.config.batch_size)
        loss_sum, correct = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        for _ in range(steps):
            batch = self.train_sampler.sample(self.config.batch_size, self.generator)
            logits = self.model(batch.inputs)
            loss = F.binary_cross_entropy_with_logits(logits, batch.labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach()
            correct += ((logits.detach() > 0).float() == batch.labels).float().mean()
        return {"train/loss": loss_sum.item() / steps, "train/acc": correct.item() / steps}

    @torch.no_grad()
    def logits(self, episodes: Episodes) -> torch.Tensor:
        self.model.eval()
        return torch.cat([self.model(episodes.inputs[s : s + 128]) for s in range(0, len(episodes), 128)])

    def evaluate(self, epoch: int) -> dict[str, float]:
        metrics = {}
        for split, episodes in self.episodes.items():
            logits = self.logits(episodes)
            hits = ((logits > 0).float() == episodes.labels).float()
            quarter = max(1, hits.shape[1] // 4)
            metrics[f"{split}/loss"] = F.binary_cross_entropy_with_logits(logits, episodes.labels).item()
            metrics[f"{split}/acc"] = hits.mean().item()
            metrics[f"{split}/acc_first_quarter"] = hits[:, :quarter].mean().item()
            metrics[f"{split}/acc_last_quarter"] = hits[:, -quarter:].mean().item()
        return metrics

    @torch.no_grad()
    def object_representations(self, model: MetaLearner | None = None) -> dict[str, np.ndarray]:
        """Each test object alone in a one-step episode with the zero label: the model's view of it."""
        model = model or self.model
        model.eval()
        features = self.features[self.splits.test.to(self.device)]
        inputs = torch.cat([torch.zeros(len(features), 1, LABEL_CHANNELS, device=self.device), features[:, None]], dim=-1)
        parts = [model.representations(inputs[s : s + 512]) for s in range(0, len(inputs), 512)]
        return {name: torch.cat([p[name] for p in parts]).cpu().numpy() for name in parts[0]}

    def controls(self) -> dict[str, np.ndarray]:
        """The test objects as the controls see them: raw backbone, the untrained model's layers,
        and the ridge map of the training dimensions fitted on training objects."""
        from sklearn.linear_model import RidgeCV

        config = self.config
        with torch.random.fork_rng(devices=[]):  # the trained model's own initial weights, leaving the RNG as it was
            torch.manual_seed(config.seed)
            untrained = MetaLearner(self.features.shape[1] + LABEL_CHANNELS, label_channels=LABEL_CHANNELS,
                                    sequence_length=config.sequence_length, d_model=config.d_model, n_layers=config.n_layers,
                                    n_heads=config.n_heads, d_mlp=config.d_mlp, seed=config.seed, device=self.device)
        features = self.features.cpu().numpy()
        train, test = self.splits.train.numpy(), self.splits.test.numpy()
        reference = self.reference.cpu().numpy()
        ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(features[train], reference[train][:, self.train_dims])
        return {"backbone": features[test], RIDGE: ridge.predict(features[test]),
                **{f"{name}{AT_INIT}": values for name, values in self.object_representations(untrained).items()}}


def behaviour_table(experiment: MetalignExperiment, human: pd.DataFrame | None, l2: float) -> tuple[pd.DataFrame, dict[str, float]]:
    """Tidy p(correct) per (learner, unit, dimension, trial) on the test episodes, and the NLL scores."""
    episodes = experiment.episodes["test"]
    meta_logits = experiment.logits(episodes)
    cognitive_logits = online_logistic_logits(episodes.inputs[..., LABEL_CHANNELS:], episodes.labels, l2)
    scores: dict[str, float] = {}
    # One treatment for every learner, in the NLL and in the figure: each at its fitted temperature
    # when there are humans to fit it to, each at T = 1 (its own probabilities) otherwise.
    temperatures = {"meta_learner": 1.0, "cognitive": 1.0}
    if human is not None:
        scores["behaviour/nll/chance"] = math.log(2.0)
        for learner, logits in (("meta_learner", meta_logits), ("cognitive", cognitive_logits)):
            temperature, nll = fit_temperature(logits.cpu(), episodes.labels.cpu(), episodes.dimensions.cpu(), human)
            temperatures[learner] = temperature
            scores[f"behaviour/nll/{learner}"] = nll
            scores[f"behaviour/temperature/{learner}"] = temperature
        untempered = curve_by_dimension(correct_probability(meta_logits, episodes.labels).cpu(), episodes.dimensions.cpu())
        scores["behaviour/nll/meta_learner_untempered"] = human_nll(untempered, human)
    frames = []
    for learner, logits in (("meta_learner", meta_logits), ("cognitive", cognitive_logits)):
        p = correct_probability(logits, episodes.labels, temperatures[learner]).cpu().numpy()
        frame = pd.DataFrame(p).assign(unit=np.arange(len(p)).astype(str), dimension=episodes.dimensions.cpu().numpy())
        frames.append(frame.melt(id_vars=["unit", "dimension"], var_name="trial", value_name="p_correct").assign(learner=learner))
    if human is not None:
        frames.append(human.rename(columns={"participant": "unit", "correct": "p_correct"}).assign(learner="human"))
    table = pd.concat(frames, ignore_index=True)
    table["trial"] = table["trial"].astype(int) + np.where(table["learner"] == "human", 0, 1)
    if human is not None:  # humans and models on the same trials
        table = table[table["trial"] <= min(int(human["trial"].max()), episodes.labels.shape[1])]
    return table[["learner", "unit", "dimension", "trial", "p_correct"]], scores


@dataclass
class MetalignPlan(Plan):
    """A metalign run and its data; ``scratch`` holds synthetic files until they are logged."""

    data: PreparedData | None = None
    scratch: tempfile.TemporaryDirectory[str] | None = None

    def start(self, tracker: RunLog, resumed: bool) -> tuple[()]:
        assert self.data is not None
        if self.data.source_dir and not resumed:
            tracker.log_directory(self.data.source_dir, "data")
        return ()


def build(config: MetalignConfig, device: torch.device) -> MetalignPlan:
    """Load (or write) the embeddings and human data, checked before any run exists."""
    scratch = tempfile.TemporaryDirectory(prefix="innerlens-metalign-")
    data = prepare_data(config, Path(scratch.name))
    experiment = MetalignExperiment(config, data.objects, device)
    return MetalignPlan(
        experiment, variant="fixed_label" if config.fixed_label else "flipped_label", run_name=f"metalign-s{config.seed}",
        selection=Selection(patience=config.patience, target_accuracy=config.target_accuracy, target_split=config.target_split),
        rounds=config.max_epochs, data=data, scratch=scratch,
        tags={"innerlens.data": "synthetic" if data.source_dir else "files",
              "innerlens.train_dims": ",".join(map(str, experiment.train_dims))})


def report(tracker: RunLog, plan: MetalignPlan, fit: FitResult) -> None:
    """Alignment metrics, tables and figures of the validation-best model."""
    from innerlens.viz import metalign as viz

    experiment: MetalignExperiment = plan.experiment
    config, data, state = experiment.config, plan.data, fit.state
    assert data is not None and fit.best_state is not None
    experiment.model.load_state_dict(fit.best_state)

    names = data.objects.dimension_names
    test = experiment.splits.test.numpy()
    cka = alignment_table({**experiment.controls(), **experiment.object_representations()}, data.objects.reference[test],
                          experiment.eval_dims, config.cka_repeats, config.seed)
    behaviour, scores = behaviour_table(experiment, data.human, config.cognitive_l2)
    scores.update({f"cka_{row.method}/{row.layer.replace('@', '_at_')}/{row.subset}": row.value for row in cka.itertuples()})
    scores.update(beats_controls(cka))
    tracker.log_metrics(state.step, scores)
    tracker.log_text(cka.drop(columns=["draws"]).to_csv(index=False), "tables/cka.csv")
    by_dimension = behaviour.groupby(["learner", "dimension"], as_index=False)["p_correct"].mean()
    by_dimension["name"] = by_dimension["dimension"].map(lambda d: names[d])
    tracker.log_text(by_dimension.to_csv(index=False), "tables/accuracy_by_dimension.csv")
    tracker.log_text(behaviour.groupby(["learner", "trial"], as_index=False)["p_correct"].mean().to_csv(index=False),
                     "tables/accuracy_by_position.csv")
    history = history_frame(state.history).assign(run_id=tracker.run_id, variant="metalign")
    tracker.log_figure(metric_curves(history, ["train/loss", "val/loss", "test/loss", "train/acc", "val/acc", "test/acc"],
                                     group="variant", title="Meta-training"), "training")
    tracker.log_figure(viz.cka_layers(cka), "cka_layers")
    tracker.log_figure(viz.learning_curves(behaviour), "learning_curves")
    tracker.log_figure(viz.learning_curves_by_dimension(behaviour, names), "learning_curves_by_dimension")
    tracker.log_figure(viz.accuracy_by_dimension(behaviour, names), "accuracy_by_dimension")


def comparison_figures(history: pd.DataFrame, runs: pd.DataFrame, summary: pd.DataFrame,
                       read_table: Callable[[str, str], pd.DataFrame]) -> dict[str, Figure]:
    """compare's figures for metalign runs, drawn from each run's own tables (``read_table(run_id, path)``)."""

    def tables(path: str) -> pd.DataFrame:
        with ThreadPoolExecutor(max_workers=8) as pool:
            frames = pool.map(lambda run_id: read_table(run_id, path).assign(run_id=run_id), runs["run_id"])
            return pd.concat(list(frames), ignore_index=True).merge(runs[["run_id", "group"]])

    return group_figures(tables("tables/cka.csv"), tables("tables/accuracy_by_position.csv"))
