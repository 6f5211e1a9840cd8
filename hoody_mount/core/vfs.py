"""The jailed filesystem: the only code in hoody-mount that touches the disk.

A ``VFS`` holds an ``O_PATH`` fd of its root folder. Every path is resolved beneath that
fd by the kernel, with ``openat2(RESOLVE_IN_ROOT)`` or, on kernels without it, a walk of
``O_NOFOLLOW`` opens relative to held folder fds that follows symlinks itself, as a
chroot would. Nothing is checked first and used later: each call resolves and acts on
the fd it got. Operations on a name (unlink, mkdir, rename…) resolve the parent folder
that way and then act on one plain name relative to it.

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
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from . import paths, syscalls, upload_temps
from .direct_writes import DirectWriter
from .listing import Entry, Listing
from .reserved import (
    HOLDS_REFUSED,
    LOG_REFUSED,
    Identity,
    Reserved,
    ReservedError,
    identity,
    walk_up,
)
from .turns import stepped_aside, without_turn

_RESOLVE = syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS
_MAX_SYMLINK_HOPS = 40
_DIR_STEP = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_COPY_BLOCK = 1 << 20
Stop = Callable[[], bool]  # a long operation's question: has its asker gone?


def _never() -> bool:
    return False


READ_AHEAD = 16 << 20  # how far a sequential reader keeps the kernel reading ahead of it
READ_AHEAD_PIECE = 2 << 20
_NOT_REGULAR = "not a regular file: FIFOs, sockets and devices are listed but never opened"
_INTO_ITSELF = "Cannot copy a folder into itself"
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


# What an operation on a name does, for the reserved-files check (see ``VFS._parent``).
READ, CHANGE, MOVE, UNCHECKED = "read", "change", "move", "unchecked"
_CHANGES = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC


def _fs_type(fd: int) -> str:
    """The filesystem type of the mount holding ``fd``, read from procfs (never blocks)."""
    with open(f"/proc/self/fdinfo/{fd}") as info:
        mount_id = next(line.split()[1] for line in info if line.startswith("mnt_id:"))
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[0] == mount_id:
                return fields[fields.index("-") + 1]
    return ""


def _clear_leftovers(dfd: int, name: str) -> bool:
    """Remove the members of folder ``name`` if all are temp files of no live upload;
    whether it did (a folder with anything else in it is left as it was)."""
    fd = os.open(name, _DIR_READ, dir_fd=dfd)
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


def _swap(old: int, new: int) -> int:
    """Close ``old`` and return ``new`` (which was opened before ``old`` is let go)."""
    os.close(old)
    return new


def _descend_from(top: int, names: list[str], flags: int) -> int:
    """Open the folder below ``top`` reached by ``names``, following no link."""
    current = os.dup(top)
    try:
        for name in names:
            current = _swap(current, os.open(name, _DIR_STEP, dir_fd=current))
        return _swap(current, _reopen(current, flags))
    except BaseException:
        os.close(current)
        raise


def _mount_id(fd: int) -> str:
    """The id of the mount that holds ``fd``, read from procfs (never blocks)."""
    with open(f"/proc/self/fdinfo/{fd}") as info:
        return next(line.split()[1] for line in info if line.startswith("mnt_id:"))


def _back_up(fd: int, expected: Identity, top: int, trail: list[str]) -> int:
    """The folder above the folder ``fd`` of a copy, which must be ``expected``: reached
    through ``..``, or, if the folder was moved meanwhile, by name from ``top``."""
    up = os.open("..", _DIR_READ, dir_fd=fd)
    if identity(os.fstat(up)) == expected:
        return up
    os.close(up)
    up = _descend_from(top, trail, _DIR_READ)
    if identity(os.fstat(up)) != expected:
        os.close(up)
        raise OSError(errno.ENOENT, "A folder of the copy was moved while it was copied")
    return up


def _finish_copied_folder(fd: int, st: os.stat_result, umask: int) -> None:
    """Give a copied folder the source's permission bits (through the umask, as mkdir(2)
    gives them; a setgid bit inherited from its parent stays) and times, once everything
    below it is in place (it is made 0700 so that the copy can always write into it)."""
    now = stat.S_IMODE(os.fstat(fd).st_mode)
    mode = (stat.S_IMODE(st.st_mode) & 0o1777 & ~umask) | (now & stat.S_ISGID)
    if mode != now:
        os.fchmod(fd, mode)
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _reopen(fd: int, flags: int) -> int:
    """A new fd for the folder behind ``fd``, opened with ``flags`` (creation flags dropped)."""
    flags = (flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW)) | os.O_CLOEXEC
    return os.open(syscalls.proc_link(fd), flags)


@dataclass(frozen=True, slots=True)
class Times:
    """Access and modification times in nanoseconds."""

    atime_ns: int
    mtime_ns: int


MAX_OFFSET = 2**63 - 1  # off_t


def _rename_noreplace(sfd: int, sname: str, dfd: int, dname: str) -> None:
    """Rename that never replaces (EEXIST instead)."""
    try:
        syscalls.renameat2(sfd, sname, dfd, dname, syscalls.RENAME_NOREPLACE)
    except OSError as exc:
        if exc.errno != errno.EINVAL or stat.S_ISDIR(
            os.stat(sname, dir_fd=sfd, follow_symlinks=False).st_mode
        ):
            raise
        # The filesystem lacks RENAME_NOREPLACE: link then unlink never replaces.
        os.link(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
        os.unlink(sname, dir_fd=sfd)


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


def _position(offset: int) -> int:
    """``offset``, or EINVAL if no file position can be there (beyond ``off_t``)."""
    if not 0 <= offset <= MAX_OFFSET:
        raise OSError(errno.EINVAL, "Invalid argument: offset beyond the largest file size")
    return offset


def _size(size: int) -> int:
    """``size``, or EFBIG if no file can be that large."""
    if not 0 <= size <= MAX_OFFSET:
        raise OSError(errno.EFBIG, "File too large")
    return size


# An upload's pages are sent to the disk every this many bytes: 1 GiB took 0.45 s more
# to fsync at the end otherwise, time in which the client only waits.
WRITEBACK_STEP = 8 << 20
# From here on an upload is written with direct I/O (see ``direct_writes``); smaller
# files stay in the page cache, where a download soon after finds them.
DIRECT_FROM = 8 << 20


class ShortWrite(Exception):
    """``OpenFile.write_many`` stopped with ``error`` after ``written`` bytes."""

    def __init__(self, written: int, error: OSError) -> None:
        super().__init__(written, error)
        self.written = written
        self.error = error


class OpenFile:
    """An open regular file: positional reads and writes on its fd."""

    def __init__(self, fd: int, path: str, local: bool = False) -> None:
        self.fd = fd
        self.path = path
        # On the root's local filesystem: fstat never waits, and close reports nothing
        # (no local filesystem returns write-back errors from close; NFS does).
        self.local = local
        self._nowait = True  # until the filesystem refuses RWF_NOWAIT
        self._next: int | None = None  # where a sequential reader reads next
        self._ahead = 0  # how far the kernel has been asked to read ahead
        self.frozen = False  # attributes may not change (the server's own log file)
        # What the audit line written at close tells (see ``Session.open``).
        self.created = False
        self.bytes_read = 0
        self.bytes_written = 0
        self.opened = time.monotonic()
        self.on_close: Callable[[OpenFile], None] | None = None

    def read(self, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset`` (fewer at the end of the file).

        A reader that goes on where it stopped keeps the disk busy ahead of it: once it
        has its bytes, the kernel is asked for the next ``READ_AHEAD`` in the background
        while it sends them. One that goes back far starts afresh. Racing readers of one
        file may ask twice; it is only a hint. (SFTP reads that the page cache answers on
        the loop do not come here; there the kernel's own readahead works as before.)
        """
        end = offset + size
        data = os.pread(self.fd, size, _position(offset))
        self.bytes_read += len(data)
        if offset == self._next:
            if end + READ_AHEAD // 2 > self._ahead:
                self._read_ahead(max(end, self._ahead), end + READ_AHEAD)
        elif offset + 2 * READ_AHEAD < self._ahead:
            self._ahead = 0
        self._next = end if len(data) == size else None
        return data

    def _read_ahead(self, start: int, end: int) -> None:
        """Have the kernel read ``start`` to ``end`` into the page cache, without waiting.

        One call reads at most the device's readahead size (8 MiB here, 128 KiB on many
        disks), so the range is asked for in pieces.
        """
        end = min(end, MAX_OFFSET)
        self._ahead = end
        with contextlib.suppress(OSError):  # only a hint: a filesystem may refuse it
            for piece in range(start, end, READ_AHEAD_PIECE):
                length = min(READ_AHEAD_PIECE, end - piece)
                os.posix_fadvise(self.fd, piece, length, os.POSIX_FADV_WILLNEED)

    def read_cached(self, offset: int, size: int) -> bytearray | None:
        """Read exactly ``size`` bytes at ``offset`` if the page cache holds them all, or
        return None at once: ``preadv2(RWF_NOWAIT)`` never waits for the disk, so this is
        safe on an event loop. A miss starts the kernel's readahead; ``read`` does the rest.
        """
        if not self._nowait or size <= 0 or offset + size > MAX_OFFSET:
            return None
        buf = bytearray(size)
        try:
            got = os.preadv(self.fd, [buf], offset, os.RWF_NOWAIT)
        except OSError as exc:  # EAGAIN: not cached; any error: ``read`` reports it
            if exc.errno == errno.EOPNOTSUPP:
                self._nowait = False
            return None
        if got != size:
            return None
        self.bytes_read += size
        return buf

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Write all of ``data`` at ``offset``."""
        view = memoryview(data)
        _position(offset)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written
            self.bytes_written += written

    def write_many(self, offset: int, pieces: list[memoryview]) -> None:
        """Write all of ``pieces``, one after the other, from ``offset``: one system call
        for them all unless the kernel writes less. An error after some of the bytes
        were written raises ``ShortWrite``, which tells how many."""
        pieces = [piece for piece in pieces if piece]  # (an empty WRITE writes nothing)
        _position(offset)
        done = 0
        try:
            while pieces:
                written = os.pwritev(self.fd, pieces, offset)
                if not written:
                    raise OSError(errno.EIO, "the file took no bytes", self.path)
                offset += written
                done += written
                while pieces and written >= len(pieces[0]):
                    written -= len(pieces.pop(0))
                if written:
                    pieces[0] = pieces[0][written:]
        except OSError as exc:
            raise ShortWrite(done, exc) from exc
        finally:
            self.bytes_written += done

    def stat(self) -> os.stat_result:
        """fstat of the open file."""
        return os.fstat(self.fd)

    def stat_cached(self) -> os.stat_result | None:
        """fstat if it cannot wait (a local filesystem: the inode is in memory), else None."""
        return os.fstat(self.fd) if self.local else None

    def fsync(self) -> None:
        """Flush the file's data and metadata to the disk."""
        with stepped_aside():  # (the disk's time: no Python runs meanwhile)
            os.fsync(self.fd)

    def statvfs(self) -> os.statvfs_result:
        """Capacity of the filesystem that holds the open file."""
        return os.fstatvfs(self.fd)

    def set_attrs(
        self,
        size: int | None = None,
        mode: int | None = None,
        owner: tuple[int, int] | None = None,
        times: Times | None = None,
    ) -> None:
        """Change size, permission bits, owner and times of the open file."""
        if self.frozen:
            raise ReservedError(errno.EACCES, LOG_REFUSED, self.path)
        if size is not None:
            os.ftruncate(self.fd, _size(size))
        if owner is not None:
            os.fchown(self.fd, *owner)
        if mode is not None:
            os.fchmod(self.fd, mode & 0o7777)
        if times is not None:
            os.utime(self.fd, ns=(times.atime_ns, times.mtime_ns))

    def close(self) -> None:
        """Close the file (a second close does nothing), then call ``on_close``."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
            finally:
                closed, self.on_close = self.on_close, None
                if closed is not None:
                    closed(self)


class AtomicFile:
    """A file written in full, then put in place: the old content stays until commit.

    The data goes to a hidden temp file created with O_EXCL in the target's folder (held
    as an fd, so the folder cannot be swapped underneath); ``commit`` fsyncs it, gives it
    the old file's permission bits and owner, renames it over the target and fsyncs the
    folder. ``abort`` (or any failure in ``commit``) removes the temp file.
    """

    def __init__(
        self, dir_fd: int, name: str, path: str, mode: int, owner: tuple[int, int] | None = None
    ) -> None:
        self._dir = -1  # ours once the temp file exists; until then the caller's to close
        self._name = name
        self.path = path
        self._temp = upload_temps.new_name(name)
        self._mode = mode
        self._owner = owner
        upload_temps.started(self._temp, dir_fd)  # (noted first: a crash leaves no stray)
        try:
            fd = os.open(
                self._temp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=dir_fd,
            )
        except BaseException:
            upload_temps.ended(self._temp)
            raise
        self.file = OpenFile(fd, path)
        self.size = 0
        self._written_back = 0  # bytes whose writeback was started
        self._direct: DirectWriter | None = None
        self._direct_tried = False
        self._times: Times | None = None
        self.on_commit: Callable[[AtomicFile, bytes | None], None] | None = None
        self._dir = dir_fd

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data``. The first ``DIRECT_FROM`` bytes go through the page cache,
        the disk starting on them every ``WRITEBACK_STEP`` bytes so that the fsync at
        commit waits for the tail only; from there on a ``DirectWriter`` takes over."""
        view = memoryview(data)
        if self._direct is None:
            cached = len(view) if self._direct_tried else max(0, DIRECT_FROM - self.size)
            self._write_cached(view[:cached])
            view = view[cached:]
            if not view:
                return
            self._direct_tried = True
            self._direct = DirectWriter.start(self.file.fd, self.size)
            if self._direct is None:
                self._write_cached(view)
                return
        self._direct.write(view)
        self.size += len(view)

    def skip(self, length: int) -> None:
        """Leave the next ``length`` bytes unwritten: a hole, which reads as zeros (a
        copy of a sparse file stays sparse). What follows goes through the page cache."""
        if self._direct is not None:
            offset, rest = self._direct.finish()
            self._direct = None
            self.file.write(offset, rest)
        self._direct_tried = True  # (direct writes append whole blocks, holes are none)
        self.size += length

    def _write_cached(self, view: memoryview) -> None:
        if not view:
            return
        self.file.write(self.size, view)
        self.size += len(view)
        if self.size - self._written_back >= WRITEBACK_STEP:
            syscalls.start_writeback(
                self.file.fd, self._written_back, self.size - self._written_back
            )
            self._written_back = self.size

    def set_mode(self, mode: int) -> None:
        """The permission bits the file gets when it is put in place."""
        self._mode = mode

    def set_times(self, times: Times) -> None:
        """The times the file gets when it is put in place (after its last write)."""
        self._times = times

    def commit(self, replace: bool = True, digest: bytes | None = None) -> None:
        """Flush, then atomically replace the target with the new content (or, with
        ``replace`` false, EEXIST if a target has appeared: never replaced); then call
        ``on_commit`` with the SHA-256 ``digest`` of the content, where known."""
        try:
            if self._direct is not None:
                offset, rest = self._direct.finish()
                self._direct = None
                self.file.write(offset, rest)
            if os.fstat(self.file.fd).st_size < self.size:  # (it ends in a hole)
                os.ftruncate(self.file.fd, self.size)
            if self._owner is not None:
                _give(self.file.fd, self._owner)
            os.fchmod(self.file.fd, self._mode)
            if self._times is not None:
                os.utime(self.file.fd, ns=(self._times.atime_ns, self._times.mtime_ns))
            self.file.fsync()
            self.file.close()
            if replace:
                os.rename(self._temp, self._name, src_dir_fd=self._dir, dst_dir_fd=self._dir)
            else:
                _rename_noreplace(self._dir, self._temp, self._dir, self._name)
            with stepped_aside():
                os.fsync(self._dir)
        except BaseException:
            self.abort()
            raise
        dir_fd, self._dir = self._dir, -1
        os.close(dir_fd)
        upload_temps.ended(self._temp)
        if self.on_commit is not None:
            self.on_commit(self, digest)

    def __del__(self) -> None:
        # Dropped without commit or abort (a request thread killed mid-upload): remove
        # the temp file and free the direct writer's slot instead of leaking them. (A
        # half-made one, whose __init__ failed, holds nothing: ``_dir`` is still -1.)
        if getattr(self, "_dir", -1) >= 0 and not sys.is_finalizing():
            with contextlib.suppress(Exception):
                self.abort()

    def abort(self) -> None:
        """Throw the new content away; the target is left as it was."""
        if self._dir < 0:
            return
        if self._direct is not None:
            self._direct.cancel()
            self._direct = None
        dir_fd, self._dir = self._dir, -1
        try:
            self.file.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
            upload_temps.ended(self._temp)


