"""The file page's style and script, read once from this package's files (the fronts
read no files themselves)."""

from __future__ import annotations

from importlib import resources

_HERE = resources.files(__package__)
FILES_CSS = (_HERE / "files.css").read_text(encoding="utf-8")
FILES_JS = (_HERE / "files.js").read_text(encoding="utf-8")
