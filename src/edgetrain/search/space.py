"""Search spaces as data: genes with choice lists, each writing one or more fields of a base spec.

A space file (TOML) names a registered spec as its `base` and lists genes:

    name = "xception-family"
    base = "xception_lite"
    [genes.middle_depth]
    choices = [0, 1, 2, 4, 8]
    paths = ["middle_depth"]                       # a field of the spec's dict form
    [genes.entry3_width]
    choices = [256, 512, 728]
    paths = ["entry.2.convs.*.width", "middle.convs.2.width"]   # '*': every list element
    [genes.middle_squeeze]
    choices = [0, 32, 64]
    none = 0                                       # this choice writes null (squeeze off)
    [genes.resolution]
    choices = [64, 96]
    target = "run"                                 # a RunConfig field, not a spec field

A genome is a plain dict {gene: choice}; `spec_of(genome)` writes each gene's value at its paths
in the base spec's `to_dict()` and reads it back with the family's `from_dict` (which validates),
so one genome is one spec with one canonical id. Genes may not write the same field twice.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edgetrain.errors import EdgeTrainError
from edgetrain.fileio import parse_toml, read_text_bounded
from edgetrain.models.registry import get_spec
from edgetrain.models.spec import ModelSpec, short_repr

RUN_GENES = {"resolution"}  # RunConfig fields a gene may set (target = "run")
MAX_SPACE_FILE_BYTES = 1 << 20
# A gene is one field's alternatives, and loading a space builds every choice of every gene at
# least once: a few dozen choices is a wide search of one field; more is a file that was not
# meant as a space, refused before anything is built.
MAX_CHOICES = 256
MAX_GENES = 64
_SCALAR = (bool, int, float, str)


@dataclass(frozen=True)
class Gene:
    name: str
    choices: tuple[Any, ...]
    paths: tuple[str, ...] = ()  # where in the spec dict the value goes
    target: str = "spec"  # "spec" or "run"
    none: Any = None  # the choice that writes null, if any (TOML has no null)

    def value(self, choice: Any) -> Any:
        return None if self.none is not None and choice == self.none else choice

    def allows(self, choice: Any) -> bool:
        """`choice` is one of the choices, of their type (1 is not True, 1.0 not 1); a set look-up,
        so checking a genome costs the same however many choices a gene has."""
        return type(choice) is type(self.choices[0]) and choice in self._choice_set

    @functools.cached_property
    def _choice_set(self) -> frozenset[Any]:
        return frozenset(self.choices)


@dataclass(frozen=True)
class SearchSpace:
    name: str
    base: str  # a registered model name whose spec the genes modify
    genes: tuple[Gene, ...]
    description: str = ""

    @property
    def base_spec(self) -> ModelSpec:
        return get_spec(self.base)

    @property
    def size(self) -> int:
        return math.prod(len(g.choices) for g in self.genes)

    def spec_of(self, genome: dict[str, Any]) -> ModelSpec:
        """The spec a genome stands for (validated); a missing or unknown gene or choice raises."""
        self._check_genome(genome)
        d = self.base_spec.to_dict(family=True)
        for g in self.genes:
            if g.target == "spec":
                for path in g.paths:
                    _write(d, path.split("."), g.value(genome[g.name]), path)
        return type(self.base_spec).from_dict(d)

    def run_fields(self, genome: dict[str, Any]) -> dict[str, Any]:
        """The RunConfig fields a genome sets (resolution, when it is a gene)."""
        return {g.name: genome[g.name] for g in self.genes if g.target == "run"}

    def _check_genome(self, genome: dict[str, Any]) -> None:
        names = {g.name for g in self.genes}
        if not isinstance(genome, dict) or set(genome) != names:
            got = sorted(genome) if isinstance(genome, dict) else genome
            raise EdgeTrainError(
                f"space {self.name}: a genome needs genes {sorted(names)}, got {got}"
            )
        for g in self.genes:
            if not g.allows(genome[g.name]):
                raise EdgeTrainError(
                    f"space {self.name}: gene {g.name} must be one of "
                    f"{short_repr(list(g.choices), 200)}, got {short_repr(genome[g.name])}"
                )

    def random_genome(self, rng: random.Random) -> dict[str, Any]:
        return {g.name: rng.choice(g.choices) for g in self.genes}

    def genome_of(
        self, spec: ModelSpec, run: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The genome whose spec is `spec` (with run genes from `run`), or None when `spec` is not
        a point of this space. Searches gene by gene: each gene's paths read off `spec`."""
        if spec.family != self.base_spec.family:  # its fields are not where the paths lead
            return None
        d, genome = spec.to_dict(family=True), {}
        for g in self.genes:
            if g.target == "run":
                if not run or run.get(g.name) not in g.choices:
                    return None
                genome[g.name] = run[g.name]
                continue
            choice = _choice_in(g, d)
            if choice is None:
                return None
            genome[g.name] = choice
        return genome if self.spec_of(genome).id == spec.id else None