def _give(fd: int, owner: tuple[int, int]) -> None:
    """Give the file ``fd`` to ``owner`` (uid, gid) where the server may: a file that
    replaces another keeps the old one's owner, as a write in place would."""
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != owner:
        with contextlib.suppress(PermissionError):
            os.fchown(fd, *owner)


def without_privileges(mode: int) -> int:
    """``mode`` as the kernel leaves it when an unprivileged writer changes the file:
    no setuid bit, and no setgid bit where the group may execute it."""
    if mode & stat.S_IXGRP:
        return mode & ~(stat.S_ISUID | stat.S_ISGID)
    return mode & ~stat.S_ISUID


def _fill(
    target: AtomicFile, source: OpenFile, st: os.stat_result, mode_mask: int, stop: Stop
) -> None:
    """Write the content of ``source`` (whose stat is ``st``) into ``target``, to be put
    in place with the source's times and mode (the bits in ``mode_mask``); the target is
    thrown away if that fails. Holes stay holes (copying a 1 TiB sparse file wrote 1 TiB
    of zeros); ECANCELED between two blocks once ``stop()`` says the asker has gone."""
    try:
        offset = 0
        while True:
            if stop():
                raise OSError(errno.ECANCELED, "the copy stopped: the client has gone")
            size = max(st.st_size, offset)
            data_at = syscalls.next_data(source.fd, offset, size)
            if data_at > offset:
                target.skip(data_at - offset)
                offset = data_at
            hole_at = syscalls.next_hole(source.fd, offset, size)
            data = source.read(offset, min(_COPY_BLOCK, max(hole_at - offset, 1 << 12)))
            if not data:
                break
            target.write(data)
            offset += len(data)
        target.set_times(Times(st.st_atime_ns, st.st_mtime_ns))
        target.set_mode(stat.S_IMODE(st.st_mode) & mode_mask)
    except BaseException:
        target.abort()
        raise


