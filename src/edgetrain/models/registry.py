"""Model registry: `@register_model`, `create_model(name, ...)`, `list_models(pattern)`.

The CLI, the benchmarks and the tests iterate over names and never import model classes.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

from edgetrain.errors import EdgeTrainError

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(fn: ModelFactory) -> ModelFactory:
    """Register a factory `fn(*, num_classes, dropout, **overrides) -> nn.Module` under its name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models matching a shell-style `pattern`, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def _unknown(name: str) -> EdgeTrainError:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return EdgeTrainError(
        f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}."
    )


def get_model_factory(name: str) -> ModelFactory:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise _unknown(name) from None


def create_model(
    name: str, *, num_classes: int, dropout: float = 0.2, **spec_overrides: Any
) -> nn.Module:
    """Build the registered model `name` with the paper's head (GAP -> dropout -> linear).

    `spec_overrides` change fields of the model's spec (for the Xception family, any field of
    `XceptionSpec`); an unknown name or field raises `EdgeTrainError`.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise EdgeTrainError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise EdgeTrainError(f"dropout must be in [0, 1), got {dropout!r}")
    return get_model_factory(name)(num_classes=num_classes, dropout=dropout, **spec_overrides)
