"""MobileNetV2 (Sandler et al. 2018) as Keras applications builds it, as data: one spec, one builder.

`mobilenet_v2` is `keras.applications.MobileNetV2(alpha=1.0)` with the paper's head: stem
Conv3x3/32 stride 2 (no bias) -> BN -> ReLU6, then inverted-residual stages (t, c, n, s) =
(1,16,1,1), (6,24,2,2), (6,32,3,2), (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1), then
Conv1x1/1280 (no bias) -> BN -> ReLU6. With a 101-class head: 2,353,253 trainable parameters and
34,112 BatchNorm moving statistics, Keras' exact counts (Keras' `count_params()` 2,387,365 is
their sum).

Keras details carried over: BN eps 1e-3 and momentum 0.999 (PyTorch momentum 0.001); channel counts
rounded with Keras' `_make_divisible(v, 8)`; the expansion width is `t * in_channels`, unrounded;
the first block (t = 1) has no expansion conv; residual iff stride 1 and in == out.

Padding: every conv here pads kernel // 2 on each side. Keras pads stride-2 convs asymmetrically
(its MobileNetV2 uses ZeroPadding2D(correct_pad) + "valid", i.e. TensorFlow "same": on an even input
0 rows/cols on top/left and 1 on bottom/right), so window i is centred on input pixel 2i + 1 there
and on 2i here. Output sizes are identical at every input size for these odd kernels; only the
sampling grid shifts by one pixel, which matters when porting Keras weights, not for training.

This module also holds `SpecMixin`, the serialisation shared by the baseline specs
(`efficientnet_v2`, `mobilevit`): to_dict / from_dict / id / replace for a frozen dataclass whose
fields are scalars or tuples of small stage dataclasses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self, Union, get_args, get_origin, get_type_hints

import torch
from torch import nn

from edgetrain.errors import EdgeTrainError
from edgetrain.models.layers import Classifier, ConvBNAct
from edgetrain.models.registry import register_model

# --- shared spec serialisation -------------------------------------------------------------------


class SpecMixin:
    """to_dict / from_dict / id / replace for a frozen dataclass spec.

    Fields may be int, float, bool, str, `Literal[...]`, `X | None`, or tuples of small frozen
    dataclasses built from those. A subclass sets `_family` (error messages) and `_id_prefix`, and
    overrides `validate()`.
    """

    _family = "model"
    _id_prefix = "spec"

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict (lists, not tuples) that `from_dict` turns back into this spec."""
        return json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """Inverse of `to_dict`: every top-level field is required (a stage dict may leave out
        fields that have defaults); unknown, missing or mistyped fields raise `EdgeTrainError`."""
        spec = cls(**_fields_from_dict(cls, d, f"{cls._family} spec", partial=False))
        spec.validate()
        return spec

    @property
    def id(self) -> str:
        """Short canonical id: equal specs give equal ids (cache key, dedup, report label)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return f"{self._id_prefix}-" + hashlib.sha256(blob.encode()).hexdigest()[:10]

    def replace(self, **overrides: Any) -> Self:
        """A copy with some fields changed; values may be plain dicts/lists as in `to_dict`, or
        stage dataclasses. Unknown fields and invalid results raise `EdgeTrainError`."""
        d = self.to_dict()
        unknown = set(overrides) - set(d)
        if unknown:
            raise EdgeTrainError(
                f"unknown {self._family} spec field(s) {sorted(unknown)}; known: {sorted(d)}"
            )
        for k, v in overrides.items():
            d[k] = _plain(v)
        return type(self).from_dict(d)

    def validate(self) -> None:
        """Raise `EdgeTrainError` if the spec cannot be built (subclasses check their fields)."""


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.asdict(v)
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    return v


def _fields_from_dict(cls: type, d: Any, where: str, *, partial: bool) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise EdgeTrainError(f"{where}: expected a dict, got {type(d).__name__}")
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    extra = set(d) - set(names)
    if extra:
        raise EdgeTrainError(f"unknown {where} fields: {sorted(extra)}; known: {names}")
    hints = get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in fields:
        if f.name in d:
            out[f.name] = _coerce(d[f.name], hints[f.name], f"{where}.{f.name}")
        elif not partial or (
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ):
            raise EdgeTrainError(f"{where}: missing field {f.name!r}")
    return out


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` (from JSON or a caller) as the field type `hint`; ints become floats for float
    fields so that `1` and `1.0` give the same spec id."""
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            raise EdgeTrainError(f"{where} must be one of {get_args(hint)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _coerce(value, inner, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise EdgeTrainError(f"{where} must be a list, got {value!r}")
        item = get_args(hint)[0]
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return hint(**_fields_from_dict(hint, value, where, partial=True))
    ok = False
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and float(value).is_integer()
        )
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    elif hint is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"{where}: unsupported spec field type {hint!r}")
    if not ok:
        raise EdgeTrainError(f"{where} must be {hint.__name__}, got {value!r}")
    return hint(value)


