"""The options of a transformer a family builds itself, and the check they share."""
from __future__ import annotations

from dataclasses import dataclass

from innerlens.config import Config, option, positive


@dataclass(frozen=True)
class ModelShape(Config):
    """Blocks, widths and heads. A family mixes it in and redeclares a field for another default."""

    n_layers: int = option(4, "Transformer blocks.", check=positive)
    d_model: int = option(64, "Residual stream width.", check=positive)
    n_heads: int = option(4, "Attention heads per block (must divide d_model).", check=positive)
    d_mlp: int = option(256, "MLP hidden width.", check=positive)

    def check(self) -> str | None:
        return None if self.d_model % self.n_heads == 0 else f"--n-heads {self.n_heads} must divide --d-model {self.d_model}"
