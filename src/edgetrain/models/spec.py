"""`ModelSpec`, the base of every family's spec: a frozen dataclass that is a plain, JSON-able value.

A spec subclass is a `@dataclass(frozen=True)` whose fields are int, float, bool, str,
`Literal[...]`, `X | None`, small frozen dataclasses built from those, or tuples of them. The base
gives it the dict round trip (`to_dict` / `from_dict`), `replace(**changes)` with validation and a
canonical `id`; the subclass sets the class attributes `family`, `_title` and `_id_prefix`, adds
`validate()` and `num_features`, and its module registers a backbone builder for the family
(`registry.register_family`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self, Union, get_args, get_origin, get_type_hints

from edgetrain.errors import EdgeTrainError

FAMILY_KEY = "family"  # the key that names the family in `to_dict(family=True)`

# Bounds on the numbers of a spec, by what the families can mean: well above the largest
# published value, but finite, so that a hostile or mistyped spec (a middle_depth of 2**63, a width
# of 60000) is refused as invalid before anything iterates over it, estimates it or builds it.
MAX_WIDTH = 8192  # channels of a layer: 2048 here at most (Xception), 7392 in RegNetY-128GF
MAX_DEPTH = 64  # repeats of a block, stage or transformer layer: 9 here, 36 in ResNet-152
MAX_BLOCKS = 256  # blocks of a whole backbone after depth scaling: 50 in ResNet-152
MAX_ITEMS = 32  # entries of a list field (stem convs, stages, blocks, convs of a block): <= 8
MAX_KERNEL = 31  # kernel sizes: 3-5 here, 31 the largest in the literature (RepLKNet)
MAX_EXPAND = 16  # expansion ratios of inverted residuals: 1-6 published
MAX_STRIDE = 4  # strides of a stage: 1 and 2 here
MAX_MULTIPLIER = 16.0  # width and depth multipliers (alpha, width, depth): 0.35-3.1 published
MAX_RESOLUTION = 4096  # an input size a spec names; published: at most 600 px


class ModelSpec:
    """to_dict / from_dict / id / replace / validate for a frozen dataclass spec (see the module)."""

    family: ClassVar[str] = ""  # registry key and `family` value in tagged dicts, e.g. "xception"
    _title: ClassVar[str] = "model"  # for messages: "unknown Xception spec field(s) ..."
    _id_prefix: ClassVar[str] = "spec"  # ids read `<prefix>-<10 hex digits>`, e.g. "xc-1fcb31d5c0"

    def to_dict(self, *, family: bool = False) -> dict[str, Any]:
        """A plain, JSON-able dict (lists, not tuples) that `from_dict` turns back into this spec.

        With `family=True` it starts with a `family` key, which `registry.spec_from_dict` needs to
        pick the class. It is off by default: the untagged dict is the original format, and the
        `id` is the hash of it, so ids do not depend on the tag.
        """
        d = json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[call-overload]
        return {FAMILY_KEY: self.family, **d} if family else d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, expect_id: str | None = None) -> Self:
        """Inverse of `to_dict`: every top-level field is required (a stage dict may leave out
        fields that have defaults), a `family` key is optional but must name this family; unknown,
        missing or mistyped fields raise `EdgeTrainError`. With `expect_id`, a dict whose spec has
        another id is refused before it is validated (what a file or config calls a spec must be
        what it holds)."""
        where = f"{cls._title} spec"
        if isinstance(d, Mapping) and FAMILY_KEY in d:
            if d[FAMILY_KEY] != cls.family:
                raise EdgeTrainError(
                    f"{where}: the dict is for family {short_repr(d[FAMILY_KEY])}, "
                    f"not {cls.family!r}"
                )
            d = {k: v for k, v in d.items() if k != FAMILY_KEY}
        spec = cls(**_fields_from_dict(cls, d, where, partial=False))
        if expect_id is not None and spec.id != expect_id:
            raise EdgeTrainError(
                f"holds spec {spec.id}, not {expect_id}: its content does not match its id"
            )
        spec.validate()
        return spec

    def describe(self) -> str:
        """A compact human-readable form for logs; families with a shorter one override it."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @property
    def id(self) -> str:
        """Short canonical id: equal specs give equal ids (cache key, dedup, report label)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return f"{self._id_prefix}-" + hashlib.sha256(blob.encode()).hexdigest()[:10]

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed; values may be plain dicts/lists as in `to_dict`, or
        stage dataclasses. Unknown fields and invalid results raise `EdgeTrainError`."""
        d = self.to_dict()
        unknown = set(changes) - set(d)
        if unknown:
            raise EdgeTrainError(
                f"unknown {self._title} spec field(s) {sorted(unknown)}; known: {sorted(d)}"
            )
        for k, v in changes.items():
            d[k] = _plain(v)
        return type(self).from_dict(d)

    def validate(self) -> None:
        """Raise `EdgeTrainError` if the spec cannot be built (subclasses check their fields)."""

    @property
    def num_features(self) -> int:
        """Channels of the backbone's output, the width the classifier head sees."""
        raise NotImplementedError


