"""Consistent copies of live SQLite databases, and their restore, by SQLite's online
backup API, with every path SQLite opens resolved inside the jail.

SQLite opens files by path, and its ``-wal``, ``-shm`` and ``-journal`` files by the
database's path plus a suffix, so no fd can be handed to it. ``/proc/self/fd/N/name``
does not confine it: SQLite turns that into the folder's host path and follows a link
at ``name`` anywhere on the host. So SQLite runs on a thread of its own that first
gives itself a private root (``unshare(CLONE_FS)``, then ``chroot`` to the jail's fd):
every lookup that thread makes, SQLite's included, stays in the jail as
``RESOLVE_IN_ROOT`` keeps the VFS's, and the thread ends with the job. The database is
named by the user's own path; its last name must be the file itself (a link is ELOOP)
and the identity SQLite reaches is compared with the one the VFS checked, before and
after.

A snapshot (``snapshot``) is written into a temp file of the server's own folder
(``use_folder``), opened and unlinked before the copy starts, so it vanishes whatever
happens. In WAL mode the copy reads inside one read transaction: the database as of
that moment, and writers never wait. In rollback-journal mode each step of
``STEP_PAGES`` pages holds the shared lock for that step only, with a pause between
steps for writers; a write between steps makes SQLite start again, with steps eight
times as big each time (at last the whole database in one step, which a writer waits
for as for any reader), and a database that never settles within ``SETTLE_SECONDS`` is
``StillBusy``. A restore (``restore``)
checks an uploaded database (``PRAGMA integrity_check``) and copies it into the live
one in a single write transaction: the file keeps its inode, and its users see the old
content or the new one.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import secrets
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from .reserved import identity
from .user_slots import UserSlots

HEADER = b"SQLite format 3\0"
STEP_PAGES = 256  # pages a backup step copies while it holds the source's shared lock
STEP_PAUSE = 0.002  # seconds between steps of a rollback-journal copy: writers get in
SETTLE_SECONDS = 30.0  # how long a copy or restore may keep starting again or waiting
BLOCK = 1 << 20
_PREFIX = "hoody-sqlite-"
_CLONE_FS = 0x200
_libc = ctypes.CDLL(None, use_errno=True)
_folder = Path(tempfile.gettempdir())

T = TypeVar("T")
Stop = Callable[[], bool]


class NotADatabase(OSError):
    """The file named is no SQLite database (its header is not ``HEADER``)."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.EINVAL, "not an SQLite database", path)


class DamagedDatabase(OSError):
    """The file has an SQLite header, but SQLite finds it damaged (SQLITE_CORRUPT or
    SQLITE_NOTADB): no consistent copy of it can be made."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(errno.EINVAL, f"the database is damaged (SQLite: {why})", path)


class UnfitUpload(OSError):
    """An uploaded database that may not replace anything: no SQLite file, or one that
    fails its integrity check."""

    def __init__(self, why: str) -> None:
        super().__init__(errno.EINVAL, why)


class StillBusy(OSError):
    """The database kept changing (or stayed locked) for ``SETTLE_SECONDS``."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(
            errno.EBUSY,
            f"the database {what} for {SETTLE_SECONDS:.0f} s; try again when it is quieter",
            path,
        )


class TooManyCopies(StillBusy):
    """A user holds ``COPIES_PER_USER`` copies being sent already: each takes the
    database's size on the server's disk until its answer ends."""

    def __init__(self, path: str) -> None:
        OSError.__init__(
            self,
            errno.EBUSY,
            f"you already have {COPIES_PER_USER} database copies being sent; "
            "try again when one ends",
            path,
        )


COPIES_PER_USER = 2
COPIES = UserSlots(COPIES_PER_USER)  # the copies each user holds (every front's)


def use_folder(folder: Path) -> None:
    """Make temp files in ``folder`` (made 0700 if missing; leftovers of a killed
    server removed)."""
    global _folder
    folder.mkdir(mode=0o700, exist_ok=True)
    for name in os.listdir(folder):
        if name.startswith(_PREFIX):
            os.unlink(folder / name)
    _folder = folder


def is_database(fd: int) -> bool:
    """Whether the file open as ``fd`` starts with SQLite's header."""
    return os.pread(fd, len(HEADER), 0) == HEADER


