"""WebDAV dead properties: one SQLite row each, bounded per resource.

WsgiDAV's shelve store keeps one pickled dict per resource and, on ``dbm.dumb`` (all
this Python has), appends the whole dict again at every property written: one
PROPPATCH setting 4,000 properties on a new file grew the store by 1 GB, never to
shrink, and rewrote its index at each write. Here each property is one row of
``dav-props.sqlite`` in the state folder (a PROPPATCH costs what its body holds), a
resource holds at most ``PER_RESOURCE`` properties (then 507 for the others, as RFC
4918 says), and trees are copied and moved with one statement each. The properties of
an older shelve are carried over once, at the first start.

The interface is WsgiDAV's property manager's (``get_properties``, ``write_property``,
...), called with ``ref_url`` keys: quoted share paths, folders ending in ``/``.
"""

from __future__ import annotations

import logging
import shelve
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wsgidav.dav_error import HTTP_INSUFFICIENT_STORAGE, DAVError

log = logging.getLogger("hoody_mount.dav")

FILE_NAME = "dav-props.sqlite"
OLD_SHELVE = "dav-props.shelve"  # WsgiDAV's store before (dbm adds .dat, .dir, .bak)
PER_RESOURCE = 1000  # dead properties of one file or folder


def _below(url: str) -> str:
    """The prefix of the keys of everything below ``url`` (a folder's or a file's)."""
    return url.rstrip("/") + "/"


class PropertyTable:
    """Dead properties by resource and name, in SQLite."""

    def __init__(self, path: Path, per_resource: int = PER_RESOURCE) -> None:
        self._path = path
        self.per_resource = per_resource
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS props "
            "(url TEXT, name TEXT, value BLOB, PRIMARY KEY (url, name))"
        )
        self._import_shelve(path.with_name(OLD_SHELVE))

    def __repr__(self) -> str:
        return f"PropertyTable({self._path})"

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- WsgiDAV's property manager -----------------------------------------------------

    def get_properties(self, norm_url: str, environ: Any = None) -> list[str]:
        """The names of the resource's dead properties."""
        with self._lock:
            rows = self._db.execute("SELECT name FROM props WHERE url = ?", (norm_url,))
            return [name for (name,) in rows.fetchall()]

    def get_property(self, norm_url: str, name: str, environ: Any = None) -> Any:
        """A property's value (the XML WsgiDAV stored), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM props WHERE url = ? AND name = ?", (norm_url, name)
            ).fetchone()
        return None if row is None else row[0]

    def write_property(
        self, norm_url: str, name: str, property_value: Any, dry_run: bool = False,
        environ: Any = None,
    ) -> None:  # fmt: skip
        """Set a property (507 when the resource holds ``per_resource`` others)."""
        with self._transaction() as db:
            known = db.execute(
                "SELECT 1 FROM props WHERE url = ? AND name = ?", (norm_url, name)
            ).fetchone()
            if known is None:
                (count,) = db.execute(
                    "SELECT count(*) FROM props WHERE url = ?", (norm_url,)
                ).fetchone()
                if count >= self.per_resource:
                    raise DAVError(
                        HTTP_INSUFFICIENT_STORAGE,
                        f"a file or folder holds at most {self.per_resource} properties",
                    )
            if not dry_run:
                db.execute(
                    "INSERT OR REPLACE INTO props (url, name, value) VALUES (?, ?, ?)",
                    (norm_url, name, property_value),
                )

    def remove_property(
        self, norm_url: str, name: str, dry_run: bool = False, environ: Any = None
    ) -> None:
        """Remove a property (one that is not there is no error)."""
        if not dry_run:
            with self._transaction() as db:
                db.execute("DELETE FROM props WHERE url = ? AND name = ?", (norm_url, name))

    def remove_properties(self, norm_url: str, environ: Any = None) -> None:
        """Remove every property of a resource."""
        with self._transaction() as db:
            db.execute("DELETE FROM props WHERE url = ?", (norm_url,))

    def copy_properties(self, src_url: str, dest_url: str, environ: Any = None) -> None:
        """Give ``dest_url`` the properties of ``src_url`` (in place of its own)."""
        with self._transaction() as db:
            db.execute("DELETE FROM props WHERE url = ?", (dest_url,))
            db.execute(
                "INSERT INTO props (url, name, value) SELECT ?, name, value FROM props "
                "WHERE url = ?",
                (dest_url, src_url),
            )

    def move_properties(
        self, src_url: str, dest_url: str, with_children: bool, environ: Any = None
    ) -> None:
        """Move the properties of ``src_url`` (and, ``with_children``, of everything
        below it) to ``dest_url``, in place of what was there."""
        with self._transaction() as db:
            for old, new in self._renamed(db, src_url, dest_url, with_children):
                db.execute("DELETE FROM props WHERE url = ?", (new,))
                db.execute("UPDATE props SET url = ? WHERE url = ?", (new, old))

    # -- trees --------------------------------------------------------------------------

    def copy_tree(
        self, src_url: str, dest_url: str, whole: bool, replaced: bool,
        exists: Callable[[str], bool],
    ) -> None:  # fmt: skip
        """The properties of a folder's COPY: those of a ``replaced`` destination tree
        are dropped, and those of the folder (``whole``: and of everything below it) are
        copied for the members the copy holds (``exists``: FIFOs are not copied)."""
        with self._transaction() as db:
            if replaced:
                db.execute(
                    "DELETE FROM props WHERE url = ? OR substr(url, 1, ?) = ?",
                    (dest_url, len(_below(dest_url)), _below(dest_url)),
                )
            for old, new in self._renamed(db, src_url, dest_url, whole):
                if old == src_url or exists(new):
                    db.execute(
                        "INSERT OR REPLACE INTO props (url, name, value) "
                        "SELECT ?, name, value FROM props WHERE url = ?",
                        (new, old),
                    )

    @staticmethod
    def _renamed(
        db: sqlite3.Connection, src_url: str, dest_url: str, children: bool
    ) -> list[tuple[str, str]]:
        """(old key, new key) of ``src_url`` and, with ``children``, of its members."""
        below = _below(src_url)
        if children:
            rows = db.execute(
                "SELECT DISTINCT url FROM props WHERE url = ? OR substr(url, 1, ?) = ?",
                (src_url, len(below), below),
            ).fetchall()
        else:
            rows = db.execute("SELECT DISTINCT url FROM props WHERE url = ?", (src_url,)).fetchall()
        return [(url, dest_url + url[len(src_url) :]) for (url,) in rows]

    # -- the shelve of earlier versions -------------------------------------------------

    def _import_shelve(self, old: Path) -> None:
        """Carry the properties of WsgiDAV's shelve over (once: the shelve's files are
        renamed ``*.imported`` after)."""
        parts = [old.with_name(old.name + suffix) for suffix in (".dat", ".dir", ".bak")]
        if not parts[0].exists():
            return
        count = 0
        with shelve.open(str(old), flag="r") as store, self._transaction() as db:
            for url in list(store.keys()):
                for name, value in dict(store[url]).items():
                    db.execute(
                        "INSERT OR REPLACE INTO props (url, name, value) VALUES (?, ?, ?)",
                        (url, name, value),
                    )
                    count += 1
        for part in parts:
            if part.exists():
                part.rename(part.with_name(part.name + ".imported"))
        log.info("carried %d WebDAV properties over from %s to %s", count, old, self._path)