def check_bn(spec: Any) -> None:
    """The BatchNorm fields every baseline spec has (PyTorch convention for momentum)."""
    if not spec.bn_eps > 0:
        raise EdgeTrainError(f"bn_eps must be > 0, got {spec.bn_eps}")
    if not 0.0 <= spec.bn_momentum <= 1.0:
        raise EdgeTrainError(
            f"bn_momentum must be in [0, 1] (PyTorch convention: 1 - Keras momentum), "
            f"got {spec.bn_momentum}"
        )


# --- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvertedResidualStage:
    """`repeats` inverted-residual blocks with the same output width (one row of the paper's
    table 2: t, c, n, s). Only the first block has `stride`."""

    expand: int  # t: expansion ratio; 1 drops the expansion conv
    channels: int  # c: output width before the width multiplier
    repeats: int  # n
    stride: int  # s
    kernel: int = 3  # depthwise kernel


MOBILENET_V2_STAGES = (
    InvertedResidualStage(1, 16, 1, 1),
    InvertedResidualStage(6, 24, 2, 2),
    InvertedResidualStage(6, 32, 3, 2),
    InvertedResidualStage(6, 64, 4, 2),
    InvertedResidualStage(6, 96, 3, 1),
    InvertedResidualStage(6, 160, 3, 2),
    InvertedResidualStage(6, 320, 1, 1),
)