def check_range(value: float, lo: float, hi: float, where: str) -> None:
    """Refuse `value` outside [lo, hi] with one line naming the field (`where`)."""
    if not lo <= value <= hi:
        raise EdgeTrainError(f"{where} must be in {lo}..{hi}, got {short_repr(value)}")


def check_kernel(kernel: int, where: str) -> None:
    """A kernel size: odd (symmetric "same" padding) and within `MAX_KERNEL`."""
    if kernel % 2 == 0 or not 1 <= kernel <= MAX_KERNEL:
        raise EdgeTrainError(
            f"{where}: the kernel must be odd and in 1..{MAX_KERNEL}, got {short_repr(kernel)}"
        )


def short_repr(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for messages about untrusted values (a 1 MB string,
    a deeply nested list); an integer beyond Python's digit limit is described, not printed."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__} too large to print"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_bn(spec: Any) -> None:
    """The BatchNorm fields `bn_eps` and `bn_momentum` (PyTorch convention for momentum)."""
    if not spec.bn_eps > 0:
        raise EdgeTrainError(f"bn_eps must be > 0, got {spec.bn_eps}")
    if not 0.0 <= spec.bn_momentum <= 1.0:
        raise EdgeTrainError(
            f"bn_momentum must be in [0, 1] (PyTorch convention: 1 - Keras momentum), "
            f"got {spec.bn_momentum}"
        )


# --- dict -> fields ------------------------------------------------------------------------------


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.asdict(v)
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    return v


def _fields_from_dict(cls: type, d: Any, where: str, *, partial: bool) -> dict[str, Any]:
    """The constructor arguments of dataclass `cls` from dict `d`; with `partial`, fields that
    have defaults may be missing."""
    if not isinstance(d, Mapping):
        raise EdgeTrainError(f"{where}: expected a dict, got {type(d).__name__}")
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    extra = set(d) - set(names)
    if extra:
        shown = short_repr(sorted(map(str, extra)), 200)
        raise EdgeTrainError(f"unknown {where} fields: {shown}; known: {names}")
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
            raise EdgeTrainError(
                f"{where} must be one of {get_args(hint)}, got {short_repr(value)}"
            )
        return value
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _coerce(value, inner, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise EdgeTrainError(f"{where} must be a list, got {short_repr(value)}")
        if len(value) > MAX_ITEMS:  # refused before its items are read
            raise EdgeTrainError(f"{where}: at most {MAX_ITEMS} entries, got {len(value)}")
        item = get_args(hint)[0]
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return hint(**_fields_from_dict(hint, value, where, partial=True))
    return _scalar(value, hint, where)


def _scalar(value: Any, hint: Any, where: str) -> Any:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:  # 3.0 is 3; an int is taken as it is (float() of a huge one overflows)
        ok = number and (isinstance(value, int) or value.is_integer())
    elif hint is float:
        ok = number and _finite_float(value)
    elif hint is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"{where}: unsupported spec field type {hint!r}")
    if not ok:
        raise EdgeTrainError(f"{where} must be {hint.__name__}, got {short_repr(value)}")
    return hint(value)


def _finite_float(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False
