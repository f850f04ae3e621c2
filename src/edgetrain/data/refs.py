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
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, unquote

from edgetrain.errors import EdgeTrainError

if TYPE_CHECKING:
    from edgetrain.data.splits import Splits

# Characters left readable in a canonical option value: the usual regex metacharacters.
_SAFE_VALUE = "^$()[]{}\\|+*.?:/,-_~!;@'"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class DatasetRef:
    """Base class of dataset references; subclasses are frozen dataclasses, one per `kind`."""

    kind: ClassVar[str] = ""
    has_path: ClassVar[bool] = True
    augment_default: ClassVar[bool] = False  # the paper augments Caltech-101 and not the PCB sets

    def to_string(self) -> str:
        """The canonical reference string; `parse_ref(ref.to_string()) == ref`."""
        opts = []
        for f in dataclasses.fields(self):
            if f.name == "path":
                continue
            value = getattr(self, f.name)
            if value == f.default:
                continue
            opts.append((f.name, _format_value(value)))
        head = self.kind
        if self.has_path:
            path = str(self.path)  # type: ignore[attr-defined]
            if "?" in path:
                raise EdgeTrainError(
                    f"the path {path!r} contains '?', which a reference string cannot hold; "
                    "rename the folder or use the API object instead of a string"
                )
            head = f"{head}:{path}"
            if opts:
                head += "?" + "&".join(f"{k}={quote(v, safe=_SAFE_VALUE)}" for k, v in opts)
        elif opts:
            head += ":" + ",".join(f"{k}={v}" for k, v in opts)
        return head

    def __str__(self) -> str:
        return self.to_string()

    def _resolve(self, seed: int) -> Splits:  # implemented by each kind's module
        raise NotImplementedError


def _check_path(ref: Any) -> None:
    # Frozen dataclass: normalise a str path to Path in place.
    if not isinstance(ref.path, Path):
        if not str(ref.path):
            raise EdgeTrainError(f"{ref.kind} needs a path to the dataset's folder")
        object.__setattr__(ref, "path", Path(ref.path))


@dataclass(frozen=True)
class Caltech101(DatasetRef):
    """Caltech-101 in its `101_ObjectCategories` layout, split per class 80/10/10 (floors)."""

    path: Path
    background: bool = False  # True: keep BACKGROUND_Google as a class (the paper drops it)

    kind: ClassVar[str] = "caltech101"
    augment_default: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_path(self)

    def _resolve(self, seed: int) -> Splits:
        from edgetrain.data.caltech import resolve_caltech

        return resolve_caltech(self, seed=seed)


@dataclass(frozen=True)
class PKUPCB(DatasetRef):
    """PKU-Market-PCB boards with VOC boxes: one square crop with context per annotated defect."""

    path: Path
    context: float = 2.0  # window side = context x the box's longer side ...
    min_size: int = 128  # ... but at least this many pixels (then clipped to the board)
    group: str = r"^(\d\d)"  # board template: the two leading digits of the file name

    kind: ClassVar[str] = "pku-pcb"

    def __post_init__(self) -> None:
        _check_path(self)
        if not self.context >= 1.0:
            raise EdgeTrainError(f"pku-pcb: context must be >= 1 (got {self.context})")
        if self.min_size < 1:
            raise EdgeTrainError(f"pku-pcb: min_size must be >= 1 (got {self.min_size})")
        _check_regex(self.group, "pku-pcb")

    def _resolve(self, seed: int) -> Splits:
        from edgetrain.data.pku import resolve_pku

        return resolve_pku(self, seed=seed)


@dataclass(frozen=True)
class Folder(DatasetRef):
    """Class-per-folder images: `PATH/<class>/*` (split here) or `PATH/{train,val,test}/<class>/*`."""

    path: Path
    group: str | None = None  # regex on the file name; files of one group stay in one split

    kind: ClassVar[str] = "folder"

    def __post_init__(self) -> None:
        _check_path(self)
        if self.group is not None:
            _check_regex(self.group, "folder")

    def _resolve(self, seed: int) -> Splits:
        from edgetrain.data.folder import resolve_folder

        return resolve_folder(self, seed=seed)


