"""Facts about the built-in datasets that options are checked against, importable without torch."""
from __future__ import annotations

DIGITS_EXAMPLES = 1797  # scikit-learn's 8x8 handwritten digits, shipped inside the package
MODULAR_OPERATIONS = ("add", "sub", "mul", "div")
