"""The hidden temp files of uploads in flight: their names, which are alive, and the
journal that finds the ones a killed server left behind.

An upload (``vfs.AtomicFile``) writes ``.<name>.hoody-<12 hex>.part`` in the target's
folder and renames it into place when complete. Listings never show such names, so a
temp file left by a server killed mid-upload would stay forever and keep its folder
from ever being removed. Two things clean them:

- The journal: a file per upload in flight in the state folder's ``uploads/`` (named
  by the temp name's random part, holding the temp file's path on the host), made when
  the upload starts and removed when it ends. At start, whatever the journal still
  lists is a leftover of a server that stopped without ending those uploads: it is
  removed, with its journal entry.
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
_NAME = re.compile(r"\..+\.hoody-([0-9a-f]{12})\.part")
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
    """The uploads in flight, one small file each in ``folder`` (see the module)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(mode=0o700, exist_ok=True)
        self.folder = folder

    def _entry(self, name: str) -> Path | None:
        match = _NAME.fullmatch(name)
        return self.folder / match.group(1) if match else None

    def record(self, name: str, dir_fd: int) -> None:
        """Note the temp file ``name`` in folder ``dir_fd`` (a failure only logs: the
        upload itself goes on; a leftover of it would then wait for its folder's rmdir)."""
        entry = self._entry(name)
        if entry is None:
            return
        try:
            where = os.readlink(f"/proc/self/fd/{dir_fd}").encode("utf-8", "surrogateescape")
            fd = os.open(entry, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, where + b"/" + os.fsencode(name))
            finally:
                os.close(fd)
        except OSError as exc:
            # A folder deeper than PATH_MAX has no path to note (a tree copy reaches
            # such depths): expected, so not worth a warning per file.
            level = logging.DEBUG if exc.errno == errno.ENAMETOOLONG else logging.WARNING
            log.log(level, "cannot note the upload %s in %s: %s", name, self.folder, exc.strerror)

    def forget(self, name: str) -> None:
        """Drop the note of ``name``."""
        entry = self._entry(name)
        if entry is not None:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()

    def sweep(self) -> int:
        """Remove the temp files the journal still lists (uploads a stopped server never
        ended), and their notes; how many temp files were removed."""
        removed = 0
        for entry in sorted(self.folder.iterdir()):
            path = b""
            try:
                path = entry.read_bytes()
                if is_temp(os.fsdecode(os.path.basename(path))):
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove the leftover upload %r: %s", path, exc.strerror)
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        return removed
