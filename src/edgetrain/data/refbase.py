"""`DatasetRef`, the base class of dataset references, and its canonical string form.

Each dataset kind defines its reference class in its own module (`Caltech101` in `caltech`,
`PKUPCB` in `pku`, `Folder` in `folder`, `SyntheticPCB` in `synthetic`); `registry` lists them and
`refs` parses strings into them. This module sits below all of those and imports none of them.
The grammar of reference strings is described in `edgetrain.data.refs`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from edgetrain.errors import EdgeTrainError

# Characters left readable in a canonical option value: the usual regex metacharacters.
_SAFE_VALUE = "^$()[]{}\\|+*.?:/,-_~!;@'"


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
        if not self.has_path:
            return self.kind + (":" + ",".join(f"{k}={v}" for k, v in opts) if opts else "")
        head = f"{self.kind}:{_path_text(self)}"
        if opts:
            head += "?" + "&".join(f"{k}={quote(v, safe=_SAFE_VALUE)}" for k, v in opts)
        return head

    def __str__(self) -> str:
        return self.to_string()


def _path_text(ref: Any) -> str:
    path = str(ref.path)
    if "?" in path:
        raise EdgeTrainError(
            f"the path {path!r} contains '?', which a reference string cannot hold; "
            "rename the folder or use the API object instead of a string"
        )
    return path


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def check_path(ref: Any) -> None:
    """Normalise a reference's `path` to a `Path` in place; an empty path is an error."""
    # Frozen dataclass: object.__setattr__ is the documented way to set a field in __post_init__.
    if not isinstance(ref.path, Path):
        if not str(ref.path):
            raise EdgeTrainError(f"{ref.kind} needs a path to the dataset's folder")
        object.__setattr__(ref, "path", Path(ref.path))


def check_regex(pattern: str, kind: str) -> None:
    """Raise `EdgeTrainError` unless `pattern` compiles as a regular expression."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise EdgeTrainError(
            f"{kind}: group {pattern!r} is not a valid regular expression: {exc}"
        ) from None
