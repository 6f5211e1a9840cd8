"""The hidden temp files of uploads in flight: their names, which are alive, and the
journal that finds the ones a killed server left behind.

An upload (``vfs.AtomicFile``) writes ``.<name>.hoody-<12 hex>.part`` in the target's
folder and renames it into place when complete. Listings never show such names, so a
temp file left by a server killed mid-upload would stay forever and keep its folder
from ever being removed. Two things clean them:

- The journal: one append-only file in the state folder's ``uploads/`` noting each
  upload in flight (the temp name's random part and the temp file's path on the
  host) when it starts, and its end. At start, whatever the journal still lists as
  started and not ended is a leftover of a server that stopped without ending those
  uploads: it is removed, and so is the journal.
- A folder whose only members are temp files of no live upload of this process can be
  removed (``VFS.rmdir``): such members are leftovers too. (This is the only cleaner
  of a folder deeper than PATH_MAX, which has no path for the journal to note.)

A live upload's temp file is never touched: this process knows its own by name (random
48 bits), and the journal is swept before anything is served.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import threading
from pathlib import Path

log = logging.getLogger("hoody_mount.uploads")

MARK = ".hoody-"
_NAME = re.compile(r"\..+\.hoody-([0-9a-f]{12})\.part", re.DOTALL)  # (names may hold a newline)
_live: set[str] = set()
_lock = threading.Lock()
_journal: Journal | None = None


def new_name(target: str) -> str:
    """A fresh temp name beside ``target`` (cut to 200 bytes, so 255 in all)."""
    stem = os.fsencode(target)[:200].decode("utf-8", "ignore") or "upload"
    return f".{stem}{MARK}{secrets.token_hex(6)}.part"


def is_temp(name: str) -> bool:
    """Whether a name is an upload's temp file (live or left over)."""
    return name.startswith(".") and name.endswith(".part") and bool(_NAME.fullmatch(name))


def is_live(name: str) -> bool:
    """Whether the temp file ``name`` belongs to an upload of this process in flight."""
    with _lock:
        return name in _live


def started(name: str, dir_fd: int) -> None:
    """An upload began writing the temp file ``name`` in the folder ``dir_fd``."""
    with _lock:
        _live.add(name)
    journal = _journal
    if journal is not None:
        journal.record(name, dir_fd)


def ended(name: str) -> None:
    """The upload of ``name`` was committed or thrown away."""
    with _lock:
        _live.discard(name)
    journal = _journal
    if journal is not None:
        journal.forget(name)


def use_journal(journal: Journal | None) -> None:
    """Keep (or stop keeping) a journal of the uploads in flight."""
    global _journal
    _journal = journal


