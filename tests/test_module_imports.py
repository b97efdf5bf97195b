"""The tree's import rules: no two modules import each other, and what ships never imports tests.

Read from the source with :mod:`ast` (nothing is imported), so an import
inside a function counts as much as one at the top: a cycle hidden in a
function still ties the two modules together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Folders that hold no module of the project.
NOT_SOURCE = {".venv", ".git", "build", "crossbank.egg-info", "__pycache__", "node_modules"}


def project_modules() -> dict[str, Path]:
    """Every module of the tree by dotted name (a package by its folder's name)."""
    modules: dict[str, Path] = {}
    for path in REPO.rglob("*.py"):
        relative = path.relative_to(REPO)
        if NOT_SOURCE & set(relative.parts):
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            modules[".".join(parts)] = path
    return modules


def _imported_names(module: str, path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}".strip(".")
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Which project modules each project module imports (``from a import b``: ``a.b`` if a module)."""
    modules = project_modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {resolve(name) for name in _imported_names(module, path)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that reach each other through imports (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            if group:
                found.append(sorted([node, *group]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_inside_functions_and_longer_cycles(tmp_path: Path) -> None:
    module = tmp_path / "scene.py"
    module.write_text("def later():\n    from orchestrator.local import demo\n")
    assert "orchestrator.local.demo" in set(_imported_names("orchestrator.scene", module))
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_modules_import_each_other() -> None:
    assert cycles(import_graph()) == []


def test_nothing_outside_tests_imports_from_tests() -> None:
    graph = import_graph()
    offending = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.split(".")[0] != "tests"
        for target in targets
        if target.split(".")[0] == "tests"
    )
    assert offending == []
