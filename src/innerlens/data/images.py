"""Real image datasets as flat feature vectors, for the paper's MLP (Premakumar et al. 2024).

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` (IDX files, gzip), scikit-learn's digits
from the package itself: nothing is downloaded. Pixels are scaled to [-1, 1], as the paper's
``Normalize((0.5,), (0.5,))`` does. Train and test files are pooled; :func:`split_indices` cuts
70/15/15 like every other task, so the paper's own test set is not kept apart (the paper used it
as its validation set too).
"""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from innerlens.data.catalog import FASHION_MNIST_FILES, fashion_mnist_dir

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


@dataclass(frozen=True)
class FeatureTask:
    """Examples as float feature rows ``x`` (n, d) with class labels ``y`` (n,)."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int

    @property
    def n_features(self) -> int:
        return self.x.shape[1]


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (LeCun's format, optionally gzipped) as an array of its declared type and shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic {raw[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=IDX_DTYPES[dtype_code], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {data.size} values for shape {shape}")
    return data.reshape(shape)


def scaled_pixels(images: np.ndarray, top: float) -> torch.Tensor:
    """Flattened pixels mapped from [0, top] to [-1, 1]."""
    flat = torch.as_tensor(images.reshape(len(images), -1), dtype=torch.float32)
    return flat / top * 2 - 1


def fashion_mnist(folder: Path | None = None) -> FeatureTask:
    """All 70,000 Fashion-MNIST images (train file, then test file) as 784 features in [-1, 1]."""
    folder = folder or fashion_mnist_dir()
    train_x, train_y, test_x, test_y = (read_idx(folder / name) for name in FASHION_MNIST_FILES)
    x = scaled_pixels(np.concatenate([train_x, test_x]), 255.0)
    y = torch.as_tensor(np.concatenate([train_y, test_y]).astype(np.int64))
    return FeatureTask("fashion_mnist", x, y, 10)


def digit_features() -> FeatureTask:
    """scikit-learn's 1,797 8x8 digits as 64 features in [-1, 1]."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    return FeatureTask("digits", scaled_pixels(images, 16.0), torch.as_tensor(labels, dtype=torch.long), 10)
