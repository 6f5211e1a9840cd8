"""Locks on files and folders: one table for every protocol, kept in SQLite, bounded per user.

A lock is a write lock on a path of the served root (so two users who see one file see
one lock), exclusive or shared, of depth 0 or infinity, until it expires. WebDAV takes
them (``dav/locks.py`` adapts this table to WsgiDAV), the file API too; every change a
``Session`` makes is checked here (``check``), whatever the protocol: a change passes
only with the token of each lock that covers it, brought by the lock's own user. Reads
are never checked. Nothing here touches the kernel's locks (no flock, no fcntl).

What covers a change of ``path``: a lock on ``path``; a depth-infinity lock on a folder
above it; for a change of a folder's members (creating, removing or renaming ``path``)
a lock of any depth on its folder; for a change of a whole tree (removing or moving a
folder) any lock below ``path``. An empty table costs one test; otherwise a check looks
up each folder above ``path`` in a dictionary and the locks below it by bisection of
the sorted locked paths.

Each change is one row of ``dav-locks.sqlite`` in the state folder, so locks survive a
restart. A user holds at most ``per_user`` live locks and the server ``total``; past
that ``TooManyLocks`` (expired locks are purged first).
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import json
import re
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "dav-locks.sqlite"
PER_USER = 1000  # live locks of one user (Windows and Finder lock each file they open)
TOTAL = 20000  # live locks in all
DEFAULT_TIMEOUT = 604800.0  # a week, as WsgiDAV
MAX_TIMEOUT = 4 * 604800.0  # four weeks; longer (or infinite) asks get this


@dataclass(slots=True)
class Lock:
    """One write lock: ``path`` in the served root, ``principal`` the user who took it,
    ``owner`` what the client said of itself (WebDAV's owner XML, or the API's text)."""

    token: str
    path: str
    principal: str
    depth: str  # "0" or "infinity"
    scope: str  # "exclusive" or "shared"
    owner: bytes
    timeout: float
    expire: float  # seconds since the epoch

    @property
    def id(self) -> str:
        """A short name of the lock for administrators (not its token, which writes)."""
        return hashlib.sha256(self.token.encode()).hexdigest()[:12]

    def live(self, now: float) -> bool:
        """Whether the lock has not expired at ``now``."""
        return self.expire >= now

    def owner_text(self) -> str:
        """The owner as a line of text (WebDAV's XML markup taken away)."""
        text = re.sub(r"<[^>]*>", " ", self.owner.decode(errors="replace"))
        return " ".join(text.split())[:200]

    def who(self) -> str:
        """``alice`` or ``alice (Finder)``: the user, and the client's owner text."""
        note = self.owner_text()
        return f"{self.principal} ({note})" if note and note != self.principal else self.principal

    def until(self) -> str:
        """When the lock expires, in UTC."""
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.expire))

    def row(self) -> dict[str, object]:
        """The lock as JSON for listings (no token: it would let the reader write)."""
        return {
            "id": self.id, "path": self.path, "user": self.principal, "owner": self.owner_text(),
            "depth": self.depth, "scope": self.scope, "expires": round(self.expire, 3),
        }  # fmt: skip


class Locked(PermissionError):
    """A change refused because a lock the request does not hold covers it (EACCES,
    with a text naming the lock, its owner and its expiry)."""

    def __init__(self, shown: str, lock: Lock) -> None:
        super().__init__(
            errno.EACCES,
            f"{shown} is locked by {lock.who()} until {lock.until()} (lock {lock.id})",
            shown,
        )
        self.lock = lock


class TooManyLocks(OSError):
    """A lock refused: its user, or the server, holds too many (ENOLCK)."""

    def __init__(self, text: str) -> None:
        super().__init__(errno.ENOLCK, text)


_TOKEN = re.compile(r"<([^<>\s]+)>")


def brought_tokens(if_header: str, lock_token: str = "") -> frozenset[str]:
    """The lock tokens an HTTP request brings: each ``<…>`` of its ``If`` header (a
    resource tag among them matches no lock), and its ``Lock-Token`` header."""
    found = set(_TOKEN.findall(if_header))
    if lock_token.strip():
        found.add(lock_token.strip().strip("<>"))
    return frozenset(found)


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _below(path: str) -> str:
    """The prefix of every path below ``path``."""
    return path if path == "/" else path + "/"


