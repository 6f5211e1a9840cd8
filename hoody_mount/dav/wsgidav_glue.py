"""Every use of a name WsgiDAV keeps private.

The lock table (``locks.py``) extends WsgiDAV's in-memory lock storage: it reads and
fills the storage's table (``_dict``, keyed by token and by ``URL2TOKEN:<root>``) under
the storage's read-write lock (``_lock``), so that locks loaded from SQLite at start
are ones WsgiDAV's own methods find. Each such use goes through here, and ``check``
proves at start that the storage still works that way, so a changed WsgiDAV fails
loudly at start instead of losing locks.
"""

from __future__ import annotations

from typing import Any

import wsgidav
from wsgidav.lock_man.lock_storage import LockStorageDict

from ..unfit import UnfitLibrary

URL_KEY = "URL2TOKEN:"  # the storage's key of a root's tokens


def table(storage: LockStorageDict) -> dict[str, Any]:
    """The storage's table: token → lock, and ``URL_KEY + root`` → tokens."""
    return storage._dict  # type: ignore[no-any-return]


def write_lock(storage: LockStorageDict) -> Any:
    """The storage's read-write lock (``acquire_write``, ``acquire_read``, ``release``)."""
    return storage._lock


def add(storage: LockStorageDict, lock: dict[str, Any]) -> None:
    """Put a lock loaded from elsewhere into the storage's table, as ``create`` would."""
    entries = table(storage)
    entries[lock["token"]] = lock
    entries.setdefault(URL_KEY + lock["root"], []).append(lock["token"])


def check() -> None:
    """UnfitLibrary unless WsgiDAV's lock storage still keeps its table as ``add`` fills it."""
    problems = []
    storage = LockStorageDict()
    storage.open()
    try:
        lock = {
            "root": "/probe", "type": "write", "scope": "exclusive", "depth": "0",
            "owner": b"", "timeout": 60, "principal": "probe",
        }  # fmt: skip
        made = storage.create("/probe", dict(lock))
        if not isinstance(getattr(storage, "_dict", None), dict):
            problems.append("LockStorageDict keeps no _dict")
        elif table(storage).get(URL_KEY + "/probe") != [made["token"]]:
            problems.append(f"LockStorageDict no longer indexes roots as {URL_KEY}<root>")
        for name in ("acquire_write", "acquire_read", "release"):
            if not hasattr(getattr(storage, "_lock", None), name):
                problems.append(f"LockStorageDict's _lock has no {name}")
        if not problems:
            storage.delete(made["token"])
            add(storage, {**lock, "token": "probe-token", "expire": -1})
            found = storage.get_lock_list(
                "/probe", include_root=True, include_children=False, token_only=True
            )
            if found != ["probe-token"]:
                problems.append("a lock added to LockStorageDict's table is not found")
    finally:
        storage.close()
    if problems:
        raise UnfitLibrary(
            f"WsgiDAV {wsgidav.__version__} does not fit hoody-mount (constraints.txt pins "
            f"the version it was built for): {'; '.join(problems)}"
        )
