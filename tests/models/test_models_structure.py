"""House rules for `edgetrain.models`: short functions, no import cycle inside the package."""

from __future__ import annotations

import ast
from pathlib import Path

import edgetrain.models

PACKAGE = Path(edgetrain.models.__file__).parent
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py"))}


def test_functions_are_short():
    long = [
        f"{name}.py:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long


def _imports(tree: ast.Module, modules: set[str]) -> set[str]:
    """Modules of the package that `tree` imports at module level; `__init__` stands for a name
    taken from the package itself (`from edgetrain.models import create_model`)."""
    out: set[str] = set()
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
        for full in names:
            if full.startswith("edgetrain.models."):
                part = full.split(".")[2]
                out.add(part if part in modules else "__init__")
    return out


def test_no_import_cycle():
    modules = _modules()
    graph = {name: _imports(tree, set(modules)) for name, tree in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for dep in graph.get(name, ()):
            visit(dep, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())
    # nor may a module dodge a cycle by importing a sibling inside a function (cli.py's lazy
    # imports keep `edgetrain --help` from importing torch, and import only the package)
    for name, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and name != "cli":
                inner = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
                assert not inner, f"{name}.py: import inside {node.name}()"
