"""Experiment files: models x datasets x init x seeds, plus run options, in TOML.

An experiment is shipped in the package (`edgetrain/experiments/NAME.toml`) or is a user's file.
Dataset references may hold placeholders, `caltech101:{caltech101}`, filled from the command
line (`--data caltech101=PATH`) so that no path is baked into an experiment.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgetrain.errors import EdgeTrainError
from edgetrain.models.found import resolve_model
from edgetrain.train.config import RunConfig

_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.-]+)\}")
_RUN_FIELDS_FORBIDDEN = {"model", "data", "seed", "init", "extra", "folds", "fold"}


@dataclass(frozen=True)
class Cell:
    """One run of the matrix. `config.data` keeps its placeholders; `resolve_data` fills them."""

    dataset: str  # the experiment's label for the dataset
    config: RunConfig

    @property
    def id(self) -> str:
        return self.config.id

    def label(self) -> str:
        init = self.config.init or "scratch"
        fold = f"/fold{self.config.fold}of{self.config.folds}" if self.config.folds else ""
        return f"{self.dataset}/{self.config.model}/{init}/seed{self.config.seed}{fold}"


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    models: tuple[str, ...]
    datasets: dict[str, str]  # label -> reference (may hold {placeholders})
    seeds: tuple[int, ...]
    init: tuple[str, ...]  # "scratch" or a run directory / checkpoint (may hold placeholders)
    run: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    folds: int = 0  # K >= 2: every (model, seed) is trained K times, fold i tested in the i-th

    def placeholders(self) -> set[str]:
        refs = [*self.datasets.values(), *self.init]
        return {m for r in refs for m in _PLACEHOLDER.findall(r)}

    def cells(self) -> list[Cell]:
        """Every run of the matrix, in a stable order (dataset, model, init, seed, fold)."""
        out = []
        folds = range(self.folds) if self.folds else [0]
        for (label, ref), model, init, seed, fold in itertools.product(
            self.datasets.items(), self.models, self.init, self.seeds, folds
        ):
            # a found architecture (spec id or JSON file) travels as its whole spec
            name, model_args = resolve_model(model, dict(self.run.get("model_args", {})))
            cfg = RunConfig.from_dict(
                {
                    **self.run,
                    "model": name,
                    "model_args": model_args,
                    "data": ref,
                    "seed": seed,
                    "init": None if init == "scratch" else init,
                    "folds": self.folds,
                    "fold": fold,
                    "extra": {"experiment": self.name, "dataset": label},
                }
            )
            out.append(Cell(dataset=label, config=cfg))
        return out

    def with_seeds(self, n: int) -> Experiment:
        if n < 1:
            raise EdgeTrainError(f"--seeds must be >= 1, got {n}")
        return Experiment(**{**self.__dict__, "seeds": tuple(range(n))})

    def with_folds(self, k: int) -> Experiment:
        """The experiment cross-validated over `k` folds (0: the data's own split)."""
        if k != 0 and not 2 <= k <= 100:
            raise EdgeTrainError(f"--folds must be 2..100 (or 0: the data's own split), got {k}")
        exp = Experiment(**{**self.__dict__, "folds": k})
        exp.cells()
        return exp

    def with_run(self, overrides: dict[str, Any]) -> Experiment:
        """The experiment with [run] options replaced (see `parse_set_args`); every cell is
        validated again. The options are part of each cell's config, hence of its id."""
        run = dict(self.run)
        for key, value in overrides.items():  # a table (model_args) is merged key by key
            both = isinstance(value, dict) and isinstance(run.get(key), dict)
            run[key] = {**run[key], **value} if both else value
        exp = Experiment(**{**self.__dict__, "run": run})
        exp.cells()
        return exp


def parse_set_args(items: list[str] | None) -> dict[str, Any]:
    """`["run.resolution=96", "run.epochs=15"]` -> {"resolution": 96, "epochs": 15}.

    KEY is a RunConfig field (not one the matrix sets: model, data, seed, init, extra); VALUE is
    a TOML value (a bare word is a string) of that field's type. A dict field takes a TOML
    table or one key of it: `run.model_args.middle_depth=4`. The result does not depend on the
    order of the items; one key given two different values is an error.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        where = f"--set {item}"
        if not sep or not key.startswith("run.") or not raw:
            raise EdgeTrainError(f"{where}: expected run.KEY=VALUE, e.g. --set run.epochs=15")
        name, _, sub = key[len("run.") :].partition(".")
        hints = _run_field_types()
        if name in _RUN_FIELDS_FORBIDDEN:
            raise EdgeTrainError(
                f"{where}: {name} is a dimension of the matrix (models, datasets, seeds, init), "
                "not a run option; use the experiment file or --seeds"
            )
        if name not in hints:
            close = difflib.get_close_matches(name, hints, n=1)
            hint = f"did you mean run.{close[0]}? " if close else ""
            raise EdgeTrainError(
                f"{where}: unknown run option {name!r}; {hint}known: {', '.join(sorted(hints))}"
            )
        value = _parse_value(raw)
        if sub:
            if _base_type(hints[name]) is not dict:
                raise EdgeTrainError(f"{where}: run.{name} has no keys (it is not a table)")
            value = {**out.get(name, {}), sub: value}
        else:
            value = _check_type(value, hints[name], where=where, name=name)
            if name in out and out[name] != value:
                raise EdgeTrainError(f"{where}: run.{name} is already set to {out[name]!r}")
        out[name] = value
    return out


def _run_field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(RunConfig)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(RunConfig)
        if f.name not in _RUN_FIELDS_FORBIDDEN
    }


def _parse_value(raw: str) -> Any:
    if raw.lower() in ("none", "null"):
        return None
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word: sgd, best-val, last:2


def _base_type(tp: Any) -> Any:
    # `int | None` -> int; `dict[str, Any]` -> dict; Literal[...] -> the Literal itself
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return _base_type(args[0])
    return typing.get_origin(tp) if typing.get_origin(tp) in (dict, list) else tp


def _check_type(value: Any, tp: Any, *, where: str, name: str) -> Any:
    optional = type(None) in typing.get_args(tp)
    base = _base_type(tp)
    if value is None:
        if optional:
            return None
        raise EdgeTrainError(f"{where}: run.{name} cannot be none")
    if typing.get_origin(base) is typing.Literal:
        choices = typing.get_args(base)
        if value in choices:
            return value
        raise EdgeTrainError(f"{where}: run.{name} must be one of {', '.join(choices)}")
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        dict: lambda v: isinstance(v, dict),
    }[base](value)
    if not ok:
        kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        raise EdgeTrainError(
            f"{where}: run.{name} takes {kind.get(base, 'a table')}, got {value!r}"
        )
    return float(value) if base is float else value


def fill_placeholders(text: str, data: dict[str, str], *, what: str) -> str:
    """Replace `{name}` with data[name]; a missing name is an error saying which flag to give."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in data:
            raise EdgeTrainError(f"{what} needs a path for {{{key}}}: give --data {key}=PATH")
        return data[key]

    return _PLACEHOLDER.sub(sub, text)


def resolve_cell_config(cell_config: RunConfig, data: dict[str, str]) -> RunConfig:
    """The runnable config of a cell: placeholders in data and init replaced by real paths."""
    changes: dict[str, Any] = {"data": fill_placeholders(cell_config.data, data, what="this cell")}
    if cell_config.init:
        changes["init"] = fill_placeholders(cell_config.init, data, what="this cell")
    return cell_config.replace(**changes)


def parse_data_args(items: list[str] | None) -> dict[str, str]:
    """`["caltech101=/data/c101", ...]` -> {"caltech101": "/data/c101"} (paths made absolute)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise EdgeTrainError(f"--data takes NAME=PATH, got {item!r}")
        out[key] = str(Path(value).expanduser().resolve())
    return out


def shipped_experiments() -> list[str]:
    files = resources.files("edgetrain") / "experiments"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def load_experiment(name_or_path: str) -> Experiment:
    """A shipped experiment by name (`quick`, `paper-caltech101`, ...) or a TOML file path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise EdgeTrainError(f"no experiment file {path}")
        source = str(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EdgeTrainError(f"{source} is not UTF-8 text: {exc.reason}") from None
    else:
        shipped = shipped_experiments()
        if name_or_path not in shipped:
            raise EdgeTrainError(
                f"unknown experiment {name_or_path!r}; shipped: {', '.join(shipped)} "
                "(or give a path to your own .toml)"
            )
        res = resources.files("edgetrain") / "experiments" / f"{name_or_path}.toml"
        text, source = res.read_text(), f"edgetrain/experiments/{name_or_path}.toml"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EdgeTrainError(f"{source} is not valid TOML: {exc}") from None
    return experiment_from_dict(raw, source=source)


def experiment_from_dict(raw: dict[str, Any], *, source: str = "") -> Experiment:
    where = source or "experiment"
    known = {"name", "description", "models", "datasets", "seeds", "init", "run", "folds"}
    unknown = set(raw) - known
    if unknown:
        raise EdgeTrainError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    try:
        models = tuple(str(m) for m in raw["models"])
        datasets = {str(k): str(v) for k, v in dict(raw["datasets"]).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeTrainError(f"{where}: needs `models` (a list) and [datasets] ({exc})") from None
    if not models or not datasets:
        raise EdgeTrainError(f"{where}: needs at least one model and one dataset")
    run = raw.get("run", {})
    if not isinstance(run, dict):
        raise EdgeTrainError(f"{where}: [run] must be a table of run options")
    run = dict(run)
    bad = _RUN_FIELDS_FORBIDDEN & set(run)
    if bad:
        raise EdgeTrainError(
            f"{where}: [run] must not set {sorted(bad)}; use models/datasets/seeds/init/folds "
            "instead"
        )
    seeds = raw.get("seeds", [0])
    init = raw.get("init", ["scratch"])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds:
        raise EdgeTrainError(f"{where}: seeds must be a non-empty list of integers")
    if not isinstance(init, list) or not init:
        raise EdgeTrainError(f"{where}: init must be a non-empty list ('scratch' or paths)")
    folds = raw.get("folds", 0)
    if (
        isinstance(folds, bool)
        or not isinstance(folds, int)
        or not (folds == 0 or 2 <= folds <= 100)
    ):
        raise EdgeTrainError(f"{where}: folds must be 0 (the data's own split) or 2..100")
    exp = Experiment(
        name=str(raw.get("name") or Path(source).stem or "experiment"),
        folds=folds,
        description=str(raw.get("description", "")),
        models=models,
        datasets=datasets,
        seeds=tuple(seeds),
        init=tuple(str(i) for i in init),
        run=run,
        source=source,
    )
    exp.cells()  # validates every cell's config (unknown model, bad option) before anything runs
    return exp
