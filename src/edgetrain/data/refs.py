"""Dataset references: what data to use, as a string (CLI, configs) or a dataclass (API).

Grammar of a reference string::

    KIND[:PATH][?KEY=VALUE[&KEY=VALUE]...]

    caltech101:PATH                 101_ObjectCategories layout (PATH or PATH/101_ObjectCategories)
    caltech101:PATH?background=true   keep BACKGROUND_Google as a 102nd class
    pku-pcb:PATH                    PKU-Market-PCB: images/<Class>/*.jpg + Annotations/<Class>/*.xml
    pku-pcb:PATH?context=3&min_size=96   window = max(context x box's longer side, min_size) px
    folder:PATH                     PATH/<class>/* (split here) or PATH/{train,val,test}/<class>/*
    folder:PATH?group=^(\\d+)_        keep files whose names share the group in one split
    synthetic-pcb                   the procedural PCB-defect generator, no files
    synthetic-pcb:per_class=100,size=64,seed=1   (also synthetic-pcb?per_class=100&size=64)

Values are percent-decoded (write `&` inside a value as `%26`, `%` as `%25`); the path runs from
the first `:` to the first `?` and is taken literally (relative paths are relative to the current
directory, `~` is expanded). A `group` is a regular expression searched in the file name (not the
path); its first capture group, or the whole match without one, names the group.

`str(ref)` is the canonical form: kind, path, then the options that differ from their defaults in
field order. It parses back to an equal ref, so it is what configs and `record.json` store.

Each kind's reference class lives in its own module and is re-exported here; `registry` holds
the table this module looks kinds up in (imports run one way: refs -> registry -> kind modules).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from edgetrain.data.caltech import Caltech101
from edgetrain.data.folder import Folder
from edgetrain.data.folds import check_folds, fold_splits
from edgetrain.data.pku import PKUPCB
from edgetrain.data.refbase import DatasetRef
from edgetrain.data.registry import KINDS, kind_of, usage
from edgetrain.data.splits import Splits
from edgetrain.data.synthetic import SyntheticPCB
from edgetrain.errors import EdgeTrainError

__all__ = [
    "PKUPCB",
    "Caltech101",
    "DatasetRef",
    "Folder",
    "SyntheticPCB",
    "as_ref",
    "default_augment",
    "parse_ref",
    "resolve",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(kind: str, field: dataclasses.Field, text: str) -> Any:
    """Turn an option's text into the field's type (the annotation is a string: postponed)."""
    annotation = str(field.type)
    try:
        if text in ("none", "None") and "None" in annotation:
            return None
        if annotation.startswith("bool"):
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(text)
        if annotation.startswith("int"):
            return int(text)
        if annotation.startswith("float"):
            return float(text)
        return text
    except ValueError:
        raise EdgeTrainError(
            f"{kind}: option {field.name}={text!r} is not a valid {annotation.split(' ')[0]}"
        ) from None


def parse_ref(text: str) -> DatasetRef:
    """Parse a reference string (grammar in the module docstring) into a `DatasetRef`.

    Raises `EdgeTrainError` naming the problem (unknown kind, missing path, unknown option) and
    listing what is accepted.
    """
    if not isinstance(text, str) or not text.strip():
        raise EdgeTrainError("empty dataset reference; " + usage())
    text = text.strip()
    m = re.match(r"^([A-Za-z][\w-]*)", text)
    kind = m.group(1).lower() if m else ""
    if kind not in KINDS:
        raise EdgeTrainError(f"unknown dataset reference {text!r}; " + usage())
    cls = KINDS[kind].ref_type
    rest = text[len(kind) :]
    kwargs: dict[str, Any] = {}
    if cls.has_path:
        kwargs["path"], pairs = _split_path(kind, text, rest)
    else:
        pairs = _split_options(kind, text, rest)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "path"}
    for pair in pairs:
        if pair:
            key, value = _option(kind, pair, fields)
            kwargs[key] = value
    return cls(**kwargs)


def _split_path(kind: str, text: str, rest: str) -> tuple[Path, list[str]]:
    """`:PATH?k=v&k=v` -> (PATH, ["k=v", ...]); the path is taken literally up to the first `?`."""
    if not rest.startswith(":") or len(rest) < 2 or rest[1] == "?":
        raise EdgeTrainError(f"{kind} needs a path: {kind}:PATH (got {text!r})")
    path, _, query = rest[1:].partition("?")
    return Path(path).expanduser(), query.split("&") if query else []


def _split_options(kind: str, text: str, rest: str) -> list[str]:
    """The options of a kind without a path: `:k=v,k=v` or `?k=v&k=v`."""
    if rest.startswith(":"):  # synthetic-pcb:per_class=100,size=64
        return re.split(r"[,&]", rest[1:]) if rest[1:] else []
    if rest.startswith("?"):
        return rest[1:].split("&") if rest[1:] else []
    if rest:
        raise EdgeTrainError(f"cannot parse {text!r}: expected {kind}[:key=value,...]")
    return []


def _option(kind: str, pair: str, fields: dict[str, dataclasses.Field]) -> tuple[str, Any]:
    """`key=value` -> (key, value converted to the field's type), percent-decoded."""
    key, eq, value = pair.partition("=")
    key = key.strip()
    if not eq:
        raise EdgeTrainError(f"{kind}: option {pair!r} needs a value (key=value)")
    if key not in fields:
        known = ", ".join(fields) or "none"
        raise EdgeTrainError(f"{kind}: unknown option {key!r}; known options: {known}")
    return key, _convert(kind, fields[key], unquote(value))


def as_ref(ref: str | DatasetRef) -> DatasetRef:
    """`ref` itself if it is a `DatasetRef`, else the parsed string."""
    if isinstance(ref, DatasetRef):
        return ref
    return parse_ref(ref)


def resolve(ref: str | DatasetRef, *, seed: int = 0, folds: int = 0, fold: int = 0) -> Splits:
    """Resolve a dataset reference into train/val/test records and class names.

    Lists and probes the files (headers only, no decoding), applies the kind's split rule
    deterministically for `seed`, and reports every file it leaves out in `Splits.skipped`.
    Problems that make training impossible (no images, a single class, an empty train or test
    split, a class without training images) raise `EdgeTrainError` here, before anything runs.
    `folds` K >= 2 re-cuts the images into K folds with fold `fold` as test (data/folds.py).
    """
    ref = as_ref(ref)
    if folds:
        check_folds(folds, fold)
    splits = kind_of(ref).resolve(ref, seed=int(seed))
    return fold_splits(splits, folds=folds, fold=fold, seed=int(seed)) if folds else splits


def default_augment(ref: str | DatasetRef) -> bool:
    """Whether the paper augments this kind of data: on for Caltech-101, off for the PCB sets."""
    return as_ref(ref).augment_default
