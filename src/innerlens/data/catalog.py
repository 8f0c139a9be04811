"""Facts about the built-in datasets that options are checked against, importable without torch."""
from __future__ import annotations

import os
from pathlib import Path

DIGITS_EXAMPLES = 1797  # scikit-learn's 8x8 handwritten digits, shipped inside the package
FASHION_MNIST_EXAMPLES = 70_000  # Zalando's Fashion-MNIST: 60,000 + 10,000 images, pooled and re-split
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"  # Debian's package: the four IDX files below
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
MODULAR_OPERATIONS = ("add", "sub", "mul", "div")


def fashion_mnist_dir() -> Path:
    """Where the IDX files are: ``INNERLENS_FASHION_MNIST`` or the Debian package's folder."""
    return Path(os.environ.get("INNERLENS_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def fashion_mnist_missing() -> str | None:
    """A one-line message naming the package when the files are absent, else None."""
    folder = fashion_mnist_dir()
    absent = [name for name in FASHION_MNIST_FILES if not (folder / name).is_file()]
    if not absent:
        return None
    return (f"--task fashion_mnist: {folder / absent[0]} is missing; install Debian's {FASHION_MNIST_PACKAGE} "
            f"(apt-get install {FASHION_MNIST_PACKAGE}) or point INNERLENS_FASHION_MNIST at the four IDX .gz files")