class Journal:
    """The uploads in flight, as lines of one append-only file in ``folder`` (see the
    module): ``+<id> <hex of the temp file's host path>`` when an upload starts and
    ``-<id>`` when it ends, ``id`` being the temp name's random part. Two small writes
    per upload and no folder changes (a file per upload, made and removed, cost a PUT
    more CPU than its own fsyncs). When no noted upload is in flight the file is
    emptied; when it grows past ``COMPACT_AT`` with uploads always in flight it is
    rewritten (beside it, then renamed over it) with only the live ones."""

    FILE = "journal"
    COMPACT_AT = 1 << 20

    def __init__(self, folder: Path) -> None:
        folder.mkdir(mode=0o700, exist_ok=True)
        self.folder = folder
        self._lock = threading.Lock()
        self._fd = -1  # the journal file, opened at the first upload
        self._noted: dict[str, bytes] = {}  # id -> its line
        self._size = 0  # of the journal file

    def _id(self, name: str) -> str | None:
        match = _NAME.fullmatch(name)
        return match.group(1) if match else None

    def record(self, name: str, dir_fd: int) -> None:
        """Note the temp file ``name`` in folder ``dir_fd`` (a failure only logs: the
        upload itself goes on; a leftover of it would then wait for its folder's rmdir)."""
        key = self._id(name)
        if key is None:
            return
        try:
            where = os.readlink(f"/proc/self/fd/{dir_fd}").encode("utf-8", "surrogateescape")
            line = f"+{key} ".encode() + (where + b"/" + os.fsencode(name)).hex().encode() + b"\n"
            with self._lock:
                if self._fd < 0:
                    self._fd = self._open(os.O_APPEND)
                self._size += os.write(self._fd, line)
                self._noted[key] = line
        except OSError as exc:
            # A folder deeper than PATH_MAX has no path to note (a tree copy reaches
            # such depths): expected, so not worth a warning per file.
            level = logging.DEBUG if exc.errno == errno.ENAMETOOLONG else logging.WARNING
            log.log(level, "cannot note the upload %s in %s: %s", name, self.folder, exc.strerror)

    def forget(self, name: str) -> None:
        """Drop the note of ``name`` (after ``close``, at shutdown, the note stays for
        the next start's sweep, which finds nothing left of an upload that ended)."""
        key = self._id(name)
        try:
            with self._lock:
                if self._fd < 0 or key is None or self._noted.pop(key, None) is None:
                    return
                if not self._noted:
                    os.ftruncate(self._fd, 0)  # (appends go on from the new end)
                    self._size = 0
                    return
                self._size += os.write(self._fd, f"-{key}\n".encode())
                if self._size > self.COMPACT_AT:
                    self._compact()
        except OSError as exc:
            log.warning("cannot drop the note of the upload %s: %s", name, exc.strerror)

    def _open(self, flag: int, name: str = FILE) -> int:
        return os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | flag, 0o600)

    def _compact(self) -> None:
        """Rewrite the journal with the live notes only (called with the lock held)."""
        fd = self._open(os.O_TRUNC | os.O_APPEND, self.FILE + ".new")
        try:
            self._size = os.write(fd, b"".join(self._noted.values()))
            os.rename(self.folder / (self.FILE + ".new"), self.folder / self.FILE)
        except BaseException:
            os.close(fd)
            raise
        os.close(self._fd)
        self._fd = fd

    def close(self) -> None:
        """Close the journal file (its notes stay for the next start's sweep)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def sweep(self) -> int:
        """Remove the temp files the journal still lists (uploads a stopped server never
        ended), and the journal; how many temp files were removed. (Also reads the
        file-per-upload notes of earlier versions: one file named by the id, holding
        the path.)"""
        paths: list[bytes] = []
        for entry in sorted(self.folder.iterdir()):
            try:
                if entry.name in (self.FILE, self.FILE + ".new"):
                    paths += _pending(entry.read_bytes())
                elif re.fullmatch(r"[0-9a-f]{12}", entry.name):
                    paths.append(entry.read_bytes())
            except OSError as exc:
                log.warning("cannot read the upload journal %s: %s", entry, exc.strerror)
        removed = 0
        for path in dict.fromkeys(paths):
            try:
                if is_temp(os.fsdecode(os.path.basename(path))):
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove the leftover upload %r: %s", path, exc.strerror)
        for entry in self.folder.iterdir():
            if entry.name in (self.FILE, self.FILE + ".new") or re.fullmatch(
                r"[0-9a-f]{12}", entry.name
            ):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
        return removed


def _pending(text: bytes) -> list[bytes]:
    """The paths of the uploads a journal's lines start and never end (a line cut by a
    crash, or not of the journal's form, is skipped)."""
    pending: dict[bytes, bytes] = {}
    for line in text.split(b"\n"):
        key, _, rest = line[1:].partition(b" ")
        if line[:1] == b"+" and len(key) == 12:
            with contextlib.suppress(ValueError):
                pending[key] = bytes.fromhex(rest.decode("ascii", "replace"))
        elif line[:1] == b"-":
            pending.pop(line[1:], None)
    return list(pending.values())
