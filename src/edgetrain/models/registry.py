"""Model registry: names -> factories, families -> backbone builders.

- `create_model(name, ...)` / `list_models(pattern)`: the CLI, the benchmarks and the tests iterate
  over names and never import model classes. A name is registered as a spec value
  (`register_spec`) or, for anything else, as a factory function (`@register_model`).
- `build_model(spec, ...)` / `spec_from_dict(d)`: build any spec value of any family directly (what
  an architecture search samples); each family module registers its spec class and backbone builder
  with `@register_family(SpecClass)`.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from edgetrain.errors import EdgeTrainError
from edgetrain.models.estimate import check_trainable, model_size, on_meta
from edgetrain.models.layers import Classifier
from edgetrain.models.spec import FAMILY_KEY, ModelSpec, short_repr

ModelFactory = Callable[..., nn.Module]
BackboneBuilder = Callable[[Any], nn.Sequential]  # a spec -> (B, 3, H, W) -> (B, C, h, w)
_B = TypeVar("_B", bound=BackboneBuilder)

_REGISTRY: dict[str, ModelFactory] = {}
_SPECS: dict[str, ModelSpec] = {}  # the names registered as spec values
_FAMILIES: dict[str, tuple[type[ModelSpec], BackboneBuilder]] = {}


# --- names ---------------------------------------------------------------------------------------


def register_model(fn: ModelFactory) -> ModelFactory:
    """Register a factory `fn(*, num_classes, dropout, **overrides) -> nn.Module` under its name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = fn
    return fn


def register_spec(name: str, spec: ModelSpec, doc: str) -> ModelFactory:
    """Register the spec value `spec` as model `name`: `create_model(name, **overrides)` builds
    `spec.replace(**overrides)` with `build_model`. `doc` becomes the factory's docstring."""

    def factory(*, num_classes: int, dropout: float = 0.2, **overrides: Any) -> Classifier:
        value = spec.replace(**overrides) if overrides else spec
        return build_model(value, num_classes=num_classes, dropout=dropout)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    register_model(factory)
    _SPECS[name] = spec
    return factory


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models matching a shell-style `pattern`, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def _unknown(name: str) -> EdgeTrainError:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return EdgeTrainError(
        f"unknown model {short_repr(name)}.{hint} Known models: {', '.join(list_models())}."
    )


def get_model_factory(name: str) -> ModelFactory:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise _unknown(name) from None


def get_spec(name: str) -> ModelSpec:
    """The spec value registered as model `name` (the starting point for overrides or a search)."""
    get_model_factory(name)  # unknown name -> error listing close names
    try:
        return _SPECS[name]
    except KeyError:
        raise EdgeTrainError(f"model {name!r} is a factory, not a spec value") from None


def _check_head(num_classes: Any, dropout: Any) -> None:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise EdgeTrainError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise EdgeTrainError(f"dropout must be in [0, 1), got {dropout!r}")


def create_model(
    name: str, *, num_classes: int, dropout: float = 0.2, **spec_overrides: Any
) -> nn.Module:
    """Build the registered model `name` with the paper's head (GAP -> dropout -> linear).

    `spec_overrides` change fields of the model's spec (for the Xception family, any field of
    `XceptionSpec`); an unknown name or field raises `EdgeTrainError`.
    """
    _check_head(num_classes, dropout)
    return get_model_factory(name)(num_classes=num_classes, dropout=dropout, **spec_overrides)


# --- families ------------------------------------------------------------------------------------


def register_family(spec_cls: type[ModelSpec]) -> Callable[[_B], _B]:
    """Decorator: the decorated `build_backbone(spec) -> nn.Sequential` builds the specs of
    `spec_cls`; `build_model` and `spec_from_dict` find it by `spec_cls.family`."""
    if not spec_cls.family:
        raise ValueError(f"{spec_cls.__name__} sets no `family`")

    def register(build_backbone: _B) -> _B:
        if spec_cls.family in _FAMILIES:
            raise ValueError(f"model family {spec_cls.family!r} is registered twice")
        _FAMILIES[spec_cls.family] = (spec_cls, build_backbone)
        return build_backbone

    return register


def _family(family: Any) -> tuple[type[ModelSpec], BackboneBuilder]:
    try:
        return _FAMILIES[family]
    except (KeyError, TypeError):
        raise EdgeTrainError(
            f"unknown model family {short_repr(family)}; known: {', '.join(sorted(_FAMILIES))}"
        ) from None


def build_model(spec: ModelSpec, *, num_classes: int, dropout: float = 0.2) -> Classifier:
    """Build a spec value of any registered family with the paper's head (GAP -> dropout ->
    linear): the family's backbone builder, picked by `spec.family`, then the head.

    `create_model(name, **overrides)` is `build_model(get_spec(name).replace(**overrides), ...)`;
    an invalid spec, head size or dropout raises `EdgeTrainError`, and so does a model whose
    weights and gradients could not fit this machine's memory, before any of it is allocated
    (counted on a meta-device build, `estimate.py`).
    """
    make = _maker(spec, num_classes, dropout)
    check_trainable(spec.id, model_size(on_meta(make)))
    return make()


def meta_model(spec: ModelSpec, *, num_classes: int, dropout: float = 0.2) -> Classifier:
    """`build_model` on PyTorch's meta device: every module and shape, no storage, so any valid
    spec can be sized (`estimate.model_size`, `estimate.saved_for_backward`) before it is built."""
    return on_meta(_maker(spec, num_classes, dropout))


def _maker(spec: ModelSpec, num_classes: int, dropout: float) -> Callable[[], Classifier]:
    """The checked spec's build, as a function to call on the device that should hold it."""
    _check_head(num_classes, dropout)
    spec_cls, build_backbone = _family(getattr(spec, "family", None))
    if not isinstance(spec, spec_cls):
        raise EdgeTrainError(f"expected a {spec_cls.__name__}, got {type(spec).__name__}")
    spec.validate()  # bounded numbers before anything is sized or built

    def make() -> Classifier:
        return Classifier(build_backbone(spec), spec.num_features, num_classes, dropout, spec)

    return make


def spec_of_model(name: str, overrides: Mapping[str, Any]) -> ModelSpec | None:
    """The spec `create_model(name, **overrides)` builds, or None for a model registered as a
    factory (whose architecture is known only once it is built)."""
    get_model_factory(name)  # unknown name -> error listing close names
    spec = _SPECS.get(name)
    return spec.replace(**overrides) if spec is not None and overrides else spec


def spec_from_dict(d: Mapping[str, Any], *, expect_id: str | None = None) -> ModelSpec:
    """The spec of any family from `spec.to_dict(family=True)`: the `family` key picks the class,
    whose `from_dict` reads the rest (and, with `expect_id`, refuses a spec of another id before
    validating it). A missing or unknown family raises `EdgeTrainError` (an untagged dict, the
    older format, is read by its class: `XceptionSpec.from_dict(d)`)."""
    if not isinstance(d, Mapping) or FAMILY_KEY not in d:
        raise EdgeTrainError(
            f"a spec dict needs a {FAMILY_KEY!r} key (one of {', '.join(sorted(_FAMILIES))}); "
            "write it with spec.to_dict(family=True)"
        )
    spec_cls, _ = _family(d[FAMILY_KEY])
    return spec_cls.from_dict(d, expect_id=expect_id)
