"""WebDAV dead properties: one SQLite row each, bounded per resource.

WsgiDAV's shelve store keeps one pickled dict per resource and, on ``dbm.dumb`` (all
this Python has), appends the whole dict again at every property written: one
PROPPATCH setting 4,000 properties on a new file grew the store by 1 GB, never to
shrink, and rewrote its index at each write. Here each property is one row of
``dav-props.sqlite`` in the state folder (a PROPPATCH costs what its body holds), a
resource holds at most ``PER_RESOURCE`` properties of ``RESOURCE_BYTES`` in all (then
507, as RFC 4918 says: a PROPPATCH sets all its properties or none), a name is at most
``NAME_LIMIT`` characters and a value must read back as XML (400 otherwise: a name
that XML cannot carry broke every later PROPFIND). Trees are copied and moved with one
statement each, and a folder's removal removes the properties below it. The
properties of an older shelve are carried over once, at the first start.

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

from wsgidav.dav_error import HTTP_BAD_REQUEST, HTTP_INSUFFICIENT_STORAGE, DAVError
from wsgidav.xml_tools import etree

from ..http_names import DAV_ROOT

log = logging.getLogger("hoody_mount.dav")

FILE_NAME = "dav-props.sqlite"
OLD_SHELVE = "dav-props.shelve"  # WsgiDAV's store before (dbm adds .dat, .dir, .bak)
PER_RESOURCE = 1000  # dead properties of one file or folder
RESOURCE_BYTES = 1 << 20  # their values' bytes in all (a PROPFIND holds them at once)
NAME_LIMIT = 1024  # characters of a property's name (namespace and local name)
_PENDING = "hoody.properties_pending"  # environ: names a PROPPATCH's dry run adds, bytes


def _readable(value: Any) -> bool:
    """Whether a stored value reads back as XML (as WsgiDAV reads it for a PROPFIND)."""
    try:
        etree.fromstring(value)
    except (etree.ParseError, ValueError, TypeError):
        return False
    return True


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
        # properties outside the share, on ``/``, were shown to every user
        self._db.execute(
            "DELETE FROM props WHERE url != ? AND substr(url, 1, ?) != ?",
            (DAV_ROOT, len(DAV_ROOT) + 1, DAV_ROOT + "/"),
        )

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
        """A property's value (the XML WsgiDAV stored), or None (also for one that does
        not read back as XML, stored before values were checked)."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM props WHERE url = ? AND name = ?", (norm_url, name)
            ).fetchone()
        return row[0] if row is not None and _readable(row[0]) else None

    def write_property(
        self, norm_url: str, name: str, property_value: Any, dry_run: bool = False,
        environ: Any = None,
    ) -> None:  # fmt: skip
        """Set a property: 400 for a name too long or a value that is no XML, 507 when
        the resource would hold more than ``per_resource`` properties or
        ``RESOURCE_BYTES`` of values. The dry run of a PROPPATCH counts the properties
        it adds as it goes (in the environ), so a PROPPATCH sets all or none."""
        if len(name) > NAME_LIMIT:
            raise DAVError(HTTP_BAD_REQUEST, f"property names are {NAME_LIMIT} characters at most")
        if not _readable(property_value):
            raise DAVError(HTTP_BAD_REQUEST, "this property cannot be stored as XML")
        pending: dict[str, tuple[set[str], int]] = (
            environ.setdefault(_PENDING, {}) if isinstance(environ, dict) else {}
        )
        added_names, added_bytes = pending.get(norm_url, (set(), 0))
        with self._transaction() as db:
            old = db.execute(
                "SELECT length(value) FROM props WHERE url = ? AND name = ?", (norm_url, name)
            ).fetchone()
            count, size = db.execute(
                "SELECT count(*), coalesce(sum(length(value)), 0) FROM props WHERE url = ?",
                (norm_url,),
            ).fetchone()
            if dry_run:
                count += len(added_names)
                size += added_bytes
            new = old is None and name not in added_names
            size += len(property_value) - (old[0] if old is not None else 0)
            if (new and count >= self.per_resource) or size > RESOURCE_BYTES:
                raise DAVError(
                    HTTP_INSUFFICIENT_STORAGE,
                    f"a file or folder holds at most {self.per_resource} properties, "
                    f"of {RESOURCE_BYTES >> 20} MiB in all",
                )
            if dry_run:
                pending[norm_url] = (added_names | {name}, added_bytes + len(property_value))
            else:
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
        """Remove every property of a resource, and of a folder (its key ends in ``/``)
        everything's below it: a folder goes as one tree, its members with it."""
        with self._transaction() as db:
            db.execute("DELETE FROM props WHERE url = ?", (norm_url,))
            if norm_url.endswith("/"):
                db.execute(
                    "DELETE FROM props WHERE substr(url, 1, ?) = ?", (len(norm_url), norm_url)
                )

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

    def keys_below(self, prefix: str, limit: int) -> frozenset[str] | None:
        """The keys holding properties that start with ``prefix`` (a folder's key, which
        ends in ``/``); None when there are more than ``limit``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT url FROM props WHERE url >= ? AND url < ? LIMIT ?",
                (prefix, prefix[:-1] + "0", limit + 1),  # ("0" follows "/")
            ).fetchall()
        return frozenset(url for (url,) in rows) if len(rows) <= limit else None

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
