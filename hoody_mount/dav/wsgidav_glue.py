"""Where hoody-mount leans on WsgiDAV beyond its documented interface, checked at start.

WsgiDAV's lock manager keeps its locks through a storage object whose interface only
its ``LockStorageDict`` describes; ``dav/locks.py`` gives it one over the core's lock
table, so that every protocol sees WebDAV's locks. No private name of WsgiDAV is used.
``check`` proves at start that the lock manager still works over such a storage: a
lock it takes is found by it and by the core, and refuses a write without its token,
so a changed WsgiDAV fails loudly at start instead of losing locks.
"""

from __future__ import annotations

import wsgidav
from wsgidav.dav_error import DAVError
from wsgidav.lock_man.lock_manager import LockManager

from ..core.locks import LockTable
from ..unfit import UnfitLibrary
from .locks import LockStorage


def check() -> None:
    """UnfitLibrary unless WsgiDAV's lock manager keeps its locks in a ``LockStorage``
    (over an empty table of the probe's own) and honours them."""
    problems: list[str] = []
    storage = LockStorage(LockTable(None))
    manager = LockManager(storage)
    try:
        lock = manager.acquire(
            url="/dav/probe", lock_type="write", lock_scope="exclusive", lock_depth="0",
            lock_owner=b"", timeout=60, principal="probe", token_list=[],
        )  # fmt: skip
        if not storage.table.on("/probe"):
            problems.append("its lock manager no longer keeps locks in the storage it is given")
        if not manager.is_url_locked("/dav/probe"):
            problems.append("its lock manager does not find a lock in hoody-mount's table")
        try:
            manager.check_write_permission(
                url="/dav/probe", depth="0", token_list=[], principal="other"
            )
            problems.append("its lock manager lets a write through a lock in hoody-mount's table")
        except DAVError:
            pass
        manager.release(lock["token"])
    except Exception as exc:  # (any failure of the probe is a WsgiDAV that does not fit)
        problems.append(f"{type(exc).__name__}: {exc}")
    if problems:
        raise UnfitLibrary(
            f"WsgiDAV {wsgidav.__version__} does not fit hoody-mount (constraints.txt pins "
            f"the version it was built for): {'; '.join(problems)}"
        )