@dataclass(frozen=True)
class MobileNetV2Spec(SpecMixin):
    """A whole MobileNetV2 backbone; the defaults are Keras' MobileNetV2(alpha=1.0)."""

    _family = "MobileNetV2"
    _id_prefix = "mnv2"

    alpha: float = 1.0  # width multiplier on the stem and the stages (and on `head` if > 1)
    stem: int = 32  # Conv3x3 stride 2 width, before alpha
    stages: tuple[InvertedResidualStage, ...] = MOBILENET_V2_STAGES
    head: int = 1280  # final Conv1x1 width; Keras scales it only for alpha > 1
    divisor: int = 8  # channel rounding (Keras `_make_divisible`)
    bn_eps: float = 1e-3
    bn_momentum: float = 0.001  # PyTorch convention: Keras momentum 0.999

    def validate(self) -> None:
        if not self.alpha > 0:
            raise EdgeTrainError(f"alpha must be > 0, got {self.alpha}")
        if self.stem < 1 or self.head < 1 or self.divisor < 1:
            raise EdgeTrainError("stem, head and divisor must be >= 1")
        if not self.stages:
            raise EdgeTrainError("a MobileNetV2 spec needs at least one stage")
        for i, s in enumerate(self.stages):
            if min(s.expand, s.channels, s.repeats, s.stride) < 1:
                raise EdgeTrainError(f"stage {i}: expand, channels, repeats, stride must be >= 1")
            if s.kernel < 1 or s.kernel % 2 == 0:
                raise EdgeTrainError(f"stage {i}: the kernel must be odd and >= 1, got {s.kernel}")
        check_bn(self)

    def width(self, channels: int) -> int:
        """A stage width after the multiplier, as Keras: `_make_divisible(int(c * alpha), 8)`."""
        return make_divisible(int(channels * self.alpha), self.divisor)

    @property
    def stem_width(self) -> int:
        return make_divisible(self.stem * self.alpha, self.divisor)

    @property
    def num_features(self) -> int:
        return make_divisible(self.head * self.alpha, self.divisor) if self.alpha > 1 else self.head


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """Keras/TF-slim `_make_divisible`: round `v` to the nearest multiple of `divisor`, at least
    `min_value` (default `divisor`), and never more than 10 % below `v`."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


# --- the builder ---------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """[expand 1x1 -> BN -> act] -> depthwise kxk (stride) -> BN -> act -> project 1x1 -> BN
    (linear bottleneck), plus the input when stride is 1 and in == out.

    Shared with MobileViT's MV2 blocks, which differ only in activation, BN constants and how the
    hidden width is rounded (`hidden`).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        expand: int,
        stride: int = 1,
        kernel: int = 3,
        hidden: int | None = None,
        act: type[nn.Module] = nn.ReLU6,
        eps: float = 1e-3,
        momentum: float = 0.001,
    ) -> None:
        super().__init__()
        hidden = cin * expand if hidden is None else hidden
        bn_kw = {"eps": eps, "momentum": momentum}
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(cin, hidden, 1, act=act, **bn_kw))
        layers += [
            ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act, **bn_kw),
            ConvBNAct(hidden, cout, 1, act=None, **bn_kw),
        ]
        # The first layer is a conv, so the in-place activations never touch the block input
        # (the residual), and a recomputed block (activation checkpointing) sees the same input.
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


def build_mobilenet_v2_backbone(spec: MobileNetV2Spec) -> nn.Sequential:
    """Turn a valid `MobileNetV2Spec` into an nn.Sequential with one child per block (`stem`,
    `block0` ... `blockN` as Keras numbers them, `top`): (B, 3, H, W) -> (B, C, H/32, W/32)."""
    spec.validate()
    bn_kw = {"eps": spec.bn_eps, "momentum": spec.bn_momentum}
    cin = spec.stem_width
    modules: OrderedDict[str, nn.Module] = OrderedDict(
        stem=ConvBNAct(3, cin, 3, 2, act=nn.ReLU6, **bn_kw)
    )
    k = 0
    for s in spec.stages:
        cout = spec.width(s.channels)
        for j in range(s.repeats):
            modules[f"block{k}"] = InvertedResidual(
                cin,
                cout,
                expand=s.expand,
                stride=s.stride if j == 0 else 1,
                kernel=s.kernel,
                act=nn.ReLU6,
                **bn_kw,
            )
            cin = cout
            k += 1
    modules["top"] = ConvBNAct(cin, spec.num_features, 1, act=nn.ReLU6, **bn_kw)
    return nn.Sequential(modules)


def build_mobilenet_v2(
    spec: MobileNetV2Spec, *, num_classes: int, dropout: float = 0.2
) -> Classifier:
    """`build_mobilenet_v2_backbone(spec)` with the paper's head (GAP -> dropout -> linear)."""
    backbone = build_mobilenet_v2_backbone(spec)
    return Classifier(backbone, spec.num_features, num_classes, dropout, spec)


# --- the registered value ------------------------------------------------------------------------

MOBILENET_V2 = MobileNetV2Spec()


@register_model
def mobilenet_v2(*, num_classes: int, dropout: float = 0.2, **overrides: Any) -> Classifier:
    """MobileNetV2 (alpha 1.0) as Keras applications defines it; `overrides` change fields of
    `MobileNetV2Spec` (e.g. `alpha=0.5`), an unknown field raises `EdgeTrainError`."""
    spec = MOBILENET_V2.replace(**overrides) if overrides else MOBILENET_V2
    return build_mobilenet_v2(spec, num_classes=num_classes, dropout=dropout)
