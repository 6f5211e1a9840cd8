"""Path resolution inside the jail: the security-critical part of the VFS.

A ``Resolver`` holds an ``O_PATH`` fd of its root folder. Every path is resolved
beneath that fd by the kernel, with ``openat2(RESOLVE_IN_ROOT)`` or, on kernels without
it, a walk of ``O_NOFOLLOW`` opens relative to held folder fds that follows symlinks
itself, as a chroot would. Nothing is checked first and used later: each call resolves
and returns the fd it got. Operations on a name resolve the parent folder and act on
one plain name relative to it (``parent``), checked against the server's own files.
"""

from __future__ import annotations

import copy
import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from . import paths, syscalls
from .dirfds import DIR_STEP, descend_from, fs_type, reopen, swap
from .reserved import HOLDS_REFUSED, Identity, Reserved, ReservedError, identity

RESOLVE = syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS
_MAX_SYMLINK_HOPS = 40

# Filesystems whose stat never waits on a network: only there are cached lookups used.
_LOCAL_FS = {
    "ext2",
    "ext3",
    "ext4",
    "xfs",
    "btrfs",
    "f2fs",
    "bcachefs",
    "zfs",
    "tmpfs",
    "ramfs",
    "overlay",
}


# Filesystems that live in memory: no call on them waits for a disk or a server.
MEMORY_FS = {"tmpfs", "ramfs"}


LOOP_FREE_LIMIT = 1 << 20  # bytes of a file whose removal a loop view may make
LOOP_LISTED = 20 * 1024  # size of a tmpfs folder (20 a name) a loop view may list


class OffLoop(Exception):  # noqa: N818 - not an error: a request to move
    """A call made on an event loop (see ``Resolver.loop_view``) would leave the root's
    memory filesystem (another mount lies on the way): make it on a worker instead."""


# What an operation on a name does, for the reserved-files check (see ``Resolver.parent``).
READ, CHANGE, MOVE, UNCHECKED = "read", "change", "move", "unchecked"