class VFS:
    """A filesystem confined to one folder, by the kernel, for every operation."""

    def __init__(
        self, root_fd: int, use_openat2: bool | None = None, reserved: Reserved | None = None
    ) -> None:
        self._root = root_fd
        self._openat2 = syscalls.openat2_works() if use_openat2 is None else use_openat2
        # The server's own files (see ``reserved``), and this root's identity, where a
        # check for them walking up from a folder stops.
        self._reserved = reserved
        self._top: Identity | None = identity(os.fstat(root_fd)) if reserved else None
        # Cached lookups stay on the root's own mount (RESOLVE_NO_XDEV), and only a local
        # filesystem's stat is sure never to wait for a server. Found out when first
        # needed, so sessions that need none (an HTTP request) skip reading procfs.
        self._cached_lookups = self._openat2
        self._local_dev: int | None = -1  # -1: not yet known

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
            if self._reserved is not None:
                try:
                    self._reserved.check_folder(fd, os.fstat(fd), self._top)
                except OSError as exc:
                    os.close(fd)
                    exc.filename = path
                    raise
        jail = VFS(fd, self._openat2, self._reserved)
        # Blocking, like every call here: a jail on this root's local device takes its
        # answer, so an HTTP request (a jail each) reads no procfs, and the event loop
        # never has to fstat a root that could be on NFS.
        local = self._local_device()
        if local is not None and os.fstat(jail._root).st_dev == local:
            jail._local_dev = local
        return jail

    def close(self) -> None:
        """Release the root fd."""
        os.close(self._root)

    # -- resolution ---------------------------------------------------------------

    def _open(self, path: str, flags: int, mode: int = 0) -> int:
        """Open ``path`` with symlinks resolved inside the root; return the fd.

        With reserved files, the last name is opened from its folder, which is checked
        first (a file's fd has no ``..`` to walk up from), and is checked itself.
        """
        if self._reserved is None:
            return self._resolve(path, flags, mode)
        try:
            return self._open_beside(path, flags, mode)
        except OSError as exc:
            exc.filename = path
            raise

    def _open_beside(self, path: str, flags: int, mode: int) -> int:
        """Open ``path`` through its parent folder, checked first; a link at the last
        name is followed by hand, its target resolved in the jail as the kernel would."""
        assert self._reserved is not None
        follow = not (flags & os.O_NOFOLLOW or (flags & os.O_CREAT and flags & os.O_EXCL))
        target = path
        for _ in range(_MAX_SYMLINK_HOPS + 1):
            parent, _sep, name = target.rpartition("/")
            if name in ("", ".", ".."):  # a folder (a link's target may end so)
                fd = self._resolve(target or "/", flags, mode)
                try:
                    self._reserved.check_folder(fd, os.fstat(fd), self._top)
                except BaseException:
                    os.close(fd)
                    raise
                return fd
            pfd = self._resolve(parent or "/", os.O_PATH | os.O_DIRECTORY)
            try:
                self._reserved.check_folder(pfd, os.fstat(pfd), self._top)
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

    def _open_name(self, dfd: int, name: str, flags: int, mode: int, follow: bool) -> int | None:
        """Open one name of a checked folder without following a link; None if it may
        be a link to follow."""
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
        return fd

    def _resolve(self, path: str, flags: int, mode: int = 0, links: bool = True) -> int:
        """The kernel's lookup of ``path`` in the root: openat2 or the walk (without
        ``links``, a symlink anywhere in the path is ELOOP)."""
        try:
            if self._openat2:
                resolve = _RESOLVE if links else _RESOLVE | syscalls.RESOLVE_NO_SYMLINKS
                return syscalls.openat2(self._root, paths.relative(path), flags, mode, resolve)
            return self._walk(path, flags, mode, links)
        except OSError as exc:
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
                        current = _swap(current, _descend_from(self._root, trail, os.O_PATH))
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
                            current = _swap(current, os.dup(self._root))
                        pending.extend(
                            reversed([p for p in target.split("/") if p not in ("", ".")])
                        )
                        continue
                if last:
                    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=current)
                current = _swap(current, os.open(name, _DIR_STEP, dir_fd=current))
                trail.append(name)
            return _reopen(current, flags)  # the path ended at a folder ("/", "..", a link)
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
    def _parent(
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
            if self._reserved is not None and use != UNCHECKED:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                else:
                    self._check_reserved(st, use, path)
            yield fd, name

    def _check_reserved(self, st: os.stat_result, use: str, path: str) -> None:
        """EACCES if ``use`` of the object with this lstat touches the server's files."""
        assert self._reserved is not None
        try:
            self._reserved.check_name(st, change=use != READ)
            if use == MOVE and stat.S_ISDIR(st.st_mode) and self._reserved.held_in(st):
                raise ReservedError(errno.EACCES, HOLDS_REFUSED)
        except OSError as exc:
            exc.filename = path
            raise

    # -- reading --------------------------------------------------------------------

    def stat(self, path: str) -> os.stat_result:
        """stat, following symlinks inside the root."""
        with self._fd(path) as fd:
            return os.fstat(fd)

    def stat_cached(self, path: str, follow: bool = True) -> os.stat_result | None:
        """``stat`` (or ``lstat``) from the kernel's caches only: None when answering would
        need the disk, another mount or an old kernel (no RESOLVE_CACHED). Safe on an
        event loop: the lookup is dcache-only and fstat of a local inode does no I/O."""
        if not self._cached_lookups or self._local_device() is None:
            return None
        flags = os.O_PATH | (0 if follow else os.O_NOFOLLOW)
        try:
            if self._reserved is not None and path != "/":
                return self._cached_stat_beside(path, follow)
            fd = self._cached_open(self._root, path, flags, _RESOLVE)
            if fd is None:
                return None
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            exc.filename = path
            raise

    def _cached_stat_beside(self, path: str, follow: bool) -> os.stat_result | None:
        """``stat_cached`` with reserved files: from the folder of the last name,
        checked first; None for a link to follow (a worker follows it)."""
        assert self._reserved is not None
        parent, name = paths.split(path)
        pfd = self._cached_open(self._root, parent, os.O_PATH | os.O_DIRECTORY, _RESOLVE)
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
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if stat.S_ISLNK(st.st_mode) and follow:
            return None
        self._reserved.check_name(st, change=False)
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

    def _local_device(self) -> int | None:
        """The device of the root's filesystem if that is local, else None (read from
        procfs once; a jail cut from a local root learns it in ``sub``)."""
        if self._local_dev == -1:
            local = _fs_type(self._root) in _LOCAL_FS
            self._local_dev = os.fstat(self._root).st_dev if local else None
        return self._local_dev

    def _on_local_fs(self, st: os.stat_result) -> bool:
        """Whether a file with this stat lives on the root's own local filesystem."""
        return st.st_dev == self._local_device()

    def lstat(self, path: str) -> os.stat_result:
        """stat of the name itself (a symlink is not followed)."""
        if path == "/":
            return os.fstat(self._root)
        with self._parent(path, use=UNCHECKED) as (dfd, name):
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if self._reserved is not None:
            self._check_reserved(st, READ, path)
        return st

    def readlink(self, path: str) -> str:
        """The target of the symlink ``path``, as stored."""
        with self._parent(path, "read a link at", READ) as (dfd, name):
            return os.readlink(name, dir_fd=dfd)

    def listdir(self, path: str, dots: bool = False, position: int = 0) -> Listing:
        """Open the folder ``path`` for listing; with ``dots`` it starts with ``.`` and
        ``..`` as readdir(3) gives them (``..`` of the jail's root is the root itself).
        A ``position`` (a listing's ``position`` before) goes on after that name."""
        fd = self._open(path, os.O_RDONLY | os.O_DIRECTORY)
        if not dots:
            try:
                return Listing(fd, self._reserved, position=position)
            except BaseException:
                os.close(fd)
                raise
        try:
            here = os.fstat(fd)
            up = os.stat("..", dir_fd=fd)
            if identity(here) == identity(os.fstat(self._root)):
                up = here  # as in a chroot: nothing lies above the root
        except BaseException:
            os.close(fd)
            raise
        return Listing(fd, self._reserved, [Entry(".", here), Entry("..", up)])

    def statvfs(self, path: str = "/") -> os.statvfs_result:
        """Capacity of the filesystem that holds ``path``."""
        with self._fd(path) as fd:
            return os.statvfs(fd)

    def read_bytes(self, path: str, limit: int = 1 << 20) -> bytes:
        """Read a small regular file whole (at most ``limit`` bytes)."""
        file = self.open_file(path, os.O_RDONLY)
        try:
            return file.read(0, limit)
        finally:
            file.close()

    # -- opening files --------------------------------------------------------------

    def open_file(self, path: str, flags: int, mode: int = 0o666) -> OpenFile:
        """Open a regular file for data; never opens a FIFO or device.

        An existing file is first reached with O_PATH, checked to be regular and then
        reopened through its fd, so the open that reads or writes can never block on a
        FIFO or wake a device. A new file is created with O_NONBLOCK and checked too.
        """
        access = flags & (os.O_ACCMODE | os.O_APPEND | os.O_TRUNC)
        try:
            pfd = self._open(path, os.O_PATH)
        except FileNotFoundError:
            if not flags & os.O_CREAT:
                raise
            fd, st = self._create(path, flags, mode)
            created = OpenFile(fd, path, self._on_local_fs(st))
            created.created = True
            return created
        try:
            if flags & os.O_CREAT and flags & os.O_EXCL:
                raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), path)
            st = os.fstat(pfd)
            if stat.S_ISDIR(st.st_mode):
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.ENXIO, _NOT_REGULAR, path)
            if self._reserved is not None and access & _CHANGES:
                self._check_reserved(st, CHANGE, path)
            fd = os.open(syscalls.proc_link(pfd), access | os.O_CLOEXEC)
            file = OpenFile(fd, path, self._on_local_fs(st))
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
            mode = 0o666 & ~_umask()
            owner = None
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                if stat.S_ISDIR(st.st_mode):
                    raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
                if self._reserved is not None:
                    self._check_reserved(st, MOVE, path)  # it would be replaced
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
                self._check_reserved(st, CHANGE, path)  # (it appeared since the lookup)
            except OSError:
                os.close(fd)
                raise
        os.set_blocking(fd, True)
        return fd, st

    # -- changing names ---------------------------------------------------------------

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        """Create the folder ``path``."""
        if path == "/":
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), path)
        with self._parent(path) as (dfd, name):
            os.mkdir(name, mode, dir_fd=dfd)

    def rmdir(self, path: str) -> None:
        """Remove the empty folder ``path``; one whose only members are temp files of no
        live upload (left by a killed server) counts as empty: they go first."""
        with self._parent(path, "remove", MOVE) as (dfd, name):
            try:
                os.rmdir(name, dir_fd=dfd)
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY or not _clear_leftovers(dfd, name):
                    raise
                os.rmdir(name, dir_fd=dfd)

    def unlink(self, path: str) -> None:
        """Remove the non-folder ``path`` (a symlink itself, never its target)."""
        with self._parent(path, "remove", MOVE) as (dfd, name):
            os.unlink(name, dir_fd=dfd)

    def symlink(self, target: str, path: str) -> None:
        """Create the symlink ``path`` pointing to ``target`` (stored as given)."""
        if "\0" in target:
            raise OSError(errno.EINVAL, "Invalid argument: link target contains a NUL byte")
        with self._parent(path, "replace") as (dfd, name):
            os.symlink(target, name, dir_fd=dfd)

    def link(self, existing: str, new: str) -> None:
        """Create the hard link ``new`` to ``existing`` (a symlink is linked itself)."""
        with (
            self._parent(existing, "link") as (sfd, sname),
            self._parent(new, "replace") as (
                dfd,
                dname,
            ),
        ):
            os.link(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)

    def rename(self, old: str, new: str, replace: bool) -> None:
        """Rename ``old`` to ``new``; with ``replace`` false an existing ``new`` is an error."""
        with (
            self._parent(old, "rename", MOVE) as (sfd, sname),
            self._parent(new, "replace") as (
                dfd,
                dname,
            ),
        ):
            try:
                if replace:
                    os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
                    return
                _rename_noreplace(sfd, sname, dfd, dname)
            except OSError as exc:
                raise _rename_error(exc, sfd, sname, old, new) from None

    @without_turn
    def remove_tree(self, path: str) -> None:
        """Remove ``path`` and, for a folder, everything below it (no recursion, no links
        followed; at most three fds are held whatever the depth)."""
        with self._parent(path, "remove", MOVE) as (dfd, name):
            if not stat.S_ISDIR(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=dfd)
                return
            top = os.open(name, _DIR_READ, dir_fd=dfd)
            try:
                self._empty_folder(top)
            finally:
                os.close(top)
            os.rmdir(name, dir_fd=dfd)

    def _empty_folder(self, top: int) -> None:
        """Remove everything below the folder ``top``, depth first, in time linear in
        the tree's size and depth, holding two fds at most: a folder is left for its
        parent through ``..``, checked to be the folder it came from (by identity; if it
        was moved meanwhile, the parent is found again by name from ``top``). Nothing
        the server keeps is removed: a folder or file among the reserved ones, met
        through a bind mount or a link made by hand, stops the removal (EACCES)."""
        trail: list[str] = []  # names from ``top`` to the folder being emptied
        keys = [identity(os.fstat(top))]  # the identities of the folders on the trail
        fd = os.dup(top)
        try:
            while True:
                child = self._unlink_files_until_folder(fd)
                if child is not None:
                    below = os.open(child, _DIR_READ, dir_fd=fd)
                    trail.append(child)
                    keys.append(identity(os.fstat(below)))
                    fd = _swap(fd, below)
                    continue
                if not trail:
                    return
                emptied = trail.pop()
                keys.pop()
                up = os.open("..", _DIR_READ, dir_fd=fd)
                if identity(os.fstat(up)) != keys[-1]:
                    os.close(up)
                    up = _descend_from(top, trail, _DIR_READ)
                fd = _swap(fd, up)
                os.rmdir(emptied, dir_fd=fd)
        finally:
            os.close(fd)

    def _unlink_files_until_folder(self, fd: int) -> str | None:
        """Remove the folder's non-folders until it meets a folder: return that folder's
        name, or None once the folder is empty."""
        guard = self._reserved
        with os.scandir(fd) as entries:
            for entry in entries:
                if guard is not None:  # (every entry: a bind mount may bring them here)
                    try:
                        guard.check_name(entry.stat(follow_symlinks=False), change=True)
                    except OSError as exc:
                        exc.filename = entry.name
                        raise
                if entry.is_dir(follow_symlinks=False):
                    return entry.name
                os.unlink(entry.name, dir_fd=fd)
        return None

    @without_turn
    def copy_file(self, src: str, dst: str, mode_mask: int = 0o7777, stop: Stop = _never) -> None:
        """Copy a regular file's content, mode (the bits in ``mode_mask``) and times; the
        target appears whole or not (ECANCELED once ``stop()`` is true)."""
        source = self.open_file(src, os.O_RDONLY)
        try:
            st = source.stat()
            target = self.atomic_file(dst)
            _fill(target, source, st, mode_mask, stop)
            target.commit()
        finally:
            source.close()

    @without_turn
    def copy_tree(self, src: str, dst: str, mode_mask: int = 0o7777, stop: Stop = _never) -> None:
        """Copy a file, or a folder with everything below it, to ``dst``, which must not
        exist yet: links are copied as links, FIFOs, sockets and devices are not copied,
        files appear whole with their times and mode (the bits in ``mode_mask``).

        A folder is never copied into itself, by path or by identity (a link or a bind
        mount on the way to ``dst``); it is walked with held fds at any depth (see
        ``_copy_folder``), and a copy that fails part-way removes what it made (as one
        that ``stop()`` ends, ECANCELED, when the asker has gone).
        """
        top = self.lstat(src)
        if dst == src:
            raise OSError(errno.EINVAL, "Source and destination are the same", dst)
        if paths.is_within(dst, src):
            raise OSError(errno.EINVAL, _INTO_ITSELF, dst)
        if not stat.S_ISDIR(top.st_mode):
            self._copy_entry(src, dst, top, mode_mask, stop)
            return
        with self._parent(src, "copy", READ) as (sdfd, sname):
            source = os.open(sname, _DIR_READ, dir_fd=sdfd)
        try:
            here = os.fstat(source)
            if self._reserved is not None:
                self._check_reserved(here, READ, src)  # (the name checked before may have moved)
            with self._parent(dst, "replace") as (ddfd, dname):
                self._refuse_copy_into(ddfd, identity(here), dst)
                os.mkdir(dname, 0o700, dir_fd=ddfd)
                target = os.open(dname, _DIR_READ, dir_fd=ddfd)
            try:
                self._copy_folder(source, target, mode_mask, src, stop)
            except BaseException:
                self._discard_copy(dst, target)
                raise
            finally:
                os.close(target)
        finally:
            os.close(source)

    def _refuse_copy_into(self, parent: int, source: Identity, dst: str) -> None:
        """EINVAL if the folder ``parent`` (where the copy is to be made) is the folder
        ``source`` or lies below it, whatever path led there: walked up through ``..``
        to the jail's root."""
        here = identity(os.fstat(parent))
        top = identity(os.fstat(self._root))
        if here == source or (here != top and walk_up(parent, here, {source, top}) == source):
            raise OSError(errno.EINVAL, _INTO_ITSELF, dst)

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
        with self._parent(inner, use=UNCHECKED) as (dfd, name):
            if identity(os.stat(name, dir_fd=dfd, follow_symlinks=False)) == key:
                return True
            here = identity(os.fstat(dfd))
            return here == key or (here != top and walk_up(dfd, here, {key, top}) == key)

    def _discard_copy(self, dst: str, target: int) -> None:
        """Remove what a copy that failed part-way made below ``dst`` (the folder
        ``target``), and the folder itself if the name still holds it."""
        with contextlib.suppress(OSError):
            made = identity(os.fstat(target))
            self._empty_folder(target)
            with self._parent(dst, "remove", UNCHECKED) as (dfd, name):
                if identity(os.stat(name, dir_fd=dfd, follow_symlinks=False)) == made:
                    os.rmdir(name, dir_fd=dfd)

    def _copy_folder(self, source: int, target: int, mode_mask: int, src: str, stop: Stop) -> None:
        """Copy everything below the folder ``source`` into the new, empty folder
        ``target``, depth first, in time linear in the tree's size and depth.

        The walk holds four fds whatever the depth (both tops, and the folder being
        copied with its copy; copying one file takes up to four more meanwhile): names
        are opened relative to the folder that holds them, never following a link, and
        a folder is left for its parent through ``..``, checked by identity to be the
        folder it came from (if it was moved meanwhile, the parent is found again by name
        from the top). A folder's links and files are copied as it is read, and its
        subfolders wait by name (memory for the names waiting, never an fd each); it
        gets its mode and times once everything below it is in place.

        Every entry is checked against the server's own files (see ``_leaves_out``).
        A folder met twice on one way down (a bind mount of a folder above: a cycle, as
        rm and find call it) stops the copy with ELOOP, and the copy's own folder met in
        the source with EINVAL (it would copy without end). An error names the entry
        below ``src`` where it happened (``src/…/name``: the whole path may be too long).
        """
        umask = _umask()
        made = identity(os.fstat(target))
        trail: list[str] = []  # the names from the tops to the folder being copied
        keys: list[tuple[Identity, Identity]] = []  # the folders on the trail, and copies
        seen: set[Identity] = set()  # the source folders on the trail
        levels: list[tuple[os.stat_result, list[str]]] = []  # each one's subfolders to copy
        sfd, tfd = os.dup(source), -1
        try:
            tfd = os.dup(target)
            here = os.fstat(sfd)
            while True:
                keys.append((identity(here), identity(os.fstat(tfd))))
                seen.add(keys[-1][0])
                levels.append((here, self._copy_members(sfd, tfd, mode_mask, stop)))
                while True:
                    folder, waiting = levels[-1]
                    if waiting:
                        opened = self._open_copied_folder(sfd, tfd, waiting.pop(), made, seen)
                        if opened is None:
                            continue  # gone since it was listed
                        name, below, copy, here = opened
                        sfd, tfd = _swap(sfd, below), _swap(tfd, copy)
                        trail.append(name)
                        break
                    _finish_copied_folder(tfd, folder, umask)
                    levels.pop()
                    seen.discard(keys.pop()[0])
                    if not trail:
                        return
                    trail.pop()
                    sfd = _swap(sfd, _back_up(sfd, keys[-1][0], source, trail))
                    tfd = _swap(tfd, _back_up(tfd, keys[-1][1], target, trail))
        except OSError as exc:
            exc.filename = f"{src.rstrip('/')}/{'…/' if trail else ''}{exc.filename or ''}"
            raise
        finally:
            os.close(sfd)
            if tfd >= 0:
                os.close(tfd)

    def _copy_members(self, sfd: int, tfd: int, mode_mask: int, stop: Stop) -> list[str]:
        """Copy the links and regular files of the folder ``sfd`` into the folder ``tfd``
        (FIFOs, sockets, devices and uploads in flight are left out); return the names of
        its folders."""
        folders: list[str] = []
        with os.scandir(sfd) as entries:
            for entry in entries:
                name = entry.name
                if upload_temps.is_temp(name):
                    continue  # an upload in flight is not a file yet
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed meanwhile
                try:
                    if self._reserved is not None and self._leaves_out(sfd, name, st):
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        folders.append(name)
                    elif stat.S_ISLNK(st.st_mode):
                        os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=tfd)
                    elif stat.S_ISREG(st.st_mode):
                        self._copy_file_at(sfd, tfd, name, mode_mask, stop)
                except OSError as exc:
                    exc.filename = name
                    raise
        return folders

    def _leaves_out(self, sfd: int, name: str, st: os.stat_result) -> bool:
        """Whether a copy leaves out the entry ``name`` (lstat ``st``) of the folder
        ``sfd`` as the server's own: the state folder in the folder that holds it (where
        listings leave it out too). Met anywhere else (a mount point: a bind mount of it),
        or a state file met anywhere (a bind mount or a hard link of one), the copy stops
        with EACCES before anything of it is read."""
        assert self._reserved is not None
        if identity(st) in self._reserved.hidden and stat.S_ISDIR(st.st_mode):
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
            try:
                if _mount_id(fd) == _mount_id(sfd):
                    return True
            finally:
                os.close(fd)
        self._reserved.check_name(st, change=False)
        return False

    def _open_copied_folder(
        self, sfd: int, tfd: int, name: str, made: Identity, seen: set[Identity]
    ) -> tuple[str, int, int, os.stat_result] | None:
        """Open the subfolder ``name`` of the folder ``sfd`` and make its copy in ``tfd``:
        the name, both fds and the source's stat; None if the source is gone."""
        try:
            below = os.open(name, _DIR_READ, dir_fd=sfd)
        except FileNotFoundError:
            return None
        try:
            here = os.fstat(below)
            if identity(here) == made:
                raise OSError(errno.EINVAL, _INTO_ITSELF, name)
            if identity(here) in seen:
                raise OSError(errno.ELOOP, "The tree holds a folder above itself", name)
            if self._reserved is not None:
                self._reserved.check_name(here, change=False)  # (put there since it was read)
            os.mkdir(name, 0o700, dir_fd=tfd)
            return name, below, os.open(name, _DIR_READ, dir_fd=tfd), here
        except BaseException:
            os.close(below)
            raise

    def _copy_file_at(self, sfd: int, tfd: int, name: str, mode_mask: int, stop: Stop) -> None:
        """Copy the regular file ``name`` of the folder ``sfd`` into the folder ``tfd``
        through an ``AtomicFile`` (whole or not at all; a name that appeared meanwhile
        is never replaced: EEXIST). It is reached with O_PATH and opened for reading
        only once it is known to be a regular file and none of the server's own, so a
        FIFO or device put in its place is never opened."""
        pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
        try:
            st = os.fstat(pfd)
            if not stat.S_ISREG(st.st_mode):
                return  # no longer a file: what was put in its place is not copied
            if self._reserved is not None:
                self._reserved.check_name(st, change=False)
            fd = os.open(syscalls.proc_link(pfd), os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(pfd)
        source = OpenFile(fd, name)
        try:
            dir_fd = os.dup(tfd)
            try:
                target = AtomicFile(dir_fd, name, name, 0o600)
            except BaseException:
                os.close(dir_fd)  # (the AtomicFile owns it only once its temp file exists)
                raise
            _fill(target, source, st, mode_mask, stop)
            target.commit(replace=False)
        finally:
            source.close()

    def _copy_entry(
        self, src: str, dst: str, st: os.stat_result, mode_mask: int, stop: Stop
    ) -> None:
        if stat.S_ISLNK(st.st_mode):
            self.symlink(self.readlink(src), dst)
        elif stat.S_ISREG(st.st_mode):
            if self._exists(dst):
                raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
            self.copy_file(src, dst, mode_mask, stop)
        # FIFOs, sockets and devices are not copied: their data is never opened.

    def _exists(self, path: str) -> bool:
        try:
            self.lstat(path)
        except FileNotFoundError:
            return False
        return True

    # -- changing attributes -------------------------------------------------------------

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
                    self._check_reserved(os.fstat(fd), CHANGE, path)
                self._set_on_fd(fd, size, mode, owner, times)
            return
        with self._parent(path) as (dfd, name):
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
                os.ftruncate(wfd, _size(size))
            finally:
                os.close(wfd)
        if owner is not None:
            os.chown(syscalls.proc_link(fd), *owner)
        if mode is not None:
            os.chmod(syscalls.proc_link(fd), mode & 0o7777)
        if times is not None:
            os.utime(syscalls.proc_link(fd), ns=(times.atime_ns, times.mtime_ns))
