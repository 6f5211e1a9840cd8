"""The server's own files, kept out of every user's reach by their identity.

The state folder (host keys, TLS key, tokens, lock and property stores, password hashes)
may lie inside the served tree: the container's layout keeps it in
``/hoody/storage/files``. ``Reserved`` knows it by its device and inode, held as an fd,
and the VFS asks it about every folder a lookup ends in or acts in:

- a folder that is the state folder, or lies below it, is refused (EACCES): walking up
  from the folder with ``..`` (the kernel's parent, so symlinks, bind mounts and ``..``
  tricks cannot alias it) meets the state folder's identity before the jail's root;
- a file of the state folder met elsewhere (a bind mount of one file, a hard link) is
  refused by its identity, the folder's files being read again when its times change;
- a listing leaves the state folder and such files out;
- the server's log file may be read but never changed, renamed, replaced or removed;
- a folder that holds any of these may not be renamed or removed as a tree.

Walking up costs a ``stat`` a level, so it is done only for objects on a device that
can hold a reserved folder (its own device and those of mounts below it).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

Identity = tuple[int, int]
_UP = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_HOP = 32  # levels walked up from one held folder
STATE_REFUSED = "Permission denied: the server's own state folder is not served"
LOG_REFUSED = "Permission denied: the server's own log file cannot be changed here"
HOLDS_REFUSED = "Permission denied: holds the server's own state or log files"


class ReservedError(PermissionError):
    """A request touched the server's own files (EACCES); the session logs a warning."""


def identity(st: os.stat_result) -> Identity:
    """A file's identity: its device and inode."""
    return st.st_dev, st.st_ino


def _mount_devices_below(folder: Path) -> set[int]:
    """Devices of the mounts whose mount point lies below ``folder`` (from procfs)."""
    top = os.fsencode(folder.resolve())
    found: set[int] = set()
    with open("/proc/self/mountinfo", "rb") as mounts:
        for line in mounts:
            fields = line.split()
            point = _unescape(fields[4])
            if point.startswith(top.rstrip(b"/") + b"/"):
                major, minor = (int(n) for n in fields[2].split(b":"))
                found.add(os.makedev(major, minor))
    return found


