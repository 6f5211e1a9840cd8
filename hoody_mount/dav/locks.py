"""WebDAV locks: WsgiDAV's lock storage over the core's one lock table (``core/locks.py``).

WsgiDAV's lock manager keeps its locks in a storage object; this one keeps none of its
own: every lock lives in the core's table, where every protocol's changes are checked
against it, so a file Finder locked is locked over SFTP and the file API too. WsgiDAV
names a lock's resource by its key, ``/dav`` and the path in the served root, quoted;
the core by the path alone. WsgiDAV's storage interface is the one of its
``LockStorageDict`` (``wsgidav_glue.check`` proves at start that its lock manager still
works over this one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

from wsgidav.dav_error import HTTP_FORBIDDEN, HTTP_SERVICE_UNAVAILABLE, DAVError
from wsgidav.lock_man.lock_manager import LockManager, normalize_lock_root

from ..core.locks import Lock, LockTable, TooManyLocks
from ..http_names import DAV_ROOT


def in_share(key: str) -> bool:
    """Whether a lock or property key lies in the share (``/`` is every user's)."""
    return key == DAV_ROOT or key.startswith(DAV_ROOT + "/")


def path_of(key: str) -> str | None:
    """The served root's path of a lock key (None outside the share)."""
    key = normalize_lock_root(key)
    if not in_share(key):
        return None
    return unquote(key[len(DAV_ROOT) :], errors="surrogateescape") or "/"


def key_of(path: str) -> str:
    """The lock key of a path of the served root."""
    return quote(DAV_ROOT + path.rstrip("/"), errors="surrogateescape")


def as_dict(lock: Lock) -> dict[str, Any]:
    """A lock as WsgiDAV's lock manager reads it."""
    return {
        "root": key_of(lock.path), "type": "write", "scope": lock.scope, "depth": lock.depth,
        "owner": lock.owner, "timeout": lock.timeout, "expire": lock.expire,
        "principal": lock.principal, "token": lock.token,
    }  # fmt: skip


class LockStorage:
    """WsgiDAV's lock storage interface, over the core's lock table."""

    def __init__(self, table: LockTable) -> None:
        self.table = table

    def __repr__(self) -> str:
        return f"LockStorage({self.table!r})"

    def open(self) -> None:
        """Load the table (called by WsgiDAV's lock manager)."""
        self.table.open()

    def close(self) -> None:
        """Close the table."""
        self.table.close()

    def cleanup(self) -> None:
        """Nothing: expired locks are purged as they are met."""

    def clear(self) -> None:
        """Remove every lock."""
        self.table.clear()

    def get(self, token: str) -> dict[str, Any] | None:
        """The live lock of ``token``."""
        lock = self.table.get(token)
        return as_dict(lock) if lock is not None else None

    def create(self, path: str, lock: dict[str, Any]) -> dict[str, Any]:
        """Add a lock (503 when its user, or the server, holds too many already); as
        WsgiDAV's own storage, ``lock`` is completed in place (its lock manager reads it)."""
        where = path_of(path)
        if where is None:
            raise DAVError(HTTP_FORBIDDEN, "only the /dav share can be locked")
        timeout = lock.get("timeout")
        try:
            made = self.table.create(
                where,
                principal=str(lock["principal"]),
                depth=str(lock.get("depth", "0")),
                scope=str(lock.get("scope", "exclusive")),
                owner=bytes(lock.get("owner") or b""),
                timeout=None if timeout is None else float(timeout),
            )
        except TooManyLocks as exc:
            raise DAVError(HTTP_SERVICE_UNAVAILABLE, exc.strerror) from None
        lock.update(as_dict(made))
        return lock

    def refresh(self, token: str, *, timeout: float) -> dict[str, Any]:
        """Give a lock a new timeout."""
        return as_dict(self.table.refresh(token, timeout))

    def delete(self, token: str) -> bool:
        """Remove a lock (False when there is none)."""
        return self.table.delete(token)

    def get_lock_list(
        self, path: str, *, include_root: bool, include_children: bool, token_only: bool
    ) -> list[Any]:
        """The live locks on the key ``path`` and (``include_children``) below it."""
        where = path_of(path)
        if where is None:  # (``/`` above the share: every lock is below it)
            found = self.table.locks() if include_children and path.strip("/") == "" else []
        else:
            found = self.table.on(where, root=include_root, below=include_children)
        return [lock.token for lock in found] if token_only else list(map(as_dict, found))


class JailedLockManager(LockManager):  # type: ignore[misc]
    """WsgiDAV's lock manager, whose refusals (423, and 412's lock-token-submitted)
    name the locked resources at the URLs the requesting user knows them by: the
    table's keys are paths in the served root, and a 423 showed where a user's jail
    lies (``/dav/home/carol/c.txt`` for carol's ``/dav/c.txt``)."""

    def __init__(self, storage: LockStorage, shown: Callable[[str], str]) -> None:
        super().__init__(storage)
        self._shown = shown  # a lock key → the requesting user's URL of it

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().acquire(*args, **kwargs)
        except DAVError as exc:
            raise self._as_user_sees(exc) from None

    def check_write_permission(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().check_write_permission(*args, **kwargs)
        except DAVError as exc:
            raise self._as_user_sees(exc) from None

    def _as_user_sees(self, exc: DAVError) -> DAVError:
        condition = exc.err_condition
        if condition is not None:
            condition.hrefs = list(dict.fromkeys(map(self._shown, condition.hrefs)))
        return exc