class Snapshot:
    """A finished copy: an unlinked temp file, its size, SHA-256 and moment (epoch seconds)."""

    def __init__(self, fd: int, digest: bytes, taken: float) -> None:
        self.released: Callable[[], None] = lambda: None  # (called once, at close)
        self.fd = fd
        self.size = os.fstat(fd).st_size
        self.sha256 = digest
        self.taken = taken

    def read(self, offset: int, size: int = BLOCK) -> bytes:
        """Bytes of the copy from ``offset`` (b"" at its end)."""
        return os.pread(self.fd, size, offset)

    def close(self) -> None:
        """Let the copy go (its space is freed)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.released()


class Upload:
    """An uploaded database on its way in: a temp file of the server's, named until
    SQLite has opened it, removed on ``close``."""

    def __init__(self) -> None:
        self.path, self.fd = _temp_file()
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size += len(data)

    def unlink(self) -> None:
        """Remove the name (the fd stays usable)."""
        if self.path:
            os.unlink(self.path)
            self.path = ""

    def close(self) -> None:
        """Remove the temp file."""
        try:
            self.unlink()
        finally:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


def _temp_file() -> tuple[str, int]:
    """A new temp file in the server's folder: its path and an fd open for reading and
    writing."""
    path = str(_folder / f"{_PREFIX}{secrets.token_hex(8)}")
    return path, os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


def _uri(path: str, mode: str, immutable: bool = False) -> str:
    """SQLite's URI of a path (every byte a name may hold escaped)."""
    return f"file:{quote(os.fsencode(path))}?mode={mode}" + ("&immutable=1" if immutable else "")


