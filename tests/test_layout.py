"""The architecture's import rules: one core, thin fronts that never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hoody_mount"
FRONTS = ("ssh", "dav", "api", "http_transport")
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


OS_FILE_CALLS = frozenset(
    {
        "open", "stat", "lstat", "fstat", "listdir", "scandir", "remove", "unlink", "rename",
        "replace", "mkdir", "makedirs", "rmdir", "removedirs", "chmod", "chown", "lchown",
        "utime", "truncate", "link", "symlink", "readlink", "access", "walk", "fwalk",
        "statvfs", "fstatvfs", "pread", "pwrite", "sendfile", "openpty", "mkfifo", "mknod",
    }
)  # fmt: skip
PATH_FILE_CALLS = frozenset(
    {
        "read_text", "write_text", "read_bytes", "write_bytes", "exists", "is_dir", "is_file",
        "iterdir", "touch", "glob", "rglob", "resolve", "samefile", "symlink_to",
    }
)  # fmt: skip
MODULE_FILE_CALLS = {"shutil": None, "sqlite3": {"connect"}, "tempfile": None, "glob": None}
# The fronts' files that are not the served tree, each with its reason.
FRONT_FILES = {
    "dav/properties.py": "the dead-property table, an SQLite file in the state folder",
    "http_transport/tls.py": "the TLS certificate and key in the state folder",
    "http_transport/intake.py": "a spare fd on /dev/null, given up to accept when out of fds",
    "ssh/shell.py": "a pseudo-terminal, and the start folder of a user's real shell",
}


def _file_calls(source: str) -> list[str]:
    """The filesystem calls a module's source makes itself, as ``line: name``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open":
            found.append(f"{node.lineno}: open")
        elif isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else None
            if owner == "os" and func.attr in OS_FILE_CALLS:
                found.append(f"{node.lineno}: os.{func.attr}")
            elif owner in MODULE_FILE_CALLS:
                names = MODULE_FILE_CALLS[owner]
                if names is None or func.attr in names:
                    found.append(f"{node.lineno}: {owner}.{func.attr}")
            elif func.attr in PATH_FILE_CALLS:
                found.append(f"{node.lineno}: .{func.attr}")
    return found


@pytest.mark.parametrize("front", FRONTS)
def test_fronts_reach_files_only_through_sessions(front: str) -> None:
    """Only the core touches the disk: a front reaches the served tree through a
    ``Session`` and calls no filesystem function itself, except the modules in
    ``FRONT_FILES``, which keep the server's own files, never the served tree's."""
    for path in _modules(front):
        where = str(path.relative_to(PACKAGE))
        calls = _file_calls(path.read_text())
        if where in FRONT_FILES:
            assert calls, f"{where} no longer touches files: drop it from FRONT_FILES"
        else:
            assert not calls, f"{where} touches files itself: {calls}"


def test_the_check_sees_filesystem_calls() -> None:
    """The check above finds each kind of call it looks for, and not a session's."""
    source = (
        "open('f')\nos.stat('f')\nshutil.rmtree('d')\nsqlite3.connect('db')\n"
        "Path('f').read_text()\nsession.mkdir('d')\nsession.readlink('l')\n"
    )
    assert _file_calls(source) == [
        "1: open", "2: os.stat", "3: shutil.rmtree", "4: sqlite3.connect", "5: .read_text"
    ]  # fmt: skip


def test_the_design_doc_lists_every_module() -> None:
    """docs/design.md is the map a newcomer reads first: it names every module."""
    design = (PACKAGE.parent / "docs" / "design.md").read_text()
    missing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py" or path.parent.name == "patches"
        if f"`{path.relative_to(PACKAGE)}`" not in design
    ]
    assert not missing, f"docs/design.md does not list {missing}"
