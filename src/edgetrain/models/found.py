"""Models that are not registered names: a spec id (`xc-1fcb31d5c0`, what a search finds) or a
spec JSON file, usable wherever a model name is.

A run config names such a model by its id and carries the whole spec in `model_args` (with its
`family` key), so the config alone rebuilds it on any machine; `model_args_of` fills that in
from the spec store or a file. `create` checks that the spec really has the id it is called by.

The spec store is a folder of `<id>.json` files: `edgetrain search` saves every architecture it
trains there. Its place is `$EDGETRAIN_SPECS` (several folders separated by ':' are searched in
order; the first is written) or `~/.cache/edgetrain/specs`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from edgetrain.errors import EdgeTrainError
from edgetrain.fileio import atomic_write_text, parse_json, read_text_bounded
from edgetrain.models.registry import build_model, spec_from_dict, spec_of_model
from edgetrain.models.spec import FAMILY_KEY, ModelSpec

_ID = re.compile(r"^[a-z0-9]{1,8}-[0-9a-f]{10}$")
MAX_SPEC_FILE_BYTES = 1 << 20  # a spec is a few kB; a larger file is not one


def is_spec_id(name: str) -> bool:
    return bool(_ID.match(name))


def store_dirs() -> list[Path]:
    env = os.environ.get("EDGETRAIN_SPECS")
    if env:
        return [Path(p).expanduser() for p in env.split(":") if p]
    return [Path("~/.cache/edgetrain/specs").expanduser()]


def save_spec(spec: ModelSpec, folder: Path | None = None) -> Path:
    """Write `spec` to the spec store (or `folder`) as `<id>.json`; returns the file."""
    folder = folder or store_dirs()[0]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.id}.json"
    atomic_write_text(path, json.dumps(spec.to_dict(family=True), indent=1) + "\n")
    return path


def read_spec_file(path: Path, *, expect_id: str | None = None) -> ModelSpec:
    """A spec from a JSON file written by `save_spec` (or by hand); bad files are refused with one
    line naming the file: anything but a regular file, more than `MAX_SPEC_FILE_BYTES`, JSON
    beyond the parser's limits, an invalid spec, or (with `expect_id`) one of another id."""
    text = read_text_bounded(path, MAX_SPEC_FILE_BYTES, "model spec")
    d = parse_json(text, str(path))
    try:
        return spec_from_dict(d, expect_id=expect_id)
    except EdgeTrainError as exc:
        raise EdgeTrainError(f"{path}: {exc}") from None


def find_spec(spec_id: str) -> ModelSpec:
    """The spec of `spec_id` from the spec store; a file whose content has another id is refused
    before it is validated or built."""
    for folder in store_dirs():
        path = folder / f"{spec_id}.json"
        if path.exists() or path.is_symlink():  # anything there is read (or refused) as a spec
            return read_spec_file(path, expect_id=spec_id)
    where = ", ".join(str(d) for d in store_dirs())
    raise EdgeTrainError(
        f"model {spec_id!r} is a spec id that is not in the spec store ({where}); give the spec "
        "file instead (--model path/to/spec.json) or set EDGETRAIN_SPECS to the folder holding it"
    )


def resolve_model(model: str, model_args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """What a user typed as the model (a registered name, a spec id, a spec JSON file) and its
    overrides -> the run config's (model, model_args). A spec id or file becomes its id and its
    whole spec; overrides change that spec (and so its id). A registered name is kept as is."""
    if FAMILY_KEY in model_args or not (is_spec_id(model) or model.endswith(".json")):
        return model, model_args
    spec = find_spec(model) if is_spec_id(model) else read_spec_file(Path(model).expanduser())
    if model_args:
        spec = spec.replace(**model_args)
    return spec.id, spec.to_dict(family=True)


def spec_of(name: str, model_args: dict[str, Any]) -> ModelSpec:
    """The spec a config names by id, from its `model_args`; the id must match."""
    if FAMILY_KEY not in model_args:
        raise EdgeTrainError(
            f"model {name!r} is a spec id: the run config's model_args must hold its whole spec "
            f"(with {FAMILY_KEY!r}); give --model with the spec id or its JSON file"
        )
    try:
        return spec_from_dict(model_args, expect_id=name)
    except EdgeTrainError as exc:
        raise EdgeTrainError(f"model_args: {exc}") from None


def run_spec(name: str, model_args: dict[str, Any]) -> ModelSpec | None:
    """The spec a run config's (model, model_args) builds, a found one or a registered one with
    overrides; None for a model registered as a factory."""
    if is_spec_id(name):
        return spec_of(name, model_args)
    return spec_of_model(name, model_args)


def create(name: str, *, num_classes: int, dropout: float, model_args: dict[str, Any]) -> Any:
    return build_model(spec_of(name, model_args), num_classes=num_classes, dropout=dropout)
