"""WebDAV locks: held in memory, kept in SQLite across restarts, bounded per user.

WsgiDAV's shelve storage rewrote its whole index file at every LOCK and UNLOCK (Python
here has only ``dbm.dumb``), so each lock cost more than the one before, for every
user; and nothing bounded how many locks one user held, for up to a month each. Here
the locks live in WsgiDAV's in-memory table (``LockStorageDict``), and each change is
one row written to ``dav-locks.sqlite`` in the state folder, so they still survive a
restart. A user holds at most ``per_user`` live locks and the server ``total``; past
that a LOCK is answered 503 with a clear text (expired locks are purged first).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wsgidav.dav_error import HTTP_SERVICE_UNAVAILABLE, DAVError
from wsgidav.lock_man.lock_manager import LockManager
from wsgidav.lock_man.lock_storage import LockStorageDict

from ..http_names import DAV_ROOT
from . import wsgidav_glue

FILE_NAME = "dav-locks.sqlite"
PER_USER = 1000  # live locks of one user (Windows and Finder lock each file they open)
TOTAL = 20000  # live locks in all


def in_share(key: str) -> bool:
    """Whether a lock or property key lies in the share (``/`` is every user's)."""
    return key == DAV_ROOT or key.startswith(DAV_ROOT + "/")


class LockTable(LockStorageDict):  # type: ignore[misc]
    """WsgiDAV's lock table, written through to SQLite, with caps on its size."""

    def __init__(self, path: Path, per_user: int = PER_USER, total: int = TOTAL) -> None:
        super().__init__()
        self._path = path
        self.per_user = per_user
        self.total = total
        self._db: sqlite3.Connection | None = None
        self._held: Counter[str] = Counter()  # locks in the table per principal

    def __repr__(self) -> str:
        return f"LockTable({self._path})"

    def open(self) -> None:
        """Load the locks that have not expired (called by WsgiDAV at start)."""
        super().open()
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS locks (token TEXT PRIMARY KEY, owner BLOB, lock TEXT)"
        )
        now = time.time()
        for token, owner, text in db.execute("SELECT token, owner, lock FROM locks").fetchall():
            lock = {**json.loads(text), "owner": bytes(owner)}  # (the owner's XML is bytes)
            if 0 <= float(lock["expire"]) < now or not in_share(lock["root"]):
                # (a lock outside the share, on ``/``, covered every user's files)
                db.execute("DELETE FROM locks WHERE token = ?", (token,))
                continue
            wsgidav_glue.add(self, {**lock, "token": token})
            self._held[lock["principal"]] += 1
        self._db = db

    def close(self) -> None:
        """Close the database (called by WsgiDAV at the end)."""
        if self._db is not None:
            self._db.close()
            self._db = None
        super().close()

    def create(self, path: str, lock: dict[str, Any]) -> dict[str, Any]:
        """Add a lock (503 when its user, or the server, holds too many already)."""
        wsgidav_glue.write_lock(self).acquire_write()
        try:
            principal = lock["principal"]
            if self._held[principal] >= self.per_user or self._count() >= self.total:
                self._purge_expired()
            if self._held[principal] >= self.per_user:
                raise DAVError(
                    HTTP_SERVICE_UNAVAILABLE,
                    f"too many locks: user {principal} holds {self.per_user}, the most "
                    "one user may; unlock some (or wait for them to expire)",
                )
            if self._count() >= self.total:
                raise DAVError(
                    HTTP_SERVICE_UNAVAILABLE,
                    f"too many locks: the server holds {self.total}, the most it keeps",
                )
            created: dict[str, Any] = super().create(path, lock)
            self._held[principal] += 1
            self._write(created)
            return created
        finally:
            wsgidav_glue.write_lock(self).release()

    def refresh(self, token: str, *, timeout: float) -> dict[str, Any]:
        """Give a lock a new timeout."""
        wsgidav_glue.write_lock(self).acquire_write()
        try:
            lock: dict[str, Any] = super().refresh(token, timeout=timeout)
            self._write(lock)
            return lock
        finally:
            wsgidav_glue.write_lock(self).release()

    def delete(self, token: str) -> bool:
        """Remove a lock (False when there is none)."""
        wsgidav_glue.write_lock(self).acquire_write()
        try:
            lock = wsgidav_glue.table(self).get(token)
            deleted: bool = super().delete(token)
            if deleted and lock is not None:
                self._held[lock["principal"]] -= 1
                if self._held[lock["principal"]] <= 0:
                    del self._held[lock["principal"]]
                if self._db is not None:
                    self._db.execute("DELETE FROM locks WHERE token = ?", (token,))
            return deleted
        finally:
            wsgidav_glue.write_lock(self).release()

    def principals(self) -> list[str]:
        """The users holding locks now."""
        wsgidav_glue.write_lock(self).acquire_read()
        try:
            return list(self._held)
        finally:
            wsgidav_glue.write_lock(self).release()

    def drop_principal(self, principal: str) -> int:
        """Remove every lock ``principal`` holds (a user who is gone); how many."""
        held = [
            token
            for token, lock in list(wsgidav_glue.table(self).items())
            if not token.startswith(wsgidav_glue.URL_KEY) and lock.get("principal") == principal
        ]
        return sum(self.delete(token) for token in held)

    def clear(self) -> None:
        """Remove every lock."""
        wsgidav_glue.write_lock(self).acquire_write()
        try:
            super().clear()
            self._held.clear()
            if self._db is not None:
                self._db.execute("DELETE FROM locks")
        finally:
            wsgidav_glue.write_lock(self).release()

    def _count(self) -> int:
        return sum(self._held.values())

    def _purge_expired(self) -> None:
        now = time.time()
        for token, lock in list(wsgidav_glue.table(self).items()):
            if not token.startswith(wsgidav_glue.URL_KEY) and 0 <= float(lock["expire"]) < now:
                self.delete(token)

    def _write(self, lock: dict[str, Any]) -> None:
        if self._db is not None:
            fields = {name: value for name, value in lock.items() if name != "owner"}
            self._db.execute(
                "INSERT OR REPLACE INTO locks (token, owner, lock) VALUES (?, ?, ?)",
                (lock["token"], lock["owner"], json.dumps(fields)),
            )


class JailedLockManager(LockManager):  # type: ignore[misc]
    """WsgiDAV's lock manager, whose refusals (423, and 412's lock-token-submitted)
    name the locked resources at the URLs the requesting user knows them by: the
    table's keys are paths in the served root, and a 423 showed where a user's jail
    lies (``/dav/home/carol/c.txt`` for carol's ``/dav/c.txt``)."""

    def __init__(self, storage: LockStorageDict, shown: Callable[[str], str]) -> None:
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
