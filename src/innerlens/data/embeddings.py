"""Object embeddings in the file formats of the THINGS studies, and synthetic files in those formats.

* backbone representations: ``.npz`` with one row per object (e.g. DINOv2 features of the 1,854
  THINGS objects), under ``--backbone-key`` or as the file's only array;
* reference embedding: whitespace-separated text, one row per object and one column per
  dimension, as the SPoSE files (``spose_embedding_66d_sorted.txt``);
* dimension names: optional text file, one name per line;
* human learning data: CSV with ``dimension, trial, correct, participant``.

Nothing can be downloaded here, so :func:`write_synthetic` writes files in exactly these
formats: a sparse non-negative low-dimensional embedding and backbone features that are a
noisy nonlinear map of it, plus simulated learners as "humans".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from innerlens.errors import ConfigError
from innerlens.inputs import existing_file, read_input_csv, read_input_text

HUMAN_COLUMNS = ("dimension", "trial", "correct", "participant")


@dataclass(frozen=True)
class ObjectData:
    """Backbone features and reference embedding of the same objects, row for row."""

    features: np.ndarray  # (objects, feature_dim), float32
    reference: np.ndarray  # (objects, dimensions), float64
    dimension_names: tuple[str, ...]

    @property
    def num_objects(self) -> int:
        return len(self.features)

    @property
    def num_dimensions(self) -> int:
        return self.reference.shape[1]


def load_backbone(path: str | Path, key: str | None = None) -> np.ndarray:
    """The (objects, features) array of an ``.npz`` file."""
    path = existing_file(path, "--backbone")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise ConfigError(f"--backbone {path}: not a readable .npz file ({error})") from None
    with archive:
        names = list(archive.files)
        if key is None and len(names) != 1:
            raise ConfigError(f"--backbone {path} holds arrays {names}; name one with --backbone-key")
        if key is not None and key not in names:
            raise ConfigError(f"--backbone-key {key!r} is not in {path} (arrays: {names})")
        features = archive[key or names[0]]
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.number):
        raise ConfigError(f"--backbone {path}: expected a 2-D numeric array (objects x features), got {features.dtype} {features.shape}")
    if not np.isfinite(features).all():
        raise ConfigError(f"--backbone {path}: contains NaN or infinite values")
    return features.astype(np.float32)


def load_reference(path: str | Path) -> np.ndarray:
    """The (objects, dimensions) reference embedding of a whitespace-separated text file."""
    rows = [line.split() for line in read_input_text(path, "--reference").splitlines() if line.strip()]
    if not rows:
        raise ConfigError(f"--reference {path}: the file is empty")
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        bad = next(i for i, row in enumerate(rows) if len(row) != len(rows[0]))
        raise ConfigError(f"--reference {path}: row {bad + 1} has {len(rows[bad])} values, row 1 has {len(rows[0])}")
    try:
        reference = np.array(rows, dtype=np.float64)
    except ValueError as error:
        raise ConfigError(f"--reference {path}: non-numeric value ({error})") from None
    if not np.isfinite(reference).all():
        raise ConfigError(f"--reference {path}: contains NaN or infinite values")
    return reference


def load_dimension_names(path: str | Path | None, num_dimensions: int) -> tuple[str, ...]:
    """Readable names, one per line; ``dim_<k>`` when no file is given."""
    if not path:
        return tuple(f"dim_{k}" for k in range(num_dimensions))
    names = [line.strip() for line in read_input_text(path, "--dimension-names").splitlines() if line.strip()]
    if len(names) != num_dimensions:
        raise ConfigError(f"--dimension-names {path}: {len(names)} names for {num_dimensions} reference dimensions")
    return tuple(names)


def load_objects(backbone: str | Path, reference: str | Path, backbone_key: str | None = None, names: str | Path | None = None) -> ObjectData:
    features, embedding = load_backbone(backbone, backbone_key), load_reference(reference)
    if len(features) != len(embedding):
        raise ConfigError(
            f"--backbone has {len(features)} objects but --reference has {len(embedding)}; both need one row per object, in the same order"
        )
    return ObjectData(features, embedding, load_dimension_names(names, embedding.shape[1]))


def load_human_data(path: str | Path, num_dimensions: int) -> pd.DataFrame:
    """Human trials as a frame with integer ``dimension``, ``trial`` (from 1), ``correct`` in {0, 1}, ``participant``."""
    frame = read_input_csv(path, "--human-data")
    missing = [column for column in HUMAN_COLUMNS if column not in frame.columns]
    if missing:
        raise ConfigError(f"--human-data {path}: missing column(s) {missing}; expected {list(HUMAN_COLUMNS)}")
    frame = frame[list(HUMAN_COLUMNS)].copy()
    for column in ("dimension", "trial", "correct"):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any() or (values % 1 != 0).any():
            raise ConfigError(f"--human-data {path}: column {column!r} must hold integers")
        frame[column] = values.astype(int)
    if not frame["correct"].isin([0, 1]).all():
        raise ConfigError(f"--human-data {path}: column 'correct' must be 0 or 1")
    if frame["trial"].min() < 1:
        raise ConfigError(f"--human-data {path}: trials are numbered from 1")
    out_of_range = sorted(set(frame["dimension"]) - set(range(num_dimensions)))
    if out_of_range:
        raise ConfigError(f"--human-data {path}: dimension(s) {out_of_range} not in the reference's 0..{num_dimensions - 1}")
    frame["participant"] = frame["participant"].astype(str)
    return frame


def zscore(features: np.ndarray) -> np.ndarray:
    """Columns to zero mean and unit variance (constant columns stay zero)."""
    std = features.std(axis=0, keepdims=True)
    return ((features - features.mean(axis=0, keepdims=True)) / np.where(std > 0, std, 1.0)).astype(np.float32)


@dataclass(frozen=True)
class SyntheticFiles:
    backbone: Path
    reference: Path
    dimension_names: Path
    human_data: Path


def synthetic_objects(num_objects: int, num_dimensions: int, feature_dim: int, noise: float, seed: int,
                      latent: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(features, reference): a sparse non-negative embedding and a noisy nonlinear map of it.

    Each dimension is a rectified score, active for 60 % of the objects (a small positive floor
    as in SPoSE, so the median is not a tie), scaled per dimension and sorted by mean magnitude
    like the SPoSE files. With ``latent`` > 0 the scores are random projections of a shared
    ``latent``-dimensional object space, so dimensions are correlated as SPoSE's are and a held-out
    dimension is a new threshold in the space the training dimensions span; with 0 they are
    independent, and nothing learned on some dimensions says anything about the others.
    Features are ``tanh`` of a random mixing of the dimensions, embedded in a wider feature space
    and perturbed by isotropic noise (as a backbone carries much that no dimension needs).
    """
    rng = np.random.default_rng(seed)
    if latent > 0:
        scores = rng.normal(size=(num_objects, latent)) @ rng.normal(size=(latent, num_dimensions))
    else:
        scores = rng.normal(size=(num_objects, num_dimensions))
    scores = scores / scores.std(axis=0)
    active = np.maximum(scores - np.quantile(scores, 0.4, axis=0), 0.0)
    reference = active * rng.exponential(1.0, num_dimensions) + np.abs(rng.normal(0, 0.01, (num_objects, num_dimensions)))
    reference = reference[:, np.argsort(-reference.mean(axis=0))]
    centred = (reference - reference.mean(axis=0)) / reference.std(axis=0)
    hidden = np.tanh(centred @ rng.normal(0, 1.0 / np.sqrt(num_dimensions), (num_dimensions, num_dimensions)))
    # The signal spans num_dimensions directions of the feature space; the noise spans all of it.
    features = hidden @ rng.normal(0, 1.0, (num_dimensions, feature_dim))
    features = features + noise * features.std() * rng.normal(size=features.shape)
    return features.astype(np.float32), reference
