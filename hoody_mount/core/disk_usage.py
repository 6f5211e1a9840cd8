"""What ``du`` says of a path: apparent bytes (``du -b``) and disk blocks (``du -k``),
every hard-linked file counted once, no link followed, within a time budget.

A ``Walk`` goes down the tree by folder fds, one name at a time (as ``trees`` does):
it holds two fds whatever the depth, leaves a folder for its parent through ``..``
checked by identity, and lists each folder with ``Listing`` (so the server's own
files and uploads in flight are left out, as every listing leaves them out). It is
resumable: ``run(deadline)`` goes on until the walk ends or the time is up, so a
caller can run it in slices. Other filesystems are entered, as du enters them, except
pseudo ones (``/proc``: its sizes are no storage). Folders that cannot be read are
skipped and named in ``errors``, as du warns and goes on.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import paths
from .dirfds import DIR_READ, descend_from, fs_type, swap
from .listing import Entry, Listing
from .mounts import PSEUDO
from .reserved import Identity, Reserved, identity

if TYPE_CHECKING:
    from .vfs import VFS

BATCH = 256  # names read between two looks at the clock
CACHE_SECONDS = 5.0
_CACHE_SIZE = 128

Stop = Callable[[], bool]


@dataclass(slots=True)
class Tally:
    """Sizes summed over a tree: apparent bytes, bytes of disk blocks, non-folders."""

    bytes: int = 0
    disk: int = 0
    files: int = 0

    def add(self, st: os.stat_result) -> None:
        self.bytes += st.st_size
        self.disk += st.st_blocks * 512
        if not stat.S_ISDIR(st.st_mode):
            self.files += 1


class Walk:
    """du of one path (``st``: its stat; ``fd``: its folder, owned by the walk, or None
    for anything else), counting into ``tally``; ``seen`` is shared by the walks of one
    command, so that a hard link met in two of them counts once."""

    def __init__(
        self,
        path: str,
        st: os.stat_result,
        fd: int | None,
        reserved: Reserved | None,
        seen: set[Identity],
    ) -> None:
        self.path = path
        self.tally = Tally()
        self.errors: list[tuple[str, str]] = []  # (path, why): skipped, as du warns
        self.done = fd is None
        self._reserved = reserved
        self._seen = seen
        self._top = fd
        self._fd = os.dup(fd) if fd is not None else -1
        self._trail: list[str] = []
        self._keys: list[Identity] = [identity(st)]
        self._waiting: list[list[str]] = [[]]
        self._listing: Listing | None = None
        if self._first_time(st):
            self.tally.add(st)
        if fd is not None:
            self._listing = Listing(os.dup(fd), reserved)

    def _first_time(self, st: os.stat_result) -> bool:
        """Whether this is the first meeting with ``st`` (only folders and files with
        more than one link are remembered, as du does)."""
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink < 2:
            return True
        key = identity(st)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def _where(self, name: str = "") -> str:
        return paths.join(self.path, "/".join([*self._trail, name])).rstrip("/") or "/"

    def run(self, deadline: float, stop: Stop = lambda: False) -> bool:
        """Go on until the walk ends (True) or the clock passes ``deadline`` or
        ``stop()`` says so (False)."""
        while not self.done:
            if time.monotonic() >= deadline or stop():
                return False
            try:
                self._step()
            except OSError as exc:
                self.errors.append((self._where(), exc.strerror or str(exc)))
                self.close()
        return True

    def _step(self) -> None:
        """One piece of the walk: a batch of names, a folder entered or left."""
        if self._listing is not None:
            try:
                batch = self._listing.read(BATCH)
            except OSError as exc:
                self.errors.append((self._where(), exc.strerror or str(exc)))
                batch = []
            if batch:
                self._count(batch)
                return
            self._listing.close()
            self._listing = None
            return
        if self._waiting[-1]:
            self._enter(self._waiting[-1].pop())
            return
        if not self._trail:
            self.close()
            return
        self._leave()

    def _count(self, batch: list[Entry]) -> None:
        here = os.fstat(self._fd).st_dev
        for entry in batch:
            st = entry.stat
            if not self._first_time(st):
                continue
            self.tally.add(st)
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != here and self._pseudo(entry.name):
                    continue
                self._waiting[-1].append(entry.name)

    def _pseudo(self, name: str) -> bool:
        """Whether the folder ``name`` (another filesystem) is a pseudo filesystem."""
        try:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._fd)
        except OSError:
            return True
        try:
            return fs_type(fd) in PSEUDO
        finally:
            os.close(fd)

    def _enter(self, name: str) -> None:
        try:
            below = os.open(name, DIR_READ, dir_fd=self._fd)
        except FileNotFoundError:
            return  # gone since it was listed
        except OSError as exc:
            self.errors.append((self._where(name), exc.strerror or str(exc)))
            return
        try:
            here = os.fstat(below)
            if self._reserved is not None:
                self._reserved.check_name(here, change=False)  # (put there since)
            listing = Listing(os.dup(below), self._reserved)
        except OSError as exc:
            os.close(below)
            self.errors.append((self._where(name), exc.strerror or str(exc)))
            return
        self._fd = swap(self._fd, below)
        self._trail.append(name)
        self._keys.append(identity(here))
        self._waiting.append([])
        self._listing = listing

    def _leave(self) -> None:
        """Back to the folder above, through ``..`` if it is still the one the walk came
        from, else by name from the top (the folder was moved meanwhile)."""
        self._trail.pop()
        self._keys.pop()
        self._waiting.pop()
        up = os.open("..", DIR_READ, dir_fd=self._fd)
        if identity(os.fstat(up)) != self._keys[-1]:
            os.close(up)
            assert self._top is not None
            up = descend_from(self._top, self._trail, DIR_READ)
            if identity(os.fstat(up)) != self._keys[-1]:
                os.close(up)
                raise OSError(errno.ENOENT, "a folder was moved during the walk")
        self._fd = swap(self._fd, up)

    def close(self) -> None:
        """End the walk and release its fds (``done`` is then true)."""
        self.done = True
        if self._listing is not None:
            self._listing.close()
            self._listing = None
        for fd in (self._fd, self._top):
            if fd is not None and fd >= 0:
                os.close(fd)
        self._fd, self._top = -1, None


@dataclass(frozen=True, slots=True)
class Member:
    """One member of the folder summed: its name, apparent bytes and files."""

    name: str
    bytes: int
    files: int


@dataclass(frozen=True, slots=True)
class Summary:
    """``du -sb PATH/*`` and ``du -sb PATH`` at once: ``total_bytes`` is the folder's
    own size with all its members; ``complete`` is false when the budget ran out."""

    path: str
    total_bytes: int
    entries: list[Member]
    complete: bool
    errors: list[tuple[str, str]] = field(default_factory=list)


class SummaryCache:
    """Summaries kept a few seconds, by jail and path (one user's links lead elsewhere
    than another's, so a key never serves two jails)."""

    def __init__(self, seconds: float = CACHE_SECONDS) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, str], tuple[float, Summary]] = {}

    def get(self, key: tuple[str, str]) -> Summary | None:
        with self._lock:
            kept = self._kept.get(key)
            if kept is None or time.monotonic() - kept[0] > self.seconds:
                return None
            return kept[1]

    def put(self, key: tuple[str, str], summary: Summary) -> None:
        with self._lock:
            now = time.monotonic()
            for old in [k for k, (t, _) in self._kept.items() if now - t > self.seconds]:
                del self._kept[old]
            if len(self._kept) >= _CACHE_SIZE:
                self._kept.pop(next(iter(self._kept)))
            self._kept[key] = (now, summary)


CACHE = SummaryCache()


def summarize(vfs: VFS, path: str, deadline: float, stop: Stop = lambda: False) -> Summary:
    """``du -sb`` of each member of the folder ``path`` (hidden names too, in the order
    of their names' bytes) and of the folder, until ``deadline`` (then ``complete`` is false
    and the members not reached are left out)."""
    listing = vfs.listdir(path)
    try:
        own = listing.folder()
        members: list[Entry] = []
        while batch := listing.read(1024):
            members.extend(batch)
            if time.monotonic() >= deadline:
                return Summary(path, own.st_size, [], False)
    finally:
        listing.close()
    members.sort(key=lambda e: os.fsencode(e.name))
    seen = {identity(own)}
    total, entries, errors, complete = own.st_size, [], [], True
    for entry in members:
        if time.monotonic() >= deadline or stop():
            complete = False
            break
        where = paths.join(path, entry.name)
        try:
            if stat.S_ISDIR(entry.stat.st_mode):
                walk = vfs.du_walk(where, False, seen)
            else:
                walk = Walk(where, entry.stat, None, vfs.reserved, seen)
        except FileNotFoundError:
            continue
        except OSError as exc:
            errors.append((where, exc.strerror or str(exc)))
            continue
        try:
            finished = walk.run(deadline, stop)
        finally:
            walk.close()
        entries.append(Member(entry.name, walk.tally.bytes, walk.tally.files))
        total += walk.tally.bytes
        errors.extend(walk.errors)
        if not finished:
            complete = False
            break
    return Summary(path, total, entries, complete, errors)