@dataclass(frozen=True)
class SyntheticPCB(DatasetRef):
    """Procedural PCB patches with one of the six PKU defect types; no files needed."""

    per_class: int = 100  # images per class, before the 80/10/10 split (6 x 100 = 600 in all)
    size: int | None = None  # render size in px; None: render at the resolution asked for
    seed: int = 0  # the generator's seed (the split's shuffle uses resolve's seed)

    kind: ClassVar[str] = "synthetic-pcb"
    has_path: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.per_class < 2:
            raise EdgeTrainError(
                f"synthetic-pcb: per_class must be >= 2 (one train, one test image), got {self.per_class}"
            )
        if self.size is not None and not 8 <= self.size <= 4096:
            raise EdgeTrainError(f"synthetic-pcb: size must be in 8..4096 px, got {self.size}")

    def _resolve(self, seed: int) -> Splits:
        from edgetrain.data.synthetic import resolve_synthetic

        return resolve_synthetic(self, seed=seed)


KINDS: dict[str, type[DatasetRef]] = {
    cls.kind: cls for cls in (Caltech101, PKUPCB, Folder, SyntheticPCB)
}


def _check_regex(pattern: str, kind: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise EdgeTrainError(
            f"{kind}: group {pattern!r} is not a valid regular expression: {exc}"
        ) from None


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


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
        raise EdgeTrainError("empty dataset reference; " + _KINDS_HINT)
    text = text.strip()
    m = re.match(r"^([A-Za-z][\w-]*)", text)
    kind = m.group(1).lower() if m else ""
    cls = KINDS.get(kind)
    if cls is None:
        raise EdgeTrainError(f"unknown dataset reference {text!r}; " + _KINDS_HINT)
    rest = text[len(kind) :]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "path"}
    kwargs: dict[str, Any] = {}
    if cls.has_path:
        if not rest.startswith(":") or len(rest) < 2 or rest[1] == "?":
            raise EdgeTrainError(f"{kind} needs a path: {kind}:PATH (got {text!r})")
        path, _, query = rest[1:].partition("?")
        kwargs["path"] = Path(path).expanduser()
        pairs = query.split("&") if query else []
    else:
        if rest.startswith(":"):  # synthetic-pcb:per_class=100,size=64
            pairs = re.split(r"[,&]", rest[1:]) if rest[1:] else []
        elif rest.startswith("?"):
            pairs = rest[1:].split("&") if rest[1:] else []
        elif rest:
            raise EdgeTrainError(f"cannot parse {text!r}: expected {kind}[:key=value,...]")
        else:
            pairs = []
    for pair in pairs:
        if not pair:
            continue
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq:
            raise EdgeTrainError(f"{kind}: option {pair!r} needs a value (key=value)")
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise EdgeTrainError(f"{kind}: unknown option {key!r}; known options: {known}")
        kwargs[key] = _convert(kind, fields[key], unquote(value))
    return cls(**kwargs)


_KINDS_HINT = (
    "expected one of caltech101:PATH, pku-pcb:PATH, folder:PATH[?group=REGEX], "
    "synthetic-pcb[:per_class=N,size=PX,seed=S]"
)


def as_ref(ref: str | DatasetRef) -> DatasetRef:
    """`ref` itself if it is a `DatasetRef`, else the parsed string."""
    if isinstance(ref, DatasetRef):
        return ref
    return parse_ref(ref)


def resolve(ref: str | DatasetRef, *, seed: int = 0) -> Splits:
    """Resolve a dataset reference into train/val/test records and class names.

    Lists and probes the files (headers only, no decoding), applies the kind's split rule
    deterministically for `seed`, and reports every file it leaves out in `Splits.skipped`.
    Problems that make training impossible (no images, a single class, an empty train or test
    split, a class without training images) raise `EdgeTrainError` here, before anything runs.
    """
    return as_ref(ref)._resolve(int(seed))


def default_augment(ref: str | DatasetRef) -> bool:
    """Whether the paper augments this kind of data: on for Caltech-101, off for the PCB sets."""
    return as_ref(ref).augment_default