class Resolver:
    """Resolves paths inside the folder ``root_fd``, by the kernel, for every call."""

    def __init__(
        self,
        root_fd: int,
        use_openat2: bool | None = None,
        reserved: Reserved | None = None,
        root_stat: os.stat_result | None = None,
    ) -> None:
        """``root_stat``: the root's fstat, when the caller has it (saves a call)."""
        self._root = root_fd
        self._openat2 = syscalls.openat2_works() if use_openat2 is None else use_openat2
        # The server's own files (see ``reserved``), and this root's identity, where a
        # check for them walking up from a folder stops.
        self._reserved = reserved
        if reserved is not None and root_stat is None:
            root_stat = os.fstat(root_fd)
        self._top: Identity | None = identity(root_stat) if root_stat and reserved else None
        # Cached lookups stay on the root's own mount (RESOLVE_NO_XDEV), and only a local
        # filesystem's stat is sure never to wait for a server. Found out when first
        # needed, so sessions that need none (an HTTP request) skip reading procfs.
        self._cached_lookups = self._openat2
        self._local_dev: int | None = -1  # -1: not yet known
        # A view for an event loop (``loop_view``): every lookup stays on the root's
        # own mount (RESOLVE_NO_XDEV), and one that would leave it raises ``OffLoop``.
        self._on_loop = False

    def loop_view(self) -> Self | None:
        """This jail for calls made on an event loop, or None if its root is not on a
        memory filesystem (or the kernel has no openat2). The view shares the root fd
        (never close it) and raises ``OffLoop`` where a lookup would cross into another
        mount (an NFS or FUSE mount below the tmpfs): nothing on it waits for a disk.
        Reads procfs once: call it when a session starts."""
        if not self._openat2 or fs_type(self._root) not in MEMORY_FS:
            return None
        view = copy.copy(self)
        view._on_loop = True
        return view

    def _stays(self, dfd: int, name: str) -> None:
        """On a loop view: ``OffLoop`` if the entry ``name`` of the folder ``dfd`` is
        another mount's root (acting on it would enter that filesystem)."""
        if not self._on_loop:
            return
        try:
            fd = syscalls.openat2(
                dfd, name, os.O_PATH | os.O_NOFOLLOW, 0,
                syscalls.RESOLVE_BENEATH | syscalls.RESOLVE_NO_XDEV,
            )  # fmt: skip
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise OffLoop(name) from None
            return  # (absent, or not beneath: the operation's own call says so)
        os.close(fd)

    def _small(self, dfd: int, name: str) -> None:
        """On a loop view: ``OffLoop`` if removing or replacing the entry ``name`` would
        free a large file (the kernel frees its pages in the call)."""
        if not self._on_loop:
            return
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except OSError:
            return  # (the operation's own call says what is wrong)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size > LOOP_FREE_LIMIT:
            raise OffLoop(name)

    def _open(self, path: str, flags: int, mode: int = 0) -> int:
        """Open ``path`` with symlinks resolved inside the root; return the fd.

        With reserved files, the last name is opened from its folder, which is checked
        first (a file's fd has no ``..`` to walk up from), and is checked itself.
        """
        return self._open_stat(path, flags, mode)[0]

    def _open_stat(self, path: str, flags: int, mode: int = 0) -> tuple[int, os.stat_result | None]:
        """``_open``, and the fd's fstat when its checks took one (else None)."""
        if self._reserved is None:
            return self._resolve(path, flags, mode), None
        try:
            return self._open_beside(path, flags, mode)
        except OSError as exc:
            exc.filename = path
            raise

    def _open_beside(self, path: str, flags: int, mode: int) -> tuple[int, os.stat_result]:
        """Open ``path`` through its parent folder, checked first; a link at the last
        name is followed by hand, its target resolved in the jail as the kernel would.
        The fd, and its fstat."""
        assert self._reserved is not None
        follow = not (flags & os.O_NOFOLLOW or (flags & os.O_CREAT and flags & os.O_EXCL))
        target = path
        for _ in range(_MAX_SYMLINK_HOPS + 1):
            parent, _sep, name = target.rpartition("/")
            if name in ("", ".", ".."):  # a folder (a link's target may end so)
                fd = self._resolve(target or "/", flags, mode)
                try:
                    st = os.fstat(fd)
                    self._reserved.check_folder(fd, st, self._top)
                except BaseException:
                    os.close(fd)
                    raise
                return fd, st
            pfd = self._resolve(parent or "/", os.O_PATH | os.O_DIRECTORY)
            try:
                self._reserved.check_folder(pfd, os.fstat(pfd), self._top)
                self._stays(pfd, name)
                opened = self._open_name(pfd, name, flags, mode, follow)
                if opened is not None:
                    return opened
                try:
                    link = os.readlink(name, dir_fd=pfd)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    # Not a link: the open's own error (ENOTDIR, ELOOP) stands.
                    again = self._open_name(pfd, name, flags, mode, follow=False)
                    assert again is not None
                    return again
            finally:
                os.close(pfd)
            target = link if link.startswith("/") else f"{parent}/{link}"
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)

    def _open_name(
        self, dfd: int, name: str, flags: int, mode: int, follow: bool
    ) -> tuple[int, os.stat_result] | None:
        """Open one name of a checked folder without following a link (the fd and its
        fstat); None if it may be a link to follow."""
        assert self._reserved is not None
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and follow:
                return None  # perhaps a link (O_NOFOLLOW, and O_DIRECTORY with it)
            raise
        try:
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode) and follow:
                os.close(fd)
                return None
            self._reserved.check_name(st, change=False)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def _resolve(self, path: str, flags: int, mode: int = 0, links: bool = True) -> int:
        """The kernel's lookup of ``path`` in the root: openat2 or the walk (without
        ``links``, a symlink anywhere in the path is ELOOP)."""
        try:
            if self._openat2:
                resolve = RESOLVE if links else RESOLVE | syscalls.RESOLVE_NO_SYMLINKS
                if self._on_loop:
                    resolve |= syscalls.RESOLVE_NO_XDEV
                return syscalls.openat2(self._root, paths.relative(path), flags, mode, resolve)
            return self._walk(path, flags, mode, links)
        except OSError as exc:
            if self._on_loop and exc.errno == errno.EXDEV:
                raise OffLoop(path) from None
            exc.filename = path
            raise

    def _walk(self, path: str, flags: int, mode: int, links: bool = True) -> int:
        """Resolve without openat2: one O_NOFOLLOW open per name, links followed by hand.

        Only the current folder's fd is held, with the names that lead to it from the
        root; ``..`` drops a name and walks down again from the root, so a deep path
        never holds more than two fds at once.
        """
        exclusive = flags & os.O_CREAT and flags & os.O_EXCL
        follow_last = not (flags & os.O_NOFOLLOW or exclusive)
        pending = [p for p in paths.relative(path).split("/") if p not in ("", ".")]
        pending.reverse()  # a stack: the next name is at the end
        trail: list[str] = []  # names from the root to the current folder
        current = os.dup(self._root)
        hops = 0
        try:
            while pending:
                name = pending.pop()
                last = not pending
                if name == "..":
                    if trail:
                        trail.pop()
                        current = swap(current, descend_from(self._root, trail, os.O_PATH))
                    continue
                if not last or follow_last:
                    try:
                        target = os.readlink(name, dir_fd=current)
                    except OSError as exc:
                        if exc.errno not in (errno.EINVAL, errno.ENOENT):
                            raise
                    else:
                        hops += 1
                        if hops > _MAX_SYMLINK_HOPS or not links:
                            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                        if target.startswith("/"):
                            trail.clear()
                            current = swap(current, os.dup(self._root))
                        pending.extend(
                            reversed([p for p in target.split("/") if p not in ("", ".")])
                        )
                        continue
                if last:
                    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=current)
                current = swap(current, os.open(name, DIR_STEP, dir_fd=current))
                trail.append(name)
            return reopen(current, flags)  # the path ended at a folder ("/", "..", a link)
        finally:
            os.close(current)

    @contextmanager
    def _fd(self, path: str, flags: int = os.O_PATH) -> Iterator[int]:
        fd = self._open(path, flags)
        try:
            yield fd
        finally:
            os.close(fd)

    @contextmanager
    def parent(
        self, path: str, what: str = "operate on", use: str = CHANGE
    ) -> Iterator[tuple[int, str]]:
        """The parent folder's fd and the last name of ``path``; the root has no name.

        With reserved files the name is checked for ``use``: READ (a state folder is
        refused), CHANGE (a log file too) or MOVE (also a folder that holds either).
        """
        parent, name = paths.split(path)
        if not name:
            raise OSError(errno.EBUSY, f"Cannot {what} the root folder", "/")
        with self._fd(parent, os.O_PATH | os.O_DIRECTORY) as fd:
            self._stays(fd, name)
            if self._reserved is not None and use != UNCHECKED:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                else:
                    self.check_reserved(st, use, path)
            yield fd, name

    def check_reserved(self, st: os.stat_result, use: str, path: str) -> None:
        """EACCES if ``use`` of the object with this lstat touches the server's files."""
        assert self._reserved is not None
        try:
            self._reserved.check_name(st, change=use != READ)
            if use == MOVE and stat.S_ISDIR(st.st_mode) and self._reserved.held_in(st):
                raise ReservedError(errno.EACCES, HOLDS_REFUSED)
        except OSError as exc:
            exc.filename = path
            raise

    def _local_device(self) -> int | None:
        """The device of the root's filesystem if that is local, else None (read from
        procfs once; a jail cut from a local root learns it in ``sub``)."""
        if self._local_dev == -1:
            local = fs_type(self._root) in _LOCAL_FS
            self._local_dev = os.fstat(self._root).st_dev if local else None
        return self._local_dev

    def _on_local_fs(self, st: os.stat_result) -> bool:
        """Whether a file with this stat lives on the root's own local filesystem."""
        return st.st_dev == self._local_device()

    @property
    def reserved(self) -> Reserved | None:
        """The server's own files, kept out of reach (None: none to keep out)."""
        return self._reserved
