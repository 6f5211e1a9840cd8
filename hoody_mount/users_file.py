"""``hoody-mount user …``: edit the users of a configuration file safely.

The file is edited with tomlkit (comments and layout kept), the result is checked by
loading it like the server would, and only then does it atomically replace the old one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomlkit

from . import config as config_module
from .config import ConfigError


def must_exist(path: Path) -> None:
    """ConfigError, saying how to write one, when there is no configuration at ``path``."""
    if not path.exists():
        raise ConfigError(
            f"{path}: no such file: write the configuration first, with the folder to "
            f"serve, e.g. printf 'root = \"/srv/files\"\\n' > {path} (config/container.toml "
            f"shows every key), then its users, the default one first: hoody-mount user add "
            f"root --config {path}"
        )


def _read(path: Path) -> tomlkit.TOMLDocument:
    must_exist(path)
    try:
        return tomlkit.parse(path.read_text())
    except Exception as exc:  # tomlkit raises several parse error types
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _write_checked(
    path: Path, doc: tomlkit.TOMLDocument, check: Callable[[config_module.Config], None]
) -> None:
    """Write next to the file, load it as the server would, ``check`` what it loaded,
    then replace atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(tomlkit.dumps(doc))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            check(config_module.load(tmp))
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(str(tmp), str(path))) from None
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def edit(
    path: Path,
    change: Callable[[Any], None],
    check: Callable[[config_module.Config], None] = lambda loaded: None,
) -> None:
    """Apply ``change`` to the ``users`` table of the file and, once the result loads
    as the server would load it and passes ``check``, save it safely."""
    doc = _read(path)
    if "users" not in doc:
        doc["users"] = tomlkit.table(is_super_table=True)
    change(doc["users"])
    _write_checked(path, doc, check)


def list_users(path: Path) -> list[str]:
    """One line per user: name, access, jail root and protocols."""
    loaded = config_module.load(path)
    return [
        f"{u.name}\t{u.access}\troot={u.root}\thome={u.home}\t{','.join(sorted(u.protocols))}"
        for u in loaded.users.values()
    ]
