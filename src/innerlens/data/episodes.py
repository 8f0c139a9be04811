"""Function-learning episodes over objects (the metalign task, Demircan et al.).

A task is one reference dimension: an object's label is 1 when its value on that dimension is
at or above the dimension's median. Per episode the labels are flipped with probability 0.5,
so which side is "1" must be learned in context. An episode is ``sequence_length`` distinct
objects; the input at step t is the one-hot label of step t-1 (zeros at t = 0) followed by the
object's (z-scored) backbone features, and the target at step t is the label of step t.
Batches are drawn whole on the device: no DataLoader, no per-episode Python.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

LABEL_CHANNELS = 2


@dataclass(frozen=True)
class Episodes:
    inputs: torch.Tensor  # (episodes, steps, 2 + feature_dim)
    labels: torch.Tensor  # (episodes, steps), float 0/1
    dimensions: torch.Tensor  # (episodes,), the reference dimension each episode learns
    objects: torch.Tensor  # (episodes, steps), object indices

    def __len__(self) -> int:
        return len(self.labels)


def median_labels(reference: torch.Tensor) -> torch.Tensor:
    """(objects, dimensions) 0/1: at or above the dimension's median."""
    median = reference.quantile(0.5, dim=0, keepdim=True)
    return (reference >= median).float()


def far_from_median_weights(values: torch.Tensor, median: torch.Tensor) -> torch.Tensor:
    """(objects, dimensions) sampling weights ∝ distance to the median, so clear cases come up more,
    rescaled so that each side of the median carries half of every dimension's weight.

    Unbalanced, the long upper tail of a sparse non-negative dimension would make most sampled
    labels 1, and "predict the label seen most so far" would score far above chance without
    looking at a single feature.
    """
    distance = (values - median).abs()
    distance = distance + 1e-6 * distance.mean(dim=0, keepdim=True).clamp_min(1e-12)
    above = values >= median
    weights = torch.zeros_like(distance)
    for side in (above, ~above):
        side_weight = torch.where(side, distance, torch.zeros_like(distance))
        weights += side_weight / side_weight.sum(dim=0, keepdim=True).clamp_min(1e-12)
    return weights


def episode_inputs(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Previous step's one-hot label (zeros first) concatenated with each step's features."""
    previous = torch.nn.functional.one_hot(labels[:, :-1].long(), LABEL_CHANNELS).to(features.dtype)
    previous = torch.cat([torch.zeros_like(previous[:, :1]), previous], dim=1)
    return torch.cat([previous, features], dim=-1)


class EpisodeSampler:
    """Draws batches of episodes for a fixed set of dimensions from a fixed set of objects."""

    def __init__(
        self,
        features: torch.Tensor,
        reference: torch.Tensor,
        dimensions: list[int],
        objects: torch.Tensor,
        sequence_length: int,
        *,
        fixed_label: bool = False,
        weighted: bool = False,
    ) -> None:
        assert len(objects) >= sequence_length, "checked by the family before training"
        self.features = features
        self.dimensions = torch.as_tensor(dimensions, dtype=torch.long, device=features.device)
        self.objects = objects.to(features.device)
        self.sequence_length = sequence_length
        self.fixed_label = fixed_label
        # Labels and weights use the medians over *all* objects: the task is a property of the dimension.
        self.labels = median_labels(reference)[:, self.dimensions]
        candidates = reference[self.objects][:, self.dimensions]
        median = reference[:, self.dimensions].quantile(0.5, dim=0, keepdim=True)
        weights = far_from_median_weights(candidates, median) if weighted else torch.ones_like(candidates)
        self.weights = weights.T.contiguous().cpu()  # (dims, candidate objects)

    def sample(self, episodes: int, generator: torch.Generator, *, balanced: bool = False) -> Episodes:
        """Random dimensions per episode, or with ``balanced`` the dimensions in turn (equal counts)."""
        device = self.features.device
        if balanced:
            which = torch.arange(episodes) % len(self.dimensions)
        else:
            which = torch.randint(len(self.dimensions), (episodes,), generator=generator)
        picks = torch.multinomial(self.weights[which], self.sequence_length, generator=generator)
        # Weighted draws without replacement come out heaviest first: shuffle so position carries no weight.
        shuffle = torch.rand(picks.shape, generator=generator).argsort(dim=1)
        picks = picks.gather(1, shuffle).to(device)
        which = which.to(device)
        objects = self.objects[picks]
        labels = self.labels[objects, which[:, None]]
        if not self.fixed_label:
            flip = torch.rand(episodes, generator=generator).to(device) < 0.5
            labels = torch.where(flip[:, None], 1.0 - labels, labels)
        return Episodes(episode_inputs(self.features[objects], labels), labels, self.dimensions[which], objects)
