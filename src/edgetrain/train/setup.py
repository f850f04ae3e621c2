"""Building the model a run trains: one function, used by the engine and the memory planner's
probes alike, so the planner measures exactly the model that will train."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgetrain.models import create_model
from edgetrain.models.found import create as create_found
from edgetrain.models.found import is_spec_id
from edgetrain.train.config import RunConfig
from edgetrain.train.modes import (
    apply_train_scope,
    load_init_weights,
    set_bn_momentum,
    set_inplace_activations,
)


@dataclass
class BuiltModel:
    model: nn.Module
    frozen: list[nn.Module]  # modules whose BatchNorm stays in eval mode (frozen by the scope)
    init_info: dict[str, int] | None  # --init: tensors loaded / re-initialised


def build_model(config: RunConfig, num_classes: int) -> BuiltModel:
    """The model of `config`, seeded with `config.seed`: architecture and head, BatchNorm rate,
    in-place activations, initial weights and train scope. Memory modes that depend on the plan
    (activation checkpointing, memory layout, precision) are applied by the caller."""
    torch.manual_seed(config.seed)
    if is_spec_id(config.model):  # a found architecture, its spec in model_args
        model = create_found(
            config.model, num_classes=num_classes, dropout=config.dropout,
            model_args=config.model_args,
        )  # fmt: skip
    else:
        model = create_model(
            config.model, num_classes=num_classes, dropout=config.dropout, **config.model_args
        )
    if config.bn_momentum is not None:
        set_bn_momentum(model, config.bn_momentum)
    if not config.inplace_act:
        set_inplace_activations(model, False)
    init_info = load_init_weights(model, config.init) if config.init else None
    frozen = apply_train_scope(model, config.train_scope)
    return BuiltModel(model, frozen, init_info)