def _jailed(root: int, job: Callable[[Callable[[], None]], T]) -> T:
    """Run ``job(enter)`` on a thread of its own and wait for it; ``enter()`` confines
    every path lookup of that thread to the folder ``root`` (the thread ends with the
    job, so the confinement goes with it)."""

    def enter() -> None:
        if _libc.unshare(_CLONE_FS) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"unshare(CLONE_FS): {os.strerror(code)}")
        os.fchdir(root)
        try:
            os.chroot(".")
        except PermissionError:
            raise OSError(
                errno.EPERM, "SQLite snapshots need the server to run as root (to chroot)"
            ) from None

    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(job(enter))
        except BaseException as exc:  # (handed to the caller's thread)
            failure.append(exc)

    thread = threading.Thread(target=run, name="hoody-sqlite", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


SIDE_FILES = ("-journal", "-wal", "-shm")


def _side_files_regular(path: str) -> None:
    """ENXIO when a file SQLite opens beside the database is no regular file: a FIFO
    there would hold the thread, and its worker, for good (SQLite itself refuses a link
    there)."""
    for suffix in SIDE_FILES:
        try:
            st = os.stat(path + suffix, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISLNK(st.st_mode):
            raise OSError(errno.ENXIO, f"its {suffix[1:]} file is not a regular file", path)


def _same(path: str, expected: os.stat_result) -> None:
    """ENOENT unless the jail's ``path`` (a link not followed) is still the file checked."""
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        now = None
    if now is None or identity(now) != identity(expected):
        raise OSError(errno.ENOENT, "the database was replaced while it was copied", path)


def _sqlite_error(exc: sqlite3.Error, path: str) -> OSError:
    """The core's error for a failure SQLite reports."""
    if "locked" in str(exc) or "busy" in str(exc):
        return StillBusy(path, "stayed locked")
    if "disk is full" in str(exc):
        return OSError(errno.ENOSPC, "no room left for the copy in the server's temp folder", path)
    if getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return DamagedDatabase(path, str(exc))
    return OSError(errno.EIO, f"SQLite: {exc}", path)


def snapshot(folder: int, name: str, expected: os.stat_result, stop: Stop) -> Snapshot:
    """A consistent copy of the database ``name`` in the held ``folder`` (whose file,
    checked by the VFS, has the stat ``expected``); ENOSPC when the server's folder
    cannot hold it, ``StillBusy``, ECANCELED once ``stop()`` is true."""
    path = "/" + name  # (SQLite's path, once its thread's root is the folder)
    root = folder

    def job(enter: Callable[[], None]) -> tuple[int, float]:
        name, fd = _temp_file()
        try:
            copy = sqlite3.connect(name, isolation_level=None, check_same_thread=False)
        except BaseException:
            os.unlink(name)
            os.close(fd)
            raise
        try:
            os.unlink(name)  # (SQLite keeps its fd; nothing is left whatever happens)
            copy.execute("PRAGMA journal_mode=MEMORY")  # (a copy begun again is rolled back)
            copy.execute("PRAGMA synchronous=OFF")
            enter()
            _side_files_regular(path)
            taken = _copy(path, expected, copy, fd, stop)
            copy.close()
            return fd, taken
        except sqlite3.Error as exc:
            copy.close()
            os.close(fd)
            raise _sqlite_error(exc, path) from None
        except BaseException:
            copy.close()
            os.close(fd)
            raise

    fd, taken = _jailed(root, job)
    try:
        hasher = hashlib.sha256()
        offset = 0
        while data := os.pread(fd, BLOCK, offset):
            hasher.update(data)
            offset += len(data)
        return Snapshot(fd, hasher.digest(), taken)
    except BaseException:
        os.close(fd)
        raise


def _copy(
    path: str, expected: os.stat_result, copy: sqlite3.Connection, fd: int, stop: Stop
) -> float:
    """Back the jail's database ``path`` up into ``copy`` (on the jailed thread); the
    moment the copy shows."""
    source = sqlite3.connect(_uri(path, "ro"), uri=True, isolation_level=None)
    try:
        _same(path, expected)
        wal = source.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        if wal:  # one read transaction: the database as of now, writers never wait
            source.execute("BEGIN")
            source.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        taken = time.time()
        page_size = source.execute("PRAGMA page_size").fetchone()[0]
        need = page_size * source.execute("PRAGMA page_count").fetchone()[0]
        room = os.fstatvfs(fd)
        if need > room.f_bavail * room.f_frsize:
            raise OSError(
                errno.ENOSPC,
                f"no room for a copy of {need} bytes in the server's temp folder "
                f"({room.f_bavail * room.f_frsize} bytes free)",
                path,
            )
        deadline = time.monotonic() + SETTLE_SECONDS
        pages = STEP_PAGES
        while True:
            try:
                _backup(source, copy, pages, wal, deadline, stop, path)
                break
            except _Restarted as restarted:  # (a write came between two steps)
                pages = -1 if pages * 8 >= restarted.total else pages * 8
        if not wal:
            taken = time.time()  # (no write came between the steps of the last pass)
        _same(path, expected)
        return taken
    finally:
        source.close()


class _Restarted(Exception):
    """A copy SQLite started again: the source changed between two of its steps."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        self.total = total


def _backup(
    source: sqlite3.Connection,
    copy: sqlite3.Connection,
    pages: int,
    wal: bool,
    deadline: float,
    stop: Stop,
    path: str,
) -> None:
    """One backup in steps of ``pages`` pages (-1: all in one), pausing between steps
    unless a read transaction holds the source still (``wal``); ``_Restarted`` when
    SQLite starts again, so that the caller takes bigger steps."""
    left: list[int] = []

    def progress(_status: int, remaining: int, total: int) -> None:
        if stop():
            raise OSError(errno.ECANCELED, "the client went away", path)
        if time.monotonic() > deadline:
            raise StillBusy(path, "kept changing")
        if left and remaining > left[-1]:
            raise _Restarted(total)
        left.append(remaining)
        if remaining and not wal:
            time.sleep(STEP_PAUSE)  # (writers take their turn between steps)

    source.backup(copy, pages=pages, progress=progress, sleep=STEP_PAUSE)


def restore(folder: int, name: str, expected: os.stat_result, upload: Upload, stop: Stop) -> None:
    """Replace the content of the live database ``name`` in the held ``folder`` with
    the uploaded one, in one write transaction (``UnfitUpload`` first if it is no sound
    SQLite database; ``StillBusy`` when the write lock never came)."""
    path = "/" + name  # (SQLite's path, once its thread's root is the folder)
    root = folder
    if not is_database(upload.fd):
        raise UnfitUpload("the upload is not an SQLite database")

    def job(enter: Callable[[], None]) -> None:
        try:
            source = sqlite3.connect(
                _uri(upload.path, "ro", immutable=True), uri=True, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise UnfitUpload(f"the upload cannot be opened by SQLite: {exc}") from None
        try:
            upload.unlink()
            try:
                verdict = source.execute("PRAGMA integrity_check").fetchall()
            except sqlite3.DatabaseError as exc:
                raise UnfitUpload(f"the upload is no sound SQLite database: {exc}") from None
            if verdict != [("ok",)]:
                first = str(verdict[0][0]) if verdict else "no answer"
                raise UnfitUpload(f"the upload fails SQLite's integrity check: {first}")
            enter()
            _side_files_regular(path)
            live = sqlite3.connect(_uri(path, "rw"), uri=True, isolation_level=None)
            try:
                _same(path, expected)
                deadline = time.monotonic() + SETTLE_SECONDS

                def progress(_status: int, _remaining: int, _total: int) -> None:
                    if stop():
                        raise OSError(errno.ECANCELED, "the client went away", path)
                    if time.monotonic() > deadline:
                        raise StillBusy(path, "stayed locked")

                source.backup(live, pages=-1, progress=progress, sleep=STEP_PAUSE)
            finally:
                live.close()
        except sqlite3.Error as exc:
            raise _sqlite_error(exc, path) from None
        finally:
            source.close()

    _jailed(root, job)


def checked(fd: int, st: os.stat_result, path: str) -> None:
    """Raise unless the file of O_PATH ``fd`` (with lstat ``st``) may be handed to
    SQLite: the database itself (not a link to it), regular, with SQLite's header."""
    if stat.S_ISLNK(st.st_mode):
        raise OSError(errno.ELOOP, "a symlink: name the database itself", path)
    if stat.S_ISDIR(st.st_mode):
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.ENXIO, "not a regular file", path)
    data = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if not is_database(data):
            raise NotADatabase(path)
    finally:
        os.close(data)
