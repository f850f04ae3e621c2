"""The package's layers: every import of `edgetrain` (function-local ones included) goes down
the layer order or stays within its layer, and no two modules import each other, directly or
round a loop. ARCHITECTURE.md states the order; this test keeps it true."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import edgetrain

SRC = Path(edgetrain.__file__).parent

# lowest first; a module may import its own layer and the layers below it
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "fileio", "preprocess", "threads", "objectives"}),
    frozenset({"models", "data", "measure"}),
    frozenset({"train"}),
    frozenset({"report", "deploy"}),
    frozenset({"bench"}),
    frozenset({"search"}),
)
TOP = len(LAYERS)  # the command line: every `cli.py`, `__main__`, `helpfmt`, `worker`
COMMAND_LINE = frozenset({"cli", "__main__", "helpfmt", "worker"})


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    """The layer of a dotted module name; the root package is the bottom (at import time it
    holds only `__version__` and the error type; its lazy `create_model` is a re-export)."""
    parts = module.split(".")
    if len(parts) == 1:
        return 0
    if parts[-1] in COMMAND_LINE:
        return TOP
    return next((i for i, names in enumerate(LAYERS) if parts[1] in names), None)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its file (names resolved to the
    longest module prefix: `from edgetrain.train import RunConfig` is `edgetrain.train`)."""
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}

    def resolve(name: str) -> str:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for mod, path in paths.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {resolve(a.name) for a in node.names if a.name.startswith(root.name)}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(root.name):
                deps |= {resolve(f"{node.module}.{a.name}") for a in node.names}
        graph[mod] = deps - {mod, ""}
    return graph


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in sorted(graph.items()):
        if mod.count(".") == 0:  # the root's lazy re-export of create_model, see layer_of
            continue
        for dep in sorted(deps):
            lm, ld = layer_of(mod), layer_of(dep)
            if lm is None or ld is None:
                bad.append(f"{mod} -> {dep}: a package in no layer (add it to LAYERS)")
            elif ld > lm:
                bad.append(f"{mod} (layer {lm}) imports {dep} (layer {ld}) upwards")
    return bad


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        return list(exc.args[1])
    return None


def test_imports_follow_the_layers() -> None:
    assert layer_violations(import_graph(SRC)) == []


def test_no_import_cycle() -> None:
    found = cycle(import_graph(SRC))
    assert found is None, "import cycle: " + " -> ".join(found or [])


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "edgetrain"
    for rel, text in {"__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_planted_upward_import_is_caught(tmp_path: Path) -> None:
    root = _plant(
        tmp_path,
        {
            "models/__init__.py": "",
            "models/spec.py": "def f():\n    from edgetrain.train.engine import train\n",
            "train/__init__.py": "",
            "train/engine.py": "from edgetrain.models.spec import f\n",
        },
    )
    assert layer_violations(import_graph(root)) == [
        "edgetrain.models.spec (layer 1) imports edgetrain.train.engine (layer 2) upwards"
    ]


def test_a_planted_cycle_is_caught(tmp_path: Path) -> None:
    root = _plant(
        tmp_path,
        {
            "train/__init__.py": "",
            "train/a.py": "import edgetrain.train.b\n",
            "train/b.py": "def g():\n    from edgetrain.train.a import x\n",
        },
    )
    assert layer_violations(import_graph(root)) == []
    found = cycle(import_graph(root))
    assert found is not None and set(found) == {"edgetrain.train.a", "edgetrain.train.b"}


@pytest.mark.parametrize(
    ("module", "layer"),
    [("edgetrain", 0), ("edgetrain.fileio", 0), ("edgetrain.data.folder", 1),
     ("edgetrain.train.engine", 2), ("edgetrain.bench.cli", TOP), ("edgetrain.cli", TOP)],
)  # fmt: skip
def test_layer_of(module: str, layer: int) -> None:
    assert layer_of(module) == layer