class LockTable:
    """The locks of the served root (in memory, written through to ``db_path``)."""

    def __init__(self, db_path: Path | None, per_user: int = PER_USER, total: int = TOTAL) -> None:
        self._db_path = db_path
        self.per_user = per_user
        self.total = total
        self._db: sqlite3.Connection | None = None
        self._mutex = threading.RLock()
        self._locks: dict[str, Lock] = {}  # token → lock
        self._at: dict[str, list[Lock]] = {}  # path → its locks
        self._paths: list[str] = []  # the locked paths, sorted (for the locks below one)
        self._held: Counter[str] = Counter()  # locks per user

    def __bool__(self) -> bool:
        """Whether any lock is held: the fast path of every check."""
        return bool(self._locks)

    def open(self) -> None:
        """Load the locks that have not expired (again: nothing)."""
        with self._mutex:
            if self._db is not None or self._db_path is None:
                return
            db = sqlite3.connect(self._db_path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS locks (token TEXT PRIMARY KEY, owner BLOB, lock TEXT)"
            )
            now = time.time()
            for token, owner, text in db.execute("SELECT token, owner, lock FROM locks").fetchall():
                fields = json.loads(text)
                if "path" not in fields or float(fields["expire"]) < now:
                    # (expired, or kept by a version whose locks were WebDAV's alone)
                    db.execute("DELETE FROM locks WHERE token = ?", (token,))
                    continue
                fields.pop("token", None)
                self._add(Lock(token=token, owner=bytes(owner), **fields))
            self._db = db

    def close(self) -> None:
        """Close the database."""
        with self._mutex:
            if self._db is not None:
                self._db.close()
                self._db = None

    def create(
        self,
        path: str,
        *,
        principal: str,
        depth: str = "0",
        scope: str = "exclusive",
        owner: bytes = b"",
        timeout: float | None = None,
    ) -> Lock:
        """A new lock on ``path`` (the caller checked conflicts); ``TooManyLocks`` when
        its user, or the server, holds too many already."""
        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        elif timeout < 0 or timeout > MAX_TIMEOUT:
            timeout = MAX_TIMEOUT
        with self._mutex:
            if self._held[principal] >= self.per_user or len(self._locks) >= self.total:
                self._purge_expired()
            if self._held[principal] >= self.per_user:
                raise TooManyLocks(
                    f"too many locks: user {principal} holds {self.per_user}, the most one "
                    "user may; unlock some (or wait for them to expire)"
                )
            if len(self._locks) >= self.total:
                raise TooManyLocks(
                    f"too many locks: the server holds {self.total}, the most it keeps"
                )
            lock = Lock(
                token=f"opaquelocktoken:{uuid.uuid4()}", path=path, principal=principal,
                depth=depth, scope=scope, owner=owner, timeout=timeout,
                expire=time.time() + timeout,
            )  # fmt: skip
            self._add(lock)
            self._write(lock)
            return lock

    def get(self, token: str) -> Lock | None:
        """The live lock of ``token`` (an expired one is removed: None)."""
        with self._mutex:
            lock = self._locks.get(token)
            if lock is not None and not lock.live(time.time()):
                self.delete(token)
                return None
            return lock

    def by_id(self, lock_id: str) -> Lock | None:
        """The live lock an administrator names by its id."""
        with self._mutex:
            found = [lock for lock in self._locks.values() if lock.id == lock_id]
        return self.get(found[0].token) if found else None

    def refresh(self, token: str, timeout: float) -> Lock:
        """Give a lock a new timeout (KeyError when there is no such lock)."""
        if timeout < 0 or timeout > MAX_TIMEOUT:
            timeout = MAX_TIMEOUT
        with self._mutex:
            lock = self._locks[token]
            lock.timeout, lock.expire = timeout, time.time() + timeout
            self._write(lock)
            return lock

    def delete(self, token: str) -> bool:
        """Remove a lock (False when there is none)."""
        with self._mutex:
            lock = self._locks.pop(token, None)
            if lock is None:
                return False
            here = self._at[lock.path]
            here.remove(lock)
            if not here:
                del self._at[lock.path]
                del self._paths[bisect.bisect_left(self._paths, lock.path)]
            self._held[lock.principal] -= 1
            if self._held[lock.principal] <= 0:
                del self._held[lock.principal]
            if self._db is not None:
                self._db.execute("DELETE FROM locks WHERE token = ?", (token,))
            return True

    def clear(self) -> None:
        """Remove every lock."""
        with self._mutex:
            for token in list(self._locks):
                self.delete(token)

    def locks(self) -> list[Lock]:
        """Every live lock, by path."""
        now = time.time()
        with self._mutex:
            return [lock for path in self._paths for lock in self._at[path] if lock.live(now)]

    def on(self, path: str, *, root: bool = True, below: bool = False) -> list[Lock]:
        """The live locks on ``path`` (``root``) and below it (``below``)."""
        if not self._locks:
            return []
        now = time.time()
        with self._mutex:
            found = list(self._at.get(path, ())) if root else []
            if below:
                found += [lock for each in self._paths_below(path) for lock in self._at[each]]
            return [lock for lock in found if lock.live(now)]

    def principals(self) -> list[str]:
        """The users holding locks now."""
        with self._mutex:
            return list(self._held)

    def drop_principal(self, principal: str) -> int:
        """Remove every lock ``principal`` holds (a user who is gone); how many."""
        with self._mutex:
            held = [lock.token for lock in self._locks.values() if lock.principal == principal]
            return sum(self.delete(token) for token in held)

    def forget(self, path: str) -> int:
        """Remove the locks on ``path`` and below it: the resource is gone (removed, or
        moved away: RFC 4918 moves no lock with its resource); how many."""
        if not self._locks:
            return 0
        with self._mutex:
            gone = [lock.token for lock in self.on(path, below=True)]
            return sum(self.delete(token) for token in gone)

    def check(
        self,
        path: str,
        principal: str,
        tokens: Collection[str],
        *,
        member: bool = False,
        tree: bool = False,
        shown: str | None = None,
    ) -> None:
        """``Locked`` unless the change of ``path`` (``member``: of its folder's members,
        ``tree``: of everything below it) is free of locks, or covered only by locks
        whose tokens ``principal`` brings. ``shown`` is the path the asker knows."""
        if not self._locks:
            return
        now = time.time()
        with self._mutex:
            covering = list(self._at.get(path, ()))
            folder, first = path, True
            while folder != "/":
                folder = _parent(folder)
                covering += [
                    lock
                    for lock in self._at.get(folder, ())
                    if lock.depth == "infinity" or (member and first)
                ]
                first = False
            if tree:
                covering += [lock for each in self._paths_below(path) for lock in self._at[each]]
        covering = [lock for lock in covering if lock.live(now)]
        held = {
            lock.path for lock in covering if lock.token in tokens and lock.principal == principal
        }
        for lock in covering:
            # (a shared lock gives way to the holder of another shared lock on its path)
            if lock.path not in held or lock.scope == "exclusive" and lock.token not in tokens:
                raise Locked(shown or path, lock)

    def _paths_below(self, path: str) -> list[str]:
        prefix = _below(path)
        start = bisect.bisect_left(self._paths, prefix)
        end = bisect.bisect_left(self._paths, prefix[:-1] + chr(ord(prefix[-1]) + 1))
        return [each for each in self._paths[start:end] if each != path]

    def _add(self, lock: Lock) -> None:
        self._locks[lock.token] = lock
        if lock.path not in self._at:
            self._at[lock.path] = []
            bisect.insort(self._paths, lock.path)
        self._at[lock.path].append(lock)
        self._held[lock.principal] += 1

    def _purge_expired(self) -> None:
        now = time.time()
        for token in [lock.token for lock in self._locks.values() if not lock.live(now)]:
            self.delete(token)

    def _write(self, lock: Lock) -> None:
        if self._db is not None:
            fields = {name: value for name, value in asdict(lock).items() if name != "owner"}
            self._db.execute(
                "INSERT OR REPLACE INTO locks (token, owner, lock) VALUES (?, ?, ?)",
                (lock.token, lock.owner, json.dumps(fields)),
            )
