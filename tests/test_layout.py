"""The architecture's import rules: one core, thin fronts that never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hoody_mount"
FRONTS = ("ssh", "dav", "api", "web")
PROTOCOL_LIBRARIES = ("asyncssh", "wsgidav", "cheroot")


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.add(name)
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_core_imports_no_protocol_code(path: Path) -> None:
    """core/ uses neither a protocol library nor any other part of hoody_mount."""
    for name in _imports(path):
        assert not name.startswith(PROTOCOL_LIBRARIES), f"{path.name} imports {name}"
        if name.startswith("hoody_mount"):
            assert name.startswith("hoody_mount.core"), f"{path.name} imports {name}"


@pytest.mark.parametrize("front", FRONTS)
def test_fronts_do_not_import_each_other(front: str) -> None:
    """A front imports the core and its own library, never another front or the app."""
    others = [f"hoody_mount.{f}" for f in FRONTS if f != front]
    for path in _modules(front):
        for name in _imports(path):
            for other in [*others, "hoody_mount.app", "hoody_mount.cli"]:
                assert not name.startswith(other), f"{front}/{path.name} imports {name}"


def test_every_module_has_a_docstring() -> None:
    """Short modules with one job each, saying what it is."""
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no docstring"
