"""The data package's structure: imports run one way, and every kind is in the one table."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import edgetrain.data
from edgetrain.data.registry import KINDS, usage

PACKAGE = Path(edgetrain.data.__file__).parent


def _data_imports(path: Path) -> tuple[set[str], list[int]]:
    """Data modules `path` imports, and the lines of such imports that are not at top level."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    found: set[str] = set()
    nested: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgetrain.data."):
            found.add(node.module.rsplit(".", 1)[1])  # type: ignore[union-attr]
            if id(node) not in top:
                nested.append(node.lineno)
    return found, nested


def test_data_modules_import_each_other_one_way() -> None:
    graph = {}
    for path in PACKAGE.glob("*.py"):
        if path.stem == "__init__":
            continue
        graph[path.stem], nested = _data_imports(path)
        assert not nested, f"{path.name}: imports of data modules inside functions at {nested}"
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle among data modules: {exc.args[1]}")


def test_every_kind_is_named_by_its_reference_class() -> None:
    assert list(KINDS) == ["caltech101", "pku-pcb", "folder", "synthetic-pcb"]
    for name, kind in KINDS.items():
        assert kind.ref_type.kind == name and kind.usage.startswith(name)
        assert kind.usage in usage()