# --- reading and writing fields by path -----------------------------------------------------------


def _choice_in(g: Gene, d: dict[str, Any]) -> Any:
    """The choice of `g` that spec dict `d` holds at all of `g`'s paths, or None (also where a
    spec of another shape, e.g. fewer stages, has no field at a path)."""
    try:
        values = [v for p in g.paths for v in _read(d, p.split("."))]
    except (LookupError, TypeError, ValueError):
        return None
    return next((c for c in g.choices if all(v == g.value(c) for v in values)), None)


def _write(d: Any, keys: list[str], value: Any, path: str) -> None:
    key, rest = keys[0], keys[1:]
    if isinstance(d, list):
        targets = range(len(d)) if key == "*" else [_index(key, len(d), path)]
        for i in targets:
            if rest:
                _write(d[i], rest, value, path)
            else:
                d[i] = value
        return
    if not isinstance(d, dict) or key not in d:
        raise EdgeTrainError(f"gene path {short_repr(path)}: no field {short_repr(key)} there")
    if rest:
        _write(d[key], rest, value, path)
    else:
        d[key] = value


def _read(d: Any, keys: list[str]) -> list[Any]:
    if not keys:
        return [d]
    key, rest = keys[0], keys[1:]
    if isinstance(d, list):
        items = d if key == "*" else [d[int(key)]]
        return [v for item in items for v in _read(item, rest)]
    return _read(d[key], rest)


def _index(key: str, n: int, path: str) -> int:
    # ASCII digits only, and few of them: int() refuses other digits ('²') and huge numbers
    if not (key.isascii() and key.isdigit() and len(key) <= 6) or int(key) >= n:
        raise EdgeTrainError(
            f"gene path {short_repr(path)}: {short_repr(key)} is not an index below {n}"
        )
    return int(key)


def _concrete(d: Any, keys: list[str], prefix: str = "") -> list[str]:
    """Every concrete field a path writes (wildcards expanded), for the overlap check."""
    if not keys:
        return [prefix]
    key, rest = keys[0], keys[1:]
    if isinstance(d, list):
        idx = range(len(d)) if key == "*" else [_index(key, len(d), prefix + key)]
        return [p for i in idx for p in _concrete(d[i], rest, f"{prefix}{i}.")]
    if not isinstance(d, dict) or key not in d:
        raise EdgeTrainError(
            f"gene path {short_repr(prefix + key)}: no field {short_repr(key)} there"
        )
    return _concrete(d[key], rest, f"{prefix}{key}.")


# --- loading ------------------------------------------------------------------------------------


