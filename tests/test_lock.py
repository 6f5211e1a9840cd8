"""The one lock: every Python package comes in the version constraints.txt names."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not an exact pin"
            pins[_normal(name)] = version
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_every_dependency_is_pinned_and_installed_as_pinned() -> None:
    """Every dependency (extras too) is in the lock; what this venv installed (the
    server's and the tests': the bench's are installed by ``make bench``) is the locked
    version of it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    every = list(needed)
    for extra in project["optional-dependencies"].values():
        every += extra
    locked = _locked()
    for requirement in every:
        name = _normal(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
        assert name in locked, f"{name} is not in constraints.txt"
    for requirement in needed:
        name = _normal(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
        assert _installed(name) is not None, f"{name} is not installed"
    wrong = {
        name: (version, _installed(name))
        for name, version in locked.items()
        if _installed(name) not in (None, version)
    }
    assert not wrong, f"installed versions differ from constraints.txt: {wrong}"
