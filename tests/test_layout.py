"""The layout rules of docs/code-layout.md: no import cycle, layers import downwards, short modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_sam"
MAX_MODULE_LINES = 700


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports, at any depth (inside functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target, *(f"{target}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in known and c != name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_imports_another_that_imports_it_back():
    assert _cycle(_graph()) is None


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        (
            "napari_sam.model",
            ("napari_sam.engine", "napari_sam.api", "napari_sam._napari", "napari_sam._widgets"),
        ),
        (
            "napari_sam.engine",
            ("napari_sam.api", "napari_sam.nodes", "napari_sam.batch", "napari_sam._napari"),
        ),
        ("napari_sam.engine", ("napari_sam._widgets", "napari_sam.cli")),
        ("napari_sam._napari", ("napari_sam._widgets",)),
    ],
)
def test_layers_import_only_downwards(layer, forbidden):
    wrong = {
        f"{name} -> {target}"
        for name, targets in _graph().items()
        if name == layer or name.startswith(layer + ".")
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    }
    assert not wrong


def test_engine_types_is_a_leaf():
    """The values and options import nothing of the engine but the LRU helper."""
    leaf = "napari_sam.engine.types"
    outside = {
        f"{name} -> {target}"
        for name, targets in _graph().items()
        if name == leaf or name.startswith(leaf + ".")
        for target in targets
        if target.startswith("napari_sam.engine") and not target.startswith(leaf)
        and target != "napari_sam.engine.lru"
    }  # fmt: skip
    assert not outside


def test_no_module_is_longer_than_a_newcomer_can_read():
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long
