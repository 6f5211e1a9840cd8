"""The jailed filesystem: the only code in hoody-mount that touches the served tree.

A ``VFS`` is a ``Resolver`` (``resolution``: every path resolved beneath the jail's
root fd by the kernel, never checked first and used later) with the operations on top:
stat and listings, opening files (``open_files``) and atomic uploads
(``atomic_files``), the operations on one name (mkdir, unlink, rename…, each on one
plain name relative to its resolved parent folder), attributes, and whole trees
(``trees``).

Paths given to a VFS are normalised virtual paths (see ``paths.normalize``). Every
method is blocking: fronts call them from worker threads, never on an event loop; the
exceptions are the ``*_cached`` methods, which the kernel answers from its caches or
refuses at once (``RWF_NOWAIT``, ``RESOLVE_CACHED``), so an event loop may call them and
fall back to a worker when they return None. Errors are ``OSError`` with the errno that
says what went wrong.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from . import mounts, paths, sqlite_snapshots, syscalls, trees, upload_temps
from .atomic_files import AtomicFile, without_privileges
from .dirfds import DIR_READ, mount_id, rename_noreplace, umask
from .disk_usage import Summary, Walk, summarize
from .listing import Entry, Listing
from .mounts import Mount
from .open_files import OpenFile, Times, valid_size
from .reserved import Identity, Reserved, identity, walk_up
from .resolution import (
    CHANGE,
    LOOP_FREE_LIMIT,
    LOOP_LISTED,
    MOVE,
    READ,
    RESOLVE,
    UNCHECKED,
    OffLoop,
    Resolver,
)  # fmt: skip
from .sqlite_snapshots import Snapshot, Upload
from .tree_reads import TreeRead
from .trees import Stop, never
from .turns import without_turn

_CHANGES = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC


_NOT_REGULAR = "not a regular file: FIFOs, sockets and devices are listed but never opened"


def _clear_leftovers(dfd: int, name: str) -> bool:
    """Remove the members of folder ``name`` if all are temp files of no live upload;
    whether it did (a folder with anything else in it is left as it was)."""
    fd = os.open(name, DIR_READ, dir_fd=dfd)
    try:
        members = os.listdir(fd)
        if not all(upload_temps.is_temp(m) and not upload_temps.is_live(m) for m in members):
            return False
        for member in members:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(member, dir_fd=fd)
        return True
    finally:
        os.close(fd)


def _rename_error(exc: OSError, sfd: int, sname: str, old: str, new: str) -> OSError:
    """The error of a failed rename, saying which of the two paths is at fault."""
    code = exc.errno or errno.EIO
    if code == errno.ENOENT:
        try:
            os.stat(sname, dir_fd=sfd, follow_symlinks=False)
        except FileNotFoundError:
            return OSError(code, os.strerror(code), old)
        return OSError(code, os.strerror(code), new)
    texts = {
        errno.EINVAL: "Cannot move a folder into itself",
        errno.ENOTEMPTY: "The destination is a folder that is not empty",
        errno.EEXIST: "The destination exists",
        errno.EISDIR: "Cannot replace a folder with a file",
        errno.ENOTDIR: "Cannot replace a file with a folder",
        errno.EXDEV: "Cannot move to another filesystem: copy, then remove the source",
    }
    return OSError(code, texts.get(code, exc.strerror or os.strerror(code)), new)


def _fstat_if(fd: int, settable: bool) -> os.stat_result | None:
    """fstat of ``fd``; with ``settable``, None for a file whose attributes cannot
    change (or where that cannot be told)."""
    if settable and syscalls.frozen(fd) is not False:
        return None
    return os.fstat(fd)


class VFS(Resolver):
    """A filesystem confined to one folder, by the kernel, for every operation."""

    @classmethod
    def open_root(
        cls, path: str, use_openat2: bool | None = None, reserved: Reserved | None = None
    ) -> VFS:
        """Open the folder ``path`` of the host as the root of a new VFS, keeping the
        ``reserved`` files out of reach (EACCES if the root itself lies among them)."""
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if reserved is not None:
            try:
                reserved.check_folder(fd, os.fstat(fd))
            except OSError as exc:
                os.close(fd)
                exc.filename = path
                raise
        return cls(fd, use_openat2, reserved)

    def sub(self, path: str, follow_links: bool = True) -> VFS:
        """A VFS jailed to the folder ``path`` of this one (itself resolved in this jail).

        Without ``follow_links`` a symlink anywhere in ``path`` is refused (ELOOP): a
        user's jail is its configured folder, never where a link, which another user
        may have planted in its place, leads."""
        if follow_links:
            fd = self._open(path, os.O_PATH | os.O_DIRECTORY)
        else:
            fd = self._resolve(path, os.O_PATH | os.O_DIRECTORY, links=False)
        try:
            st = os.fstat(fd)  # (one fstat of the jail's root serves every check below)
            if self._reserved is not None and not follow_links:
                self._reserved.check_folder(fd, st, self._top)
        except OSError as exc:
            os.close(fd)
            exc.filename = path
            raise
        jail = VFS(fd, self._openat2, self._reserved, st)
        # Blocking, like every call here: a jail on this root's local device takes its
        # answer, so an HTTP request (a jail each) reads no procfs, and the event loop
        # never has to fstat a root that could be on NFS.
        local = self._local_device()
        if local is not None and st.st_dev == local:
            jail._local_dev = local
        return jail

    def close(self) -> None:
        """Release the root fd."""
        os.close(self._root)

    def stat(self, path: str) -> os.stat_result:
        """stat, following symlinks inside the root."""
        fd, st = self._open_stat(path, os.O_PATH)
        try:
            return st if st is not None else os.fstat(fd)
        finally:
            os.close(fd)

    def stat_cached(
        self, path: str, follow: bool = True, settable: bool = False
    ) -> os.stat_result | None:
        """``stat`` (or ``lstat``) from the kernel's caches only: None when answering would
        need the disk, another mount or an old kernel (no RESOLVE_CACHED). Safe on an
        event loop: the lookup is dcache-only and fstat of a local inode does no I/O.
        With ``settable`` also None for a file whose attributes cannot change (read-only
        mount, immutable): a worker's call then gets the kernel's error."""
        if not self._cached_lookups or self._local_device() is None:
            return None
        flags = os.O_PATH | (0 if follow else os.O_NOFOLLOW)
        try:
            if self._reserved is not None and path != "/":
                return self._cached_stat_beside(path, follow, settable)
            fd = self._cached_open(self._root, path, flags, RESOLVE)
            if fd is None:
                return None
            try:
                return _fstat_if(fd, settable)
            finally:
                os.close(fd)
        except OSError as exc:
            exc.filename = path
            raise

    def _cached_stat_beside(self, path: str, follow: bool, settable: bool) -> os.stat_result | None:
        """``stat_cached`` with reserved files: from the folder of the last name,
        checked first; None for a link to follow (a worker follows it)."""
        assert self._reserved is not None
        parent, name = paths.split(path)
        pfd = self._cached_open(self._root, parent, os.O_PATH | os.O_DIRECTORY, RESOLVE)
        if pfd is None:
            return None
        try:
            self._reserved.check_folder(pfd, os.fstat(pfd), self._top)
            fd = self._cached_open(pfd, name, os.O_PATH | os.O_NOFOLLOW, syscalls.RESOLVE_BENEATH)
        finally:
            os.close(pfd)
        if fd is None:
            return None
        try:
            st = _fstat_if(fd, settable)
        finally:
            os.close(fd)
        if st is None or stat.S_ISLNK(st.st_mode) and follow:
            return None
        self._reserved.check_name(st, change=settable)
        return st

    def _cached_open(self, dirfd: int, path: str, flags: int, resolve: int) -> int | None:
        """openat2 from the dentry cache alone, on the root's own mount; None when that
        cannot answer (the disk, another mount, or a kernel before 5.12)."""
        resolve |= syscalls.RESOLVE_CACHED | syscalls.RESOLVE_NO_XDEV
        try:
            return syscalls.openat2(dirfd, paths.relative(path), flags, 0, resolve)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EXDEV):
                return None
            if exc.errno == errno.EINVAL:  # a kernel before 5.12
                self._cached_lookups = False
                return None
            raise

    def lstat(self, path: str) -> os.stat_result:
        """stat of the name itself (a symlink is not followed)."""
        if path == "/":
            return os.fstat(self._root)
        with self.parent(path, use=UNCHECKED) as (dfd, name):
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if self._reserved is not None:
            self.check_reserved(st, READ, path)
        return st

    def real_path(self, path: str) -> str | None:
        """Where ``path`` leads once its links are followed in the jail (a name that
        does not exist yet: its folder's real path and the name); None when that is
        not known (the folder is missing, or lies outside the root's own path)."""
        suffix = ""
        try:
            fd = self._open(path, os.O_PATH)
        except FileNotFoundError:
            parent, suffix = paths.split(path)
            try:
                fd = self._open(parent, os.O_PATH | os.O_DIRECTORY)
            except OSError:
                return None
        except OSError:  # (the change itself will meet and say the same)
            return None
        try:
            reached = os.readlink(syscalls.proc_link(fd))
            top = os.readlink(syscalls.proc_link(self._root)).rstrip("/")
        finally:
            os.close(fd)
        if reached.rstrip("/") == top:
            found = "/"
        elif reached.startswith(top + "/"):
            found = reached[len(top) :]
        else:
            return None
        return paths.join(found, suffix) if suffix else found

    def readlink(self, path: str) -> str:
        """The target of the symlink ``path``, as stored."""
        with self.parent(path, "read a link at", READ) as (dfd, name):
            return os.readlink(name, dir_fd=dfd)

    def listdir(self, path: str, dots: bool = False, position: int = 0) -> Listing:
        """Open the folder ``path`` for listing; with ``dots`` it starts with ``.`` and
        ``..`` as readdir(3) gives them (``..`` of the jail's root is the root itself).
        A ``position`` (a listing's ``position`` before) goes on after that name."""
        fd = self._open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if self._on_loop and os.fstat(fd).st_size > LOOP_LISTED:
                raise OffLoop(path)  # (tmpfs: 20 bytes a name; a large folder waits)
            if not dots:
                return Listing(fd, self._reserved, position=position, stays=self._on_loop)
            here = os.fstat(fd)
            if identity(here) == identity(os.fstat(self._root)):
                up = here  # as in a chroot: nothing lies above the root
            else:
                up = os.stat("..", dir_fd=fd)
        except BaseException:
            os.close(fd)
            raise
        return Listing(fd, self._reserved, [Entry(".", here), Entry("..", up)], stays=self._on_loop)

    def statvfs(self, path: str = "/") -> os.statvfs_result:
        """Capacity of the filesystem that holds ``path``."""
        with self._fd(path) as fd:
            return os.statvfs(fd)

    def mounts(self) -> list[Mount]:
        """The mounts at or below this root, by its paths (see ``mounts.below``)."""
        return mounts.below(self._root)

    def mount_statvfs(self, path: str) -> tuple[str, os.statvfs_result]:
        """The id of the mount holding the folder ``path`` and its filesystem's capacity."""
        with self._fd(path, os.O_PATH | os.O_DIRECTORY) as fd:
            return mount_id(fd), os.statvfs(fd)

    def du_walk(self, path: str, follow: bool, seen: set[Identity]) -> Walk:
        """A ``du`` walk of ``path`` (a link at its end followed only with ``follow``);
        ``seen`` is shared by the walks of one command (see ``disk_usage.Walk``)."""
        st = self.stat(path) if follow else self.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            return Walk(path, st, None, self._reserved, seen)
        fd = self._open(path, os.O_RDONLY | os.O_DIRECTORY | (0 if follow else os.O_NOFOLLOW))
        try:
            here = os.fstat(fd)
            if identity(here) != identity(st):
                raise OSError(errno.ENOENT, "replaced while it was looked at", path)
            return Walk(path, here, fd, self._reserved, seen)
        except BaseException:
            os.close(fd)
            raise

    def read_tree(self, path: str) -> TreeRead:
        """A read of the folder ``path`` and everything below it, entry by entry (see
        ``tree_reads.TreeRead``); ENOTDIR for anything but a folder."""
        fd = self._open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return TreeRead(fd, path, self._reserved)
        except BaseException:
            os.close(fd)
            raise

    def read_bytes(self, path: str, limit: int = 1 << 20) -> bytes:
        """Read a small regular file whole (at most ``limit`` bytes)."""
        file = self.open_file(path, os.O_RDONLY)
        try:
            return file.read(0, limit)
        finally:
            file.close()

    def open_file(self, path: str, flags: int, mode: int = 0o666) -> OpenFile:
        """Open a regular file for data; never opens a FIFO or device.

        An existing file is first reached with O_PATH, checked to be regular and then
        reopened through its fd, so the open that reads or writes can never block on a
        FIFO or wake a device. A new file is created with O_NONBLOCK and checked too.
        """
        access = flags & (os.O_ACCMODE | os.O_APPEND | os.O_TRUNC)
        try:
            pfd, known = self._open_stat(path, os.O_PATH)
        except FileNotFoundError:
            if not flags & os.O_CREAT:
                raise
            fd, st = self._create(path, flags, mode)
            created = OpenFile(fd, path, self._on_local_fs(st))
            created.created = True
            created.in_memory = self._on_loop
            return created
        try:
            if flags & os.O_CREAT and flags & os.O_EXCL:
                raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), path)
            st = known if known is not None else os.fstat(pfd)
            if stat.S_ISDIR(st.st_mode):
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.ENXIO, _NOT_REGULAR, path)
            if self._on_loop and access & os.O_TRUNC and st.st_size > LOOP_FREE_LIMIT:
                raise OffLoop(path)  # (the kernel would free its pages in the call)
            if self._reserved is not None and access & _CHANGES:
                self.check_reserved(st, CHANGE, path)
            fd = os.open(syscalls.proc_link(pfd), access | os.O_CLOEXEC)
            file = OpenFile(fd, path, self._on_local_fs(st))
            file.in_memory = self._on_loop
            if self._reserved is not None and identity(st) in self._reserved.read_only:
                file.frozen = True  # the server's log: read, never changed
            return file
        finally:
            os.close(pfd)

    def atomic_file(self, path: str, privileged: bool = True) -> AtomicFile:
        """Start writing the whole new content of the file ``path`` (see ``AtomicFile``).

        A file it replaces gives it its mode and owner; without ``privileged``, the mode
        loses the setuid and setgid bits, as after an unprivileged write in place."""
        parent, name = paths.split(path)
        if not name:
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        dfd = self._open(parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            mode = 0o666 & ~umask()
            owner = None
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                if stat.S_ISDIR(st.st_mode):
                    raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
                if self._reserved is not None:
                    self.check_reserved(st, MOVE, path)  # it would be replaced
                if stat.S_ISREG(st.st_mode):  # (a link is replaced, as rename(2) does)
                    mode = stat.S_IMODE(st.st_mode)
                    mode = mode if privileged else without_privileges(mode)
                    owner = (st.st_uid, st.st_gid)
            return AtomicFile(dfd, name, path, mode, owner)
        except BaseException:
            os.close(dfd)
            raise

    def _create(self, path: str, flags: int, mode: int) -> tuple[int, os.stat_result]:
        create = flags & (os.O_ACCMODE | os.O_APPEND | os.O_TRUNC | os.O_CREAT | os.O_EXCL)
        fd = self._open(path, create | os.O_NONBLOCK, mode)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise OSError(errno.ENXIO, _NOT_REGULAR, path)
        if self._reserved is not None:
            try:
                self.check_reserved(st, CHANGE, path)  # (it appeared since the lookup)
            except OSError:
                os.close(fd)
                raise
        os.set_blocking(fd, True)
        return fd, st

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        """Create the folder ``path``."""
        if path == "/":
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), path)
        with self.parent(path) as (dfd, name):
            os.mkdir(name, mode, dir_fd=dfd)

    def rmdir(self, path: str) -> None:
        """Remove the empty folder ``path``; one whose only members are temp files of no
        live upload (left by a killed server) counts as empty: they go first."""
        with self.parent(path, "remove", MOVE) as (dfd, name):
            try:
                os.rmdir(name, dir_fd=dfd)
            except OSError as exc:
                if exc.errno == errno.ENOTEMPTY and self._on_loop:
                    raise OffLoop(path) from None  # (the leftovers are listed on a worker)
                if exc.errno != errno.ENOTEMPTY or not _clear_leftovers(dfd, name):
                    raise
                os.rmdir(name, dir_fd=dfd)

    def unlink(self, path: str) -> None:
        """Remove the non-folder ``path`` (a symlink itself, never its target)."""
        with self.parent(path, "remove", MOVE) as (dfd, name):
            self._small(dfd, name)
            os.unlink(name, dir_fd=dfd)

    def symlink(self, target: str, path: str) -> None:
        """Create the symlink ``path`` pointing to ``target`` (stored as given)."""
        if "\0" in target:
            raise OSError(errno.EINVAL, "Invalid argument: link target contains a NUL byte")
        with self.parent(path, "replace") as (dfd, name):
            os.symlink(target, name, dir_fd=dfd)

    def link(self, existing: str, new: str) -> None:
        """Create the hard link ``new`` to ``existing`` (a symlink is linked itself)."""
        with (
            self.parent(existing, "link") as (sfd, sname),
            self.parent(new, "replace") as (
                dfd,
                dname,
            ),
        ):
            os.link(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)

    def rename(self, old: str, new: str, replace: bool) -> None:
        """Rename ``old`` to ``new``; with ``replace`` false an existing ``new`` is an error."""
        with (
            self.parent(old, "rename", MOVE) as (sfd, sname),
            self.parent(new, "replace") as (
                dfd,
                dname,
            ),
        ):
            self._small(dfd, dname)
            try:
                if replace:
                    os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
                    return
                rename_noreplace(sfd, sname, dfd, dname)
            except OSError as exc:
                raise _rename_error(exc, sfd, sname, old, new) from None

    def holds(self, outer: str, inner: str) -> bool:
        """Whether ``outer`` (links followed) is the entry ``inner`` itself or a folder
        above it, whatever paths lead to them: by identity, walking up from ``inner``
        through ``..`` (False if ``outer`` does not exist)."""
        try:
            with self._fd(outer) as fd:
                key = identity(os.fstat(fd))
        except FileNotFoundError:
            return False
        top = identity(os.fstat(self._root))
        if key == top:
            return True
        with self.parent(inner, use=UNCHECKED) as (dfd, name):
            if identity(os.stat(name, dir_fd=dfd, follow_symlinks=False)) == key:
                return True
            here = identity(os.fstat(dfd))
            return here == key or (here != top and walk_up(dfd, here, {key, top}) == key)

    def set_attrs(
        self,
        path: str,
        *,
        follow: bool = True,
        size: int | None = None,
        mode: int | None = None,
        owner: tuple[int, int] | None = None,
        times: Times | None = None,
    ) -> None:
        """Change size, permission bits, owner and times of ``path``.

        With ``follow`` false a symlink's own owner and times change (Linux links have
        no permission bits, so a mode for a link is ignored).
        """
        if follow or path == "/":
            with self._fd(path) as fd:
                if self._reserved is not None:
                    self.check_reserved(os.fstat(fd), CHANGE, path)
                self._set_on_fd(fd, size, mode, owner, times)
            return
        with self.parent(path) as (dfd, name):
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                try:
                    self._set_on_fd(fd, size, mode, owner, times)
                finally:
                    os.close(fd)
                return
            if size is not None:
                raise OSError(errno.EINVAL, "Cannot set the size of a symlink", path)
            if owner is not None:
                os.chown(name, *owner, dir_fd=dfd, follow_symlinks=False)
            if times is not None:
                os.utime(
                    name, ns=(times.atime_ns, times.mtime_ns), dir_fd=dfd, follow_symlinks=False
                )

    @staticmethod
    def _set_on_fd(
        fd: int,
        size: int | None,
        mode: int | None,
        owner: tuple[int, int] | None,
        times: Times | None,
    ) -> None:
        """Apply attributes through an O_PATH fd (via its /proc link, never a path)."""
        if size is not None:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.ENXIO, _NOT_REGULAR)
            wfd = os.open(syscalls.proc_link(fd), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.ftruncate(wfd, valid_size(size))
            finally:
                os.close(wfd)
        if owner is not None:
            os.chown(syscalls.proc_link(fd), *owner)
        if mode is not None:
            os.chmod(syscalls.proc_link(fd), mode & 0o7777)
        if times is not None:
            os.utime(syscalls.proc_link(fd), ns=(times.atime_ns, times.mtime_ns))

    # -- whole trees (see ``trees``) ---------------------------------------------------

    @without_turn
    def remove_tree(self, path: str) -> None:
        """Remove ``path`` and, for a folder, everything below it (no recursion, no links
        followed; at most three fds are held whatever the depth)."""
        trees.remove_tree(self, path)

    @without_turn
    def du_summary(self, path: str, deadline: float, stop: Stop = never) -> Summary:
        """``du -sb`` of the folder ``path`` and of each member, until ``deadline``
        (see ``disk_usage.summarize``), stepped aside: it may walk for seconds."""
        return summarize(self, path, deadline, stop)

    @without_turn
    def copy_file(self, src: str, dst: str, mode_mask: int = 0o7777, stop: Stop = never) -> None:
        """Copy a regular file's content, mode (the bits in ``mode_mask``) and times; the
        target appears whole or not (ECANCELED once ``stop()`` is true)."""
        trees.copy_file(self, src, dst, mode_mask, stop)

    @without_turn
    def copy_tree(self, src: str, dst: str, mode_mask: int = 0o7777, stop: Stop = never) -> None:
        """Copy a file, or a folder with everything below it, to ``dst``, which must not
        exist yet (see ``trees.copy_tree``)."""
        trees.copy_tree(self, src, dst, mode_mask, stop)

    # -- SQLite databases (see ``sqlite_snapshots``) -------------------------------------

    def database(self, path: str, use: str = READ) -> os.stat_result:
        """The lstat of the database ``path`` itself, checked (see
        ``sqlite_snapshots.checked``) and, for ``use`` CHANGE, against the server's files."""
        folder, name = self._database_folder(path)
        try:
            return self._database_in(folder, name, path, use)
        finally:
            os.close(folder)

    def _database_folder(self, path: str) -> tuple[int, str]:
        """An fd of the folder that holds the database ``path`` (never one of the
        server's), and the database's name. SQLite is confined to this folder, held
        by its fd: a folder on the way there swapped for a link after the check
        cannot send SQLite elsewhere."""
        parent, name = paths.split(path)
        folder = self._open(parent, os.O_PATH | os.O_DIRECTORY)
        try:
            if self._reserved is not None:
                self._reserved.check_name(os.fstat(folder), change=False)
        except BaseException:
            os.close(folder)
            raise
        return folder, name

    def _database_in(self, folder: int, name: str, path: str, use: str) -> os.stat_result:
        """The lstat of the database ``name`` of the held ``folder``, checked."""
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
        try:
            st = os.fstat(fd)
            if self._reserved is not None:
                self._reserved.check_name(st, change=use != READ)
                if use != READ:
                    self.check_reserved(st, use, path)
            sqlite_snapshots.checked(fd, st, path)
            return st
        finally:
            os.close(fd)

    @without_turn
    def sqlite_snapshot(self, path: str, stop: Stop = never) -> Snapshot:
        """A consistent copy of the SQLite database ``path`` (see ``sqlite_snapshots``)."""
        folder, name = self._database_folder(path)
        try:
            expected = self._database_in(folder, name, path, READ)
            return sqlite_snapshots.snapshot(folder, name, expected, stop)
        finally:
            os.close(folder)

    @without_turn
    def sqlite_restore(self, path: str, upload: Upload, stop: Stop = never) -> None:
        """Replace the live SQLite database ``path``'s content with ``upload``'s."""
        folder, name = self._database_folder(path)
        try:
            expected = self._database_in(folder, name, path, CHANGE)
            sqlite_snapshots.restore(folder, name, expected, upload, stop)
        finally:
            os.close(folder)