def shipped_spaces() -> list[str]:
    files = resources.files("edgetrain.search").joinpath("spaces").iterdir()
    return sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A shipped space by name (see `shipped_spaces()`) or a TOML file; refused with one line
    when it is empty, malformed or contradictory (some gene choice builds no valid spec)."""
    text, where = _space_text(str(name_or_path))
    space = _parse(parse_toml(text, where), where)
    _check_builds(space, where)
    return space


def space_to_dict(space: SearchSpace) -> dict[str, Any]:
    """The space as plain data (the TOML file's content), for a study's user attributes."""
    genes = {}
    for g in space.genes:
        d: dict[str, Any] = {"choices": list(g.choices)}
        if g.target == "spec":
            d["paths"] = list(g.paths)
        else:
            d["target"] = g.target
        if g.none is not None:
            d["none"] = g.none
        genes[g.name] = d
    return {"name": space.name, "base": space.base, "description": space.description,
            "genes": genes}  # fmt: skip


def space_from_dict(raw: dict[str, Any], where: str) -> SearchSpace:
    space = _parse(raw, where)
    _check_builds(space, where)
    return space


def _space_text(name: str) -> tuple[str, str]:
    if name in shipped_spaces():
        res = resources.files("edgetrain.search").joinpath("spaces", f"{name}.toml")
        return res.read_text(encoding="utf-8"), f"space {name}"
    path = Path(name).expanduser()
    if not (path.exists() or path.is_symlink()):
        raise EdgeTrainError(
            f"no search space {short_repr(name)}: give a TOML file or one of "
            f"{', '.join(shipped_spaces())}"
        )
    return read_text_bounded(path, MAX_SPACE_FILE_BYTES, "search space"), str(path)


def _parse(raw: dict[str, Any], where: str) -> SearchSpace:
    unknown = set(raw) - {"name", "base", "description", "genes"}
    if unknown:
        raise EdgeTrainError(f"{where}: unknown key(s) {sorted(unknown)}")
    if not isinstance(raw.get("base"), str):
        raise EdgeTrainError(f'{where}: needs base = "<a registered model>", e.g. xception_lite')
    get_spec(raw["base"])  # unknown or not a spec value -> its own clear error
    genes = raw.get("genes")
    if not isinstance(genes, dict) or not genes:
        raise EdgeTrainError(f"{where}: the space has no genes ([genes.NAME] tables)")
    if len(genes) > MAX_GENES:
        raise EdgeTrainError(f"{where}: {len(genes)} genes; a space has at most {MAX_GENES}")
    space = SearchSpace(
        name=str(raw.get("name") or Path(where).stem),
        base=raw["base"],
        genes=tuple(_gene(n, g, f"{where}: gene {n[:60]}") for n, g in genes.items()),
        description=str(raw.get("description", "")),
    )
    _check_paths(space, where)
    return space


def _gene(name: str, g: Any, where: str) -> Gene:
    if not isinstance(g, dict) or set(g) - {"choices", "paths", "target", "none"}:
        raise EdgeTrainError(f"{where}: a gene is a table of choices, paths, target, none")
    choices = _choices(g.get("choices"), where)
    target, paths = g.get("target", "spec"), g.get("paths", [])
    if not isinstance(paths, list):  # a bare string would be read as one path per character
        raise EdgeTrainError(
            f'{where}: paths must be a list, e.g. paths = ["middle_depth"], got {short_repr(paths)}'
        )
    if target == "run":
        if name not in RUN_GENES or paths:
            raise EdgeTrainError(f"{where}: run genes are {sorted(RUN_GENES)}, without paths")
    elif target != "spec" or not paths or not all(isinstance(p, str) and p for p in paths):
        raise EdgeTrainError(f'{where}: needs paths = ["field.path", ...] into the spec')
    none = g.get("none")
    if "none" in g and not (type(none) is type(choices[0]) and none in set(choices)):
        raise EdgeTrainError(f"{where}: none = {short_repr(none)} is not one of the choices")
    return Gene(name, choices, tuple(paths), target, none)


def _choices(choices: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(choices, list) or not choices:
        raise EdgeTrainError(f"{where}: needs a non-empty list of choices")
    if len(choices) > MAX_CHOICES:
        raise EdgeTrainError(
            f"{where}: {len(choices)} choices; a gene has at most {MAX_CHOICES} (split the field "
            "into genes, or search coarser steps)"
        )
    if len({type(c) for c in choices}) != 1 or not isinstance(choices[0], _SCALAR):
        raise EdgeTrainError(f"{where}: choices must be numbers, booleans or strings of one type")
    if len(set(choices)) != len(choices):
        raise EdgeTrainError(f"{where}: choices repeat a value")
    return tuple(choices)


def _check_paths(space: SearchSpace, where: str) -> None:
    d, seen = space.base_spec.to_dict(family=True), {}
    for g in space.genes:
        for path in g.paths:
            for field in _concrete(d, path.split(".")):
                if field in seen:
                    raise EdgeTrainError(
                        f"{where}: genes {seen[field]} and {g.name} both set {field.rstrip('.')}"
                    )
                seen[field] = g.name


def _check_builds(space: SearchSpace, where: str, *, tries: int = 64) -> None:
    """Every choice of every gene must build a valid spec in some genome (searched with a few
    seeded random genomes around it): a choice that never can makes the space contradictory."""
    rng = random.Random(0)
    for g, choice in [(gene, c) for gene in space.genes for c in gene.choices]:
        error = None
        for _ in range(tries):
            genome = {**space.random_genome(rng), g.name: choice}
            try:
                space.spec_of(genome)
                break
            except EdgeTrainError as exc:
                error = exc
        else:
            raise EdgeTrainError(
                f"{where}: contradictory space: gene {g.name} = {short_repr(choice)} builds no "
                f"valid model ({error})"
            )


def enumerate_genomes(space: SearchSpace, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` genomes in a fixed order (the first ones of the product)."""
    names = [g.name for g in space.genes]
    product = itertools.product(*(g.choices for g in space.genes))
    return [dict(zip(names, values, strict=True)) for values in itertools.islice(product, limit)]