def _unescape(field: bytes) -> bytes:
    """A mountinfo path with its octal escapes (``\\040`` for a space) decoded."""
    out, i = bytearray(), 0
    while i < len(field):
        if field[i : i + 1] == b"\\" and field[i + 1 : i + 4].isdigit():
            out.append(int(field[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return bytes(out)


def walk_up(fd: int, key: Identity, stop: set[Identity] | frozenset[Identity]) -> Identity | None:
    """Go up from the folder ``fd`` (identity ``key``) through its parents (``..``, as
    the kernel sees them) to the first one in ``stop``; None if ``/`` comes first.

    One ``stat`` a level, of ``..``, ``../..`` and so on relative to a held folder
    (opening each parent took three system calls); every ``_HOP`` levels the walk holds
    the folder it reached, so the kernel's share stays small however deep the tree."""
    anchor, up, levels = fd, "..", 1
    try:
        while True:
            parent = identity(os.stat(up, dir_fd=anchor))
            if parent in stop:
                return parent
            if parent == key:  # ``/`` is its own parent
                return None
            key = parent
            if levels == _HOP:
                held = os.open(up, _UP, dir_fd=anchor)
                if anchor != fd:
                    os.close(anchor)
                anchor, up, levels = held, "..", 1
            else:
                up += "/.."
                levels += 1
    finally:
        if anchor != fd:
            os.close(anchor)


class Reserved:
    """The state folders no user may reach and the log files no user may change."""

    def __init__(self, folders: list[Path], files: list[Path]) -> None:
        self._fds: list[int] = []
        self.hidden: frozenset[Identity] = frozenset()
        self.read_only: frozenset[Identity] = frozenset()
        devices: set[int] = set()
        hidden: set[Identity] = set()
        self._folders: list[int] = []  # the state folders' fds
        self._files: tuple[tuple[tuple[int, int], ...], frozenset[Identity]] = ((), frozenset())
        for folder in _with_subfolders(folders):
            fd = os.open(folder, _UP)
            self._fds.append(fd)
            self._folders.append(fd)
            st = os.fstat(fd)
            hidden.add(identity(st))
            devices.add(st.st_dev)
            devices |= _mount_devices_below(folder)
        read_only: set[Identity] = set()
        for file in files:
            with open(file, "rb") as handle:
                read_only.add(identity(os.fstat(handle.fileno())))
            self._fds.append(os.open(file.parent, _UP))
        self.hidden, self.read_only = frozenset(hidden), frozenset(read_only)
        self.devices = frozenset(devices)

    def close(self) -> None:
        """Release the held folder fds."""
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def check_folder(self, fd: int, st: os.stat_result, top: Identity | None = None) -> None:
        """EACCES if the folder ``fd`` is, or lies below, a state folder; the walk up
        stops at ``top`` (the jail's root, which is known to lie outside them)."""
        key = identity(st)
        if key in self.hidden:
            raise ReservedError(errno.EACCES, STATE_REFUSED)
        if st.st_dev in self.devices and key != top:
            stop = self.hidden if top is None else self.hidden | {top}
            if walk_up(fd, key, stop) in self.hidden:
                raise ReservedError(errno.EACCES, STATE_REFUSED)

    def check_name(self, st: os.stat_result, change: bool) -> None:
        """EACCES for a state folder or a file in one (met elsewhere through a bind
        mount or a hard link), or for a change (``change``) to a log file."""
        key = identity(st)
        if key in self.hidden or (
            self.watches(st) and not stat.S_ISDIR(st.st_mode) and key in self.state_files()
        ):  # (a folder is never among the state files: no fstat of the folder for it)
            raise ReservedError(errno.EACCES, STATE_REFUSED)
        if change and key in self.read_only:
            raise ReservedError(errno.EACCES, LOG_REFUSED)

    def state_files(self) -> frozenset[Identity]:
        """The identities of the files in the state folders, read again whenever one of
        the folders changed (an fstat each: a rename into it changes its times). A file
        that goes between the listing and its stat is left out: the stores rename and
        remove their files all the time, and that ENOENT reached whichever user's
        lookup was checking (another user's files "vanished" while WebDAV properties
        were written)."""
        stamp = tuple((st.st_mtime_ns, st.st_ctime_ns) for st in map(os.fstat, self._folders))
        known, files = self._files
        if stamp == known:
            return files
        found: set[Identity] = set()
        for fd in self._folders:
            with os.scandir(f"/proc/self/fd/{fd}") as entries:
                for entry in entries:
                    try:
                        if not entry.is_dir(follow_symlinks=False):
                            found.add(identity(entry.stat(follow_symlinks=False)))
                    except FileNotFoundError:
                        continue
        self._files = (stamp, frozenset(found))
        return self._files[1]

    def listed(self, st: os.stat_result, files: frozenset[Identity]) -> bool:
        """Whether a listing may show an entry with this lstat (``files``: the state
        files, taken once for the listing's batch)."""
        key = identity(st)
        return key not in self.hidden and key not in files

    def held_in(self, folder: os.stat_result) -> bool:
        """Whether a state folder or a log file lies below ``folder`` (or is it)."""
        top = identity(folder)
        for fd in self._fds:
            key = identity(os.fstat(fd))
            if key == top or walk_up(fd, key, {top}) == top:
                return True
        return False

    def watches(self, st: os.stat_result) -> bool:
        """Whether an object with this stat may lie inside a state folder."""
        return st.st_dev in self.devices


def _with_subfolders(folders: list[Path]) -> list[Path]:
    """The state folders and every folder below them (no link followed): each is a
    state folder of its own, so a bind mount of one of them elsewhere, whose way up
    never meets the state folder, is known by its identity, and the files in it are
    among the state files."""
    found: list[Path] = []
    for folder in folders:
        found.append(folder)
        for top, names, _files in os.walk(folder):
            found.extend(Path(top) / n for n in names if not os.path.islink(Path(top) / n))
    return found


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it, both resolved (for the start-up
    notice only; the rule itself goes by identity)."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
