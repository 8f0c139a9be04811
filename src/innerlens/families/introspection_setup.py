"""The introspection options held against the loaded model: layer and neuron ranges, the head's
feature layer (strictly below the target unless a readout is allowed), and which weights train."""
from __future__ import annotations

import torch

from innerlens.configs.introspection import IntrospectionConfig
from innerlens.errors import ConfigError
from innerlens.models.loading import LoadedModel


def check_layers(config: IntrospectionConfig, n_layers: int | None) -> None:
    """--layer and --unfreeze-from against the model's layer count (None: not known yet)."""
    for flag, value in (("--layer", config.layer), ("--unfreeze-from", config.unfreeze_from)):
        if n_layers is not None and value is not None and not 0 <= value < n_layers:
            raise ConfigError(f"{flag} {value} is out of range: {config.model} has layers 0..{n_layers - 1}")


def check_against_model(config: IntrospectionConfig, model: LoadedModel, shortest_text: int) -> None:
    """Range checks that need the model: one line naming the valid range."""
    n_layers = model.n_layers
    check_layers(config, n_layers)
    width = model.d_mlp if config.layer_type == "mlp_out" else model.d_model
    if config.neuron is not None and not 0 <= config.neuron < width:
        raise ConfigError(f"--neuron {config.neuron} is out of range: {config.layer_type} of {config.model} has neurons 0..{width - 1}")
    if config.position is not None and config.position >= shortest_text:
        raise ConfigError(f"--token-position {config.position} is beyond the shortest text ({shortest_text} tokens); use last or 0..{shortest_text - 1}")
    if config.feature_layer is not None and not -1 <= config.feature_layer < n_layers:
        raise ConfigError(f"--feature-layer {config.feature_layer} is out of range: {config.model} has layers -1 (the embeddings)..{n_layers - 1}")


def feature_layer_for(config: IntrospectionConfig, target_layer: int) -> int:
    """The residual layer the head reads: strictly below the target's layer unless a readout is asked for.

    At or above it, the features already contain the neuron's own write (W_out · its activation):
    a frozen probe then reads the target off the features, and "introspection" is a readout.
    """
    if config.feature_layer is None:
        return target_layer - 1
    if config.feature_layer >= target_layer and not config.allow_readout:
        raise ConfigError(f"--feature-layer {config.feature_layer} is not below the target's layer {target_layer}: the head would read "
                          "the neuron's own write, not predict it; choose a lower layer or add --allow-readout")
    return config.feature_layer


def trainable_parameters(bridge: torch.nn.Module, config: IntrospectionConfig, target_layer: int) -> list[str]:
    """Apply the unfreezing strategy (requires_grad) and return the names that train."""
    n_layers = len(bridge.blocks)
    for parameter in bridge.parameters():
        parameter.requires_grad_(config.unfreeze == "all")
    modules: list[torch.nn.Module] = []
    if config.unfreeze == "after_target":
        modules = [bridge.blocks[i] for i in range(target_layer + 1, n_layers)]
    elif config.unfreeze == "from_layer":
        assert config.unfreeze_from is not None
        modules = [bridge.blocks[i] for i in range(config.unfreeze_from, n_layers)]
    elif config.unfreeze == "selective":
        for component in config.unfreeze_components:
            if component == "embeddings":
                modules += [bridge.embed, bridge.pos_embed]
            else:
                modules += [getattr(block, "attn" if component == "attention" else "mlp") for block in bridge.blocks]
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    return [name for name, parameter in bridge.named_parameters() if parameter.requires_grad]
