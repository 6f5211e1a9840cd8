"""A folder's whole tree read one entry at a time, for an archive: folders as they are
entered, files opened only when asked for, links and special files named, never followed.

A ``TreeRead`` goes down by folder fds, one name at a time (as ``trees`` and
``disk_usage`` do): it holds two fds whatever the depth, leaves a folder for its parent
through ``..`` checked by identity, and lists each folder with ``Listing`` (the server's
own files and uploads in flight are left out). A folder is read a batch at a time and
its place kept (``Listing.position``), so at most a batch of names per level of depth
waits in memory, whatever the folder's size; the listing is closed while the caller
handles an entry. Another filesystem below is entered, except pseudo ones (``/proc``);
a folder met twice on one way down (a bind mount of a folder above) is not entered
again. What cannot be read is given as an entry of the kind ``ERROR``, and the walk
goes on.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import syscalls
from .dirfds import DIR_READ, descend_from, fs_type, swap
from .listing import Entry, Listing
from .mounts import PSEUDO
from .open_files import OpenFile
from .reserved import Identity, Reserved, identity

BATCH = 256  # names read from a folder at once

FOLDER, FILE, LINK, OTHER, ERROR = "folder", "file", "link", "other", "error"


@dataclass(frozen=True, slots=True)
class Item:
    """One entry of the tree: its path below the top ("" for the top itself, names
    joined with "/"), its kind, its lstat (None for an error), a link's target or an
    error's reason in ``detail``."""

    path: str
    kind: str
    stat: os.stat_result | None = None
    detail: str = ""


@dataclass(slots=True)
class _Level:
    """A folder on the way down: where its listing stands, and its subfolders of the
    last batch, still to enter."""

    position: int = 0
    ended: bool = False
    waiting: list[str] = field(default_factory=list)


def _item(path: str, entry: Entry) -> Item:
    """The item of a listed name that is no folder."""
    mode = entry.stat.st_mode
    if stat.S_ISREG(mode):
        return Item(path, FILE, entry.stat)
    if stat.S_ISLNK(mode):
        return Item(path, LINK, entry.stat, entry.link_target or "")
    return Item(path, OTHER, entry.stat)


class TreeRead:
    """The tree below the folder ``fd`` (owned by the read), as ``items``."""

    def __init__(self, fd: int, path: str, reserved: Reserved | None) -> None:
        self.path = path
        self._top = fd
        self._fd = os.dup(fd)
        self._reserved = reserved
        self._trail: list[str] = []  # names from the top to the folder being read
        self._keys: list[Identity] = [identity(os.fstat(fd))]  # their identities

    def pseudo(self) -> bool:
        """Whether the top folder lies on a pseudo filesystem (``/proc``): no storage
        to read, and never a tree to archive."""
        return fs_type(self._top) in PSEUDO

    def _where(self, name: str = "") -> str:
        return "/".join([*self._trail, name]) if name else "/".join(self._trail)

    def items(self) -> Iterator[Item]:
        """Every entry, a folder before what it holds. While the caller holds a
        ``FILE`` item, ``open`` opens it."""
        yield Item("", FOLDER, os.fstat(self._fd))
        levels = [_Level()]
        while levels:
            level = levels[-1]
            if level.waiting:
                name = level.waiting.pop(0)
                entered = self._enter(name)
                if entered.kind == FOLDER:
                    levels.append(_Level())
                yield entered
                continue
            if not level.ended:
                try:
                    batch = self._batch(level)
                except OSError as exc:
                    level.ended = True
                    yield Item(self._where(), ERROR, detail=exc.strerror or str(exc))
                    continue
                for entry in batch:
                    if stat.S_ISDIR(entry.stat.st_mode):
                        level.waiting.append(entry.name)  # (its item comes once entered)
                    else:
                        yield _item(self._where(entry.name), entry)
                continue
            levels.pop()
            if levels:
                try:
                    self._leave()
                except OSError as exc:  # (moved away meanwhile: nowhere to go on from)
                    yield Item(self._where(), ERROR, detail=exc.strerror or str(exc))
                    return

    def _batch(self, level: _Level) -> list[Entry]:
        """The next names of the folder being read, from where its listing stopped."""
        listing = Listing(
            os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self._fd),
            self._reserved,
            position=level.position,
        )
        try:
            batch = listing.read(BATCH)
            level.position = listing.position
        finally:
            listing.close()
        level.ended = not batch
        return batch

    def _enter(self, name: str) -> Item:
        """Go down into the subfolder ``name``: its item, or why it was not entered."""
        path = self._where(name)
        try:
            below = os.open(name, DIR_READ, dir_fd=self._fd)
        except FileNotFoundError:
            return Item(path, ERROR, detail="removed while the tree was read")
        except OSError as exc:
            return Item(path, ERROR, detail=exc.strerror or str(exc))
        try:
            here = os.fstat(below)
            if identity(here) in self._keys:
                raise OSError(errno.ELOOP, "the folder holds itself (a bind mount above)")
            if here.st_dev != os.fstat(self._fd).st_dev and fs_type(below) in PSEUDO:
                raise OSError(errno.EXDEV, "a pseudo filesystem (its files are no storage)")
            if self._reserved is not None:
                self._reserved.check_name(here, change=False)  # (put there since)
        except OSError as exc:
            os.close(below)
            return Item(path, ERROR, detail=exc.strerror or str(exc))
        self._fd = swap(self._fd, below)
        self._trail.append(name)
        self._keys.append(identity(here))
        return Item(path, FOLDER, here)

    def _leave(self) -> None:
        """Back to the folder above, through ``..`` if it is still the one the walk came
        from, else by name from the top (the folder was moved meanwhile)."""
        self._trail.pop()
        self._keys.pop()
        up = os.open("..", DIR_READ, dir_fd=self._fd)
        if identity(os.fstat(up)) != self._keys[-1]:
            os.close(up)
            up = descend_from(self._top, self._trail, DIR_READ)
            if identity(os.fstat(up)) != self._keys[-1]:
                os.close(up)
                raise OSError(errno.ENOENT, "a folder was moved while the tree was read")
        self._fd = swap(self._fd, up)

    def open(self, item: Item) -> OpenFile:
        """Open the ``FILE`` item just given, for reading: reached without following a
        link and opened only if it is still a regular file and none of the server's."""
        name = item.path.rpartition("/")[2]
        pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._fd)
        try:
            st = os.fstat(pfd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.ENXIO, "no longer a regular file", item.path)
            if self._reserved is not None:
                self._reserved.check_name(st, change=False)
            fd = os.open(syscalls.proc_link(pfd), os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(pfd)
        return OpenFile(fd, f"{self.path.rstrip('/')}/{item.path}")

    def close(self) -> None:
        """Release the read's fds (a second close does nothing)."""
        for fd in (self._fd, self._top):
            if fd >= 0:
                os.close(fd)
        self._fd = self._top = -1
