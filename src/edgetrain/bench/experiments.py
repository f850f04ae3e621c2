"""Experiment files: models x datasets x init x seeds, plus run options, in TOML.

An experiment is shipped in the package (`edgetrain/experiments/NAME.toml`) or is a user's file.
Dataset references may hold placeholders, `caltech101:{caltech101}`, filled from the command
line (`--data caltech101=PATH`) so that no path is baked into an experiment.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgetrain.errors import EdgeTrainError
from edgetrain.train.config import RunConfig

_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.-]+)\}")
_RUN_FIELDS_FORBIDDEN = {"model", "data", "seed", "init", "extra"}


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
        return f"{self.dataset}/{self.config.model}/{init}/seed{self.config.seed}"


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

    def placeholders(self) -> set[str]:
        refs = [*self.datasets.values(), *self.init]
        return {m for r in refs for m in _PLACEHOLDER.findall(r)}

    def cells(self) -> list[Cell]:
        """Every run of the matrix, in a stable order (dataset, model, init, seed)."""
        out = []
        for (label, ref), model, init, seed in itertools.product(
            self.datasets.items(), self.models, self.init, self.seeds
        ):
            cfg = RunConfig.from_dict(
                {
                    **self.run,
                    "model": model,
                    "data": ref,
                    "seed": seed,
                    "init": None if init == "scratch" else init,
                    "extra": {"experiment": self.name, "dataset": label},
                }
            )
            out.append(Cell(dataset=label, config=cfg))
        return out

    def with_seeds(self, n: int) -> Experiment:
        if n < 1:
            raise EdgeTrainError(f"--seeds must be >= 1, got {n}")
        return Experiment(**{**self.__dict__, "seeds": tuple(range(n))})


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
        text, source = path.read_text(), str(path)
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
    known = {"name", "description", "models", "datasets", "seeds", "init", "run"}
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
    run = dict(raw.get("run", {}))
    bad = _RUN_FIELDS_FORBIDDEN & set(run)
    if bad:
        raise EdgeTrainError(
            f"{where}: [run] must not set {sorted(bad)}; use models/datasets/seeds/init instead"
        )
    seeds = raw.get("seeds", [0])
    init = raw.get("init", ["scratch"])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds:
        raise EdgeTrainError(f"{where}: seeds must be a non-empty list of integers")
    if not isinstance(init, list) or not init:
        raise EdgeTrainError(f"{where}: init must be a non-empty list ('scratch' or paths)")
    exp = Experiment(
        name=str(raw.get("name") or Path(source).stem or "experiment"),
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
