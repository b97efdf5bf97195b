"""INVARIANTS.md names code and tests as ``file::name``: every one of them must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "INVARIANTS.md"
REFERENCE = re.compile(r"`([\w/]+\.py)::([\w.]+)`")


def defined_names(source: Path) -> set[str]:
    """Top-level functions, classes and assignments, and ``Class.method`` for methods."""
    names: set[str] = set()
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            names.update(
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_every_reference_on_the_page_exists() -> None:
    references = REFERENCE.findall(PAGE.read_text())
    assert len(references) > 50
    missing = [
        f"{path}::{name}"
        for path, name in references
        if not (ROOT / path).is_file() or name not in defined_names(ROOT / path)
    ]
    assert missing == []
