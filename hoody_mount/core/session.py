"""One user's view of the filesystem: every front's operations go through here.

Each operation runs the same steps: normalise the client's path once (relative paths
start at the user's home), check the permission, call the user's jailed VFS, log
changes. Methods are blocking; errors are ``OSError`` with the right errno.
"""

from __future__ import annotations

import copy
import errno
import functools
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

from . import disk_usage, filesystems, logs, paths, permissions, sqlite_snapshots, upload_temps
from .atomic_files import AtomicFile, without_privileges
from .counters import COUNTERS, counted_as
from .disk_usage import Summary, Walk
from .filesystems import Usage
from .listing import Listing
from .locks import Lock, Locked, LockTable
from .mounts import Mount
from .names import NameMap
from .open_files import COPY_BLOCK, OpenFile, Times, next_piece
from .reserved import Identity, ReservedError
from .resolution import CHANGE
from .sqlite_snapshots import Snapshot, Upload
from .tree_reads import TreeRead
from .users import User
from .vfs import VFS

audit = logging.getLogger("hoody_mount.audit")
# Downloads and logins: the operator may turn this one down (``access_log = false``).
access = logging.getLogger("hoody_mount.access")

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_TEMP_NAME = (
    "Permission denied: names like .NAME.hoody-<12 hex digits>.part are the server's "
    "(uploads in progress)"
)
ST_RDONLY = 1
ST_NOSUID = 2
Owner = tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a client sees of the filesystem's size (statvfs fields)."""

    bsize: int
    frsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    favail: int
    fsid: int
    flag: int
    namemax: int


P = ParamSpec("P")
R = TypeVar("R")


def _logs_refusals(
    op: str,
) -> Callable[[Callable[Concatenate[Session, P], R]], Callable[Concatenate[Session, P], R]]:
    """A session operation whose refusal to touch the server's own files is logged as a
    warning (an attempt on the host key or the tokens is worth a line)."""

    def wrap(method: Callable[Concatenate[Session, P], R]) -> Callable[Concatenate[Session, P], R]:
        def call(session: Session, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(session, *args, **kwargs)
            except ReservedError as exc:
                audit.warning(
                    'refused user=%s proto=%s op=%s path="%s": %s',
                    session.user.name, session.protocol, op, exc.filename, exc.strerror,
                )  # fmt: skip
                raise

        functools.update_wrapper(call, method)
        return call

    return wrap


class SameFile(OSError):
    """A move or copy onto its own source (``Session.check_replace``)."""

    TEXT = "the destination is the source or another name of the same file (a hard link)"


class Session:
    """The operations one user may do, checked and confined."""

    def __init__(self, user: User, vfs: VFS, names: NameMap, protocol: str) -> None:
        self.user = user
        self._vfs = vfs
        self.names = names
        self.protocol = protocol
        self.home = user.home
        # Whether the client that asked has gone: long operations (copies) stop then. An
        # HTTP request's session asks the connection; an SSH channel's never stops.
        self.gone: Callable[[], bool] = lambda: False
        # The mounts of the served root, by its paths (set by ``Sessions.open``).
        self.mounts: Callable[[], list[Mount]] = list
        # The lock table every change is checked against (set by ``Sessions.open``), the
        # lock tokens the request brings, and whether its front checked the locks of the
        # path as named itself (WebDAV: WsgiDAV does, with the same table; where a link
        # leads is still checked here, which WsgiDAV does not know).
        self.locks = LockTable(None)
        self.lock_tokens: frozenset[str] = frozenset()
        self.locks_checked = False

    def close(self) -> None:
        """Release the jail's fd; files opened through the session stay usable."""
        self._vfs.close()

    # -- helpers ------------------------------------------------------------------

    def path(self, raw: str) -> str:
        """The virtual path of what the client sent (relative to the home folder).

        A name of the form of an upload's hidden temp file is the server's own: no
        user may make, read or remove one (listings never show them, and a folder of
        nothing else is removed with them), so such a path is EACCES."""
        path = paths.normalize(raw, self.home)
        if upload_temps.MARK in path and any(map(upload_temps.is_temp, path.split("/"))):
            raise OSError(errno.EACCES, _TEMP_NAME, path)
        return path

    def may(self, op: str) -> bool:
        """Whether this session's user may do ``op`` (see ``permissions.OPERATIONS``)."""
        return permissions.may(self.user, op)

    def refusal(self, op: str) -> str | None:
        """Why this session's user may not do ``op``, or None if they may."""
        return permissions.refusal(self.user, op)

    def check(self, op: str, path: str) -> None:
        """Raise EACCES (and note it in the audit log) unless the user may do ``op``."""
        why = self.refusal(op)
        if why is not None:
            audit.warning(
                'refused user=%s proto=%s op=%s path="%s": %s',
                self.user.name,
                self.protocol,
                op,
                path,
                why,
            )
            raise OSError(errno.EACCES, f"Permission denied: {why}", path)

    def in_root(self, path: str) -> str:
        """Where this user's virtual ``path`` lies in the served root (keys shared by
        every user, such as WebDAV's locks and properties, use it)."""
        return paths.in_root(self.user.root, path)

    def in_jail(self, path: str) -> str | None:
        """This user's virtual path of the served root's ``path``; None outside the jail."""
        return paths.in_jail(self.user.root, path)

    @property
    def jailed(self) -> bool:
        """Whether the user is confined to a sub-folder (and so is no administrator)."""
        return self.user.root != "/"

    def _create_mode(self, mode: int) -> int:
        """Mode bits for a new file or folder: jailed users never create setuid/setgid."""
        return mode & (0o1777 if self.jailed else 0o7777)

    def _check_attrs(self, current: os.stat_result, mode: int | None, owner: Owner) -> None:
        """Jailed users may not set setuid/setgid bits or give files to other owners.

        The server runs as root, so either would let a share user plant a privileged file
        in the container.
        """
        if not self.jailed:
            return
        if mode is not None and mode & 0o6000:
            raise OSError(errno.EPERM, "Setting setuid or setgid bits is not allowed here")
        if owner is not None:
            uid, gid = owner
            if uid not in (-1, current.st_uid) or gid not in (-1, current.st_gid):
                raise OSError(errno.EPERM, "Changing the owner is not allowed here")

    def _unlocked(self, path: str, *, member: bool = False, tree: bool = False) -> None:
        """``Locked`` unless no lock the request does not hold covers a change of
        ``path`` (``member``: creating, removing or renaming it; ``tree``: of everything
        below it too), as named and where its links lead. No locks: one test."""
        if not self.locks:
            return
        if not self.locks_checked:
            self.locks.check(
                self.in_root(path), self.user.name, self.lock_tokens,
                member=member, tree=tree, shown=path,
            )  # fmt: skip
        # (and where links lead: a link to a locked file, or into a locked folder, must
        # not be a way around its lock, in any protocol)
        real = self._vfs.real_path(path)
        if real is not None and real != path:
            self.locks.check(
                self.in_root(real), self.user.name, self.lock_tokens,
                member=member, tree=tree, shown=path,
            )  # fmt: skip

    def _unlocked_target(self, path: str) -> None:
        """``_unlocked`` for a file written whole: a change of its folder's members when
        it does not exist yet."""
        if self.locks:
            try:
                self._vfs.lstat(path)
                member = False
            except FileNotFoundError:
                member = True
            self._unlocked(path, member=member)

    def _gone(self, path: str) -> None:
        """A resource that is gone (removed, or moved away) takes its locks with it."""
        if self.locks:
            self.locks.forget(self.in_root(path))

    def take_lock(
        self, raw: str, *, timeout: float, depth: str = "0", shared: bool = False, owner: str = ""
    ) -> Lock:
        """Lock a file or folder that exists (``Locked`` when a lock held by others
        conflicts: an exclusive lock meets any other, a shared one an exclusive)."""
        path = self.path(raw)
        self.check("lock", path)
        self._vfs.lstat(path)
        why = self.lock_refusal(path)
        if why is not None:
            raise OSError(errno.EACCES, why, path)
        where = self.in_root(path)
        for lock in self.locks.on(where, below=depth == "infinity") + self._above(where):
            if not shared or lock.scope == "exclusive":
                raise Locked(path, lock)
        lock = self.locks.create(
            where, principal=self.user.name, depth=depth,
            scope="shared" if shared else "exclusive", owner=owner.encode(), timeout=timeout,
        )  # fmt: skip
        self._done("lock", path, extra=f" depth={depth} lock={lock.id}")
        return lock

    def lock_refusal(self, raw: str) -> str | None:
        """Why ``raw`` cannot be locked, or None: a path through a link (to a file or
        into a folder) is refused, as its lock would lie on the link's name while the
        file it protects is changed by its own (a change is checked where links lead,
        never where links that lead there lie)."""
        path = self.path(raw)
        real = self._vfs.real_path(path)
        if real is None or real == path:
            return None
        return f"{path} leads through a link to {real}: lock {real} itself"

    def _above(self, where: str) -> list[Lock]:
        """The depth-infinity locks on the folders above the served root's ``where``."""
        found: list[Lock] = []
        while where != "/":
            where = where.rsplit("/", 1)[0] or "/"
            found += [lock for lock in self.locks.on(where) if lock.depth == "infinity"]
        return found

    def release_lock(self, raw: str, token: str) -> Lock:
        """Release the lock ``token`` of this user on ``raw`` (a ``LookupError`` when
        there is no such lock there)."""
        path = self.path(raw)
        lock = self.locks.get(token)
        if lock is None or lock.path != self.in_root(path) or lock.principal != self.user.name:
            raise LookupError(f"no lock of yours with that token on {path}")
        self.locks.delete(token)
        self._done("unlock", path, extra=f" lock={lock.id}")
        return lock

    def _done(self, op: str, *targets: str, extra: str = "") -> None:
        """The audit line of a change (written by the log thread, see ``logs.later``;
        the formatter escapes names, so each line is one line)."""
        logs.later(
            audit,
            "user=%s proto=%s op=%s path=" + " -> ".join(['"%s"'] * len(targets)) + "%s",
            self.user.name,
            self.protocol,
            op,
            *targets,
            extra,
        )

    def may_change(self, raw: str) -> None:
        """``Locked`` unless the request may change ``raw`` despite the locks (for a
        change a front keeps outside the filesystem: a WebDAV dead property)."""
        self._unlocked(self.path(raw))

    def changed(self, op: str, raw: str, detail: str = "") -> None:
        """The audit line of a change a front makes outside the filesystem (a WebDAV
        dead property, kept in the front's own store)."""
        self._done(op, self.path(raw), extra=detail)

    def _track(self, file: OpenFile, flags: int) -> OpenFile:
        """Log what happened to an open file when it closes: one audit line for a
        change (created, truncated or written: bytes written), one access line for a
        download (bytes read, seconds)."""
        user, protocol, truncates = self.user.name, self.protocol, bool(flags & os.O_TRUNC)
        shown = (counted_as(protocol),)

        def closed(done: OpenFile) -> None:
            COUNTERS.add("bytes_received", shown, done.bytes_written)
            COUNTERS.add("bytes_sent", shown, done.bytes_read)
            if done.created or truncates or done.bytes_written:
                how = "create" if done.created else "truncate" if truncates else "update"
                logs.later(
                    audit,
                    "user=%s proto=%s op=write path=\"%s\" bytes=%d (%s)",
                    user, protocol, done.path, done.bytes_written, how,
                )  # fmt: skip
            if done.bytes_read:
                logs.later(
                    access,
                    "user=%s proto=%s op=read path=\"%s\" bytes=%d seconds=%.3f",
                    user, protocol, done.path, done.bytes_read, time.monotonic() - done.opened,
                )  # fmt: skip

        file.on_close = closed
        return file

    # -- reading --------------------------------------------------------------------

    @_logs_refusals("stat")
    def stat(self, raw: str, follow: bool = True) -> os.stat_result:
        """stat (or lstat with ``follow`` false)."""
        path = self.path(raw)
        return self._vfs.stat(path) if follow else self._vfs.lstat(path)

    def check_replace(self, raw_src: str, raw_dst: str, above: bool = False) -> None:
        """Refuse (``SameFile``, EINVAL) a move or copy over ``raw_dst`` when both name
        one file (the same name, or hard links): rename(2) does nothing then yet succeeds
        (SFTP's rename keeps that, as OpenSSH's). With ``above``, also when ``raw_dst``,
        links followed, is a folder above the source (``holds``): a WebDAV replace deletes
        the destination first, and the source with it (a rename gets ENOTEMPTY there)."""
        src, dst = self.path(raw_src), self.path(raw_dst)
        if self._vfs.holds(dst, src) if above else self._same_entry(src, dst):
            raise SameFile(errno.EINVAL, SameFile.TEXT, dst)

    def _same_entry(self, a: str, b: str) -> bool:
        try:
            first, second = self._vfs.lstat(a), self._vfs.lstat(b)
        except FileNotFoundError:
            return False
        return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)

    @_logs_refusals("stat")
    def stat_cached(self, raw: str, follow: bool = True) -> os.stat_result | None:
        """``stat`` from the kernel's caches alone, safe on an event loop; None means
        that answering needs the disk: call ``stat`` on a worker."""
        return self._vfs.stat_cached(self.path(raw), follow)

    def attrs_unchanged(self, raw: str, follow: bool, mode: int | None, owner: Owner) -> bool:
        """Whether setting only ``mode`` and ``owner`` on ``raw`` would change nothing,
        known from the kernel's caches (safe on an event loop): the user may setstat, no
        lock is held anywhere, the file's attributes may change (no read-only mount, not
        immutable: there the kernel refuses even a no-op), and they are already those
        (tar as root sets each file's owner and mode to the ones it already has). False
        means: ask ``set_attrs`` on a worker, which says why if it refuses."""
        if mode is None and owner is None or self.locks or not self.may("setstat"):
            return False
        if mode is not None and self.jailed and mode & 0o6000:
            return False  # (refused by ``_check_attrs``)
        try:
            st = self._vfs.stat_cached(self.path(raw), follow, settable=True)
        except OSError:  # (the worker's set_attrs says why)
            return False
        if st is None or mode is not None and stat.S_IMODE(st.st_mode) != mode & 0o7777:
            return False
        uid, gid = owner if owner is not None else (-1, -1)
        return uid in (-1, st.st_uid) and gid in (-1, st.st_gid)

    def loop_view(self) -> Session | None:
        """This session for calls made on an event loop, when its jail lies on a memory
        filesystem (see ``Resolver.loop_view``; None elsewhere). Its calls raise
        ``OffLoop`` where they would leave that filesystem: make them on a worker then.
        It shares this session's jail: never close it."""
        vfs = self._vfs.loop_view()
        if vfs is None:
            return None
        view = copy.copy(self)
        view._vfs = vfs
        return view

    @_logs_refusals("list")
    def listdir(self, raw: str, dots: bool = False, position: int = 0) -> Listing:
        """Open a folder for listing (with ``dots``: ``.`` and ``..`` first; from a
        ``position`` a listing of it reached before)."""
        self.names.refresh()
        return self._vfs.listdir(self.path(raw), dots, position)

    @_logs_refusals("read")
    def read_tree(self, raw: str) -> TreeRead:
        """Read the folder ``raw`` and everything below it, entry by entry (an archive's
        walk); the caller reports what it sent with ``tree_sent`` once done."""
        path = self.path(raw)
        self.check("read", path)
        return self._vfs.read_tree(path)

    def tree_sent(self, tree: TreeRead, op: str, sent: int, entries: int, seconds: float) -> None:
        """The access line of a tree sent whole (one line, not one per file), and its
        bytes counted as sent."""
        COUNTERS.add("bytes_sent", (counted_as(self.protocol),), sent)
        logs.later(
            access,
            'user=%s proto=%s op=%s path="%s" bytes=%d entries=%d seconds=%.3f',
            self.user.name, self.protocol, op, tree.path, sent, entries, seconds,
        )  # fmt: skip

    @_logs_refusals("readlink")
    def readlink(self, raw: str) -> str:
        """The stored target of a symlink."""
        return self._vfs.readlink(self.path(raw))

    @_logs_refusals("statvfs")
    def capacity(self, raw: str = "/") -> Capacity:
        """The real capacity of the filesystem holding ``raw``; read-only users see ST_RDONLY."""
        return self._capacity(self._vfs.statvfs(self.path(raw)))

    @_logs_refusals("statvfs")
    def filesystems(self) -> list[Usage]:
        """The jail's filesystem (at ``/``) and each mount inside the jail, by the user's
        paths (see ``filesystems.visible``)."""
        return filesystems.visible(self._vfs, self.user.root, self.mounts)

    @_logs_refusals("statvfs")
    def usage(self, raw: str) -> Usage:
        """The figures of the filesystem holding ``raw`` (see ``filesystems.Usage``)."""
        path = self.path(raw)
        return filesystems.usage(path, self._vfs.statvfs(path))

    @_logs_refusals("du")
    def disk_usage(self, raw: str, seconds: float) -> Summary:
        """``du -sb`` of each member of the folder ``raw`` and of the folder, within
        ``seconds`` (a summary made in the last few seconds is given again)."""
        path = self.path(raw)
        key = (self.user.root, path)
        summary = disk_usage.CACHE.get(key)
        if summary is None:
            summary = self._vfs.du_summary(path, time.monotonic() + seconds, self.gone)
            disk_usage.CACHE.put(key, summary)
        return summary

    @_logs_refusals("du")
    def du_walk(self, raw: str, follow: bool, seen: set[Identity]) -> Walk:
        """A ``du`` walk of ``raw``, run by its caller (see ``disk_usage.Walk``)."""
        return self._vfs.du_walk(self.path(raw), follow, seen)

    def file_capacity(self, file: OpenFile) -> Capacity:
        """``capacity`` of the filesystem holding an open file, wherever it has moved."""
        return self._capacity(file.statvfs())

    def _capacity(self, st: os.statvfs_result) -> Capacity:
        flag = st.f_flag & (ST_RDONLY | ST_NOSUID)  # the two bits SFTP defines
        if not permissions.may_write(self.user):
            flag |= ST_RDONLY
        return Capacity(
            st.f_bsize,
            st.f_frsize,
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_favail,
            st.f_fsid,
            flag,
            st.f_namemax,
        )

    # -- files ------------------------------------------------------------------------

    @_logs_refusals("open")
    def open(self, raw: str, flags: int, mode: int = 0o666) -> OpenFile:
        """Open a regular file; any flag that could write needs write access. What is
        written or read is logged when the file closes."""
        path = self.path(raw)
        if not flags & _WRITE_FLAGS:
            return self._track(self._vfs.open_file(path, flags, self._create_mode(mode)), flags)
        self.check("open-write", path)
        if flags & os.O_CREAT:
            self._unlocked_target(path)
        else:
            self._unlocked(path)
        file = self._vfs.open_file(path, flags, self._create_mode(mode))
        if self.jailed:
            try:
                self._drop_privileges(file)
            except BaseException:
                file.close()
                raise
        return self._track(file, flags)

    @staticmethod
    def _drop_privileges(file: OpenFile) -> None:
        """A file a jailed user may change loses its setuid and setgid bits first, as
        the kernel does for an unprivileged writer (the server, as root, keeps them)."""
        current = stat.S_IMODE(file.stat().st_mode)
        if without_privileges(current) != current:
            file.set_attrs(mode=without_privileges(current))

    @_logs_refusals("write")
    def write(self, file: OpenFile, offset: int, data: bytes | memoryview) -> None:
        """Write all of ``data`` at ``offset`` of an open file."""
        self.check("write", file.path)
        self._unlocked(file.path)
        file.write(offset, data)

    @_logs_refusals("write")
    def write_many(self, file: OpenFile, offset: int, pieces: list[memoryview]) -> None:
        """Write ``pieces``, one after the other, from ``offset`` of an open file
        (``ShortWrite`` if it fails once some bytes are written)."""
        self.check("write", file.path)
        self._unlocked(file.path)
        file.write_many(offset, pieces)

    def fsync(self, file: OpenFile) -> None:
        """Flush an open file to the disk."""
        self.check("fsync", file.path)
        file.fsync()

    @_logs_refusals("copy-data")
    def copy_data(
        self,
        src: OpenFile,
        src_offset: int,
        length: int,
        dst: OpenFile,
        dst_offset: int,
        stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Copy ``length`` bytes (0: to the end) between open files, never onto the same
        file; ECANCELED between two blocks once ``stop()`` is true. The bytes copied
        (fewer than ``length`` when the source ended)."""
        self.check("copy-data", dst.path)
        self._unlocked(dst.path)
        a, b = src.stat(), dst.stat()
        if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
            raise OSError(errno.EINVAL, "copy-data onto the same file is refused", dst.path)
        remaining = length or None
        copied = 0
        dst_end = b.st_size  # past it, a hole of the source stays a hole
        while remaining is None or remaining > 0:
            if stop():
                raise OSError(errno.ECANCELED, "Copy stopped: the client has gone", dst.path)
            chunk = COPY_BLOCK if remaining is None else min(COPY_BLOCK, remaining)
            hole, data = next_piece(src, src_offset, src.stat().st_size, chunk)
            if hole and remaining is not None:
                hole = min(hole, remaining)
            if hole and dst_offset >= dst_end:  # (past the target's end: it stays a hole)
                src_offset += hole
                dst_offset += hole
                copied += hole
                if remaining is not None:
                    remaining -= hole
                continue
            if hole:  # (over what the target holds: the hole's zeros are written)
                data = src.read(src_offset, chunk)
            if not data:
                break
            dst.write(dst_offset, data)
            dst_end = max(dst_end, dst_offset + len(data))
            src_offset += len(data)
            dst_offset += len(data)
            copied += len(data)
            if remaining is not None:
                remaining -= len(data)
        if dst_offset > dst_end:  # (the copy ended in a hole: the file grows to its end)
            dst.set_attrs(size=dst_offset)
        return copied

    @_logs_refusals("upload")
    def upload(self, raw: str) -> AtomicFile:
        """Start replacing the whole content of a file (committed only when complete;
        the commit writes the audit line, with the size and the digest if given)."""
        path = self.path(raw)
        self.check("upload", path)
        self._unlocked_target(path)
        upload = self._vfs.atomic_file(path, privileged=not self.jailed)
        upload.on_commit = self._committed
        return upload

    def _committed(self, upload: AtomicFile, digest: bytes | None) -> None:
        """The audit line of an upload, written once it replaced the target."""
        COUNTERS.add("bytes_received", (counted_as(self.protocol),), upload.size)
        sha = f" sha256={digest.hex()}" if digest is not None else ""
        self._done("upload", upload.path, extra=f" bytes={upload.size}{sha}")

    @_logs_refusals("copy")
    def copy_file(self, raw_src: str, raw_dst: str) -> None:
        """Copy a file's content, mode and times (the target appears whole or not at all;
        a jailed user's copy never carries setuid or setgid bits)."""
        src, dst = self.path(raw_src), self.path(raw_dst)
        self.check("copy", dst)
        self._unlocked_target(dst)
        self._vfs.copy_file(src, dst, self._create_mode(0o7777), self.gone)
        self._done("copy", src, dst)

    @_logs_refusals("copy")
    def copy_tree(self, raw_src: str, raw_dst: str) -> None:
        """Copy a file or a whole folder to a new name: one call of the core, one audit
        line for the whole tree (a copy that fails leaves nothing behind)."""
        src, dst = self.path(raw_src), self.path(raw_dst)
        self.check("copy", dst)
        self._unlocked(dst, member=True, tree=True)
        self._vfs.copy_tree(src, dst, self._create_mode(0o7777), self.gone)
        self._done("copy", src, dst)

    @_logs_refusals("remove-tree")
    def remove_tree(self, raw: str) -> None:
        """Remove a file, or a folder with everything below it."""
        path = self.path(raw)
        self.check("remove-tree", path)
        self._unlocked(path, member=True, tree=True)
        try:
            self._vfs.remove_tree(path)
        except OSError as exc:  # what was removed before the failure is gone: say so
            audit.warning(
                'failed user=%s proto=%s op=remove-tree path="%s": %s (the part before is gone)',
                self.user.name, self.protocol, path, exc.strerror,
            )  # fmt: skip
            raise
        self._gone(path)
        self._done("remove-tree", path)

    # -- names ---------------------------------------------------------------------------

    @_logs_refusals("mkdir")
    def mkdir(self, raw: str, mode: int = 0o777) -> None:
        """Create a folder."""
        path = self.path(raw)
        self.check("mkdir", path)
        self._unlocked(path, member=True)
        self._vfs.mkdir(path, self._create_mode(mode))
        self._done("mkdir", path)

    @_logs_refusals("rmdir")
    def rmdir(self, raw: str) -> None:
        """Remove an empty folder."""
        path = self.path(raw)
        self.check("rmdir", path)
        self._unlocked(path, member=True, tree=True)
        self._vfs.rmdir(path)
        self._gone(path)
        self._done("rmdir", path)

    @_logs_refusals("remove")
    def remove(self, raw: str) -> None:
        """Remove a file or link."""
        path = self.path(raw)
        self.check("remove", path)
        self._unlocked(path, member=True)
        self._vfs.unlink(path)
        self._gone(path)
        self._done("remove", path)

    @_logs_refusals("rename")
    def rename(self, raw_old: str, raw_new: str, replace: bool) -> None:
        """Rename; with ``replace`` false an existing target is never overwritten."""
        old, new = self.path(raw_old), self.path(raw_new)
        self.check("rename", old)
        self._unlocked(old, member=True, tree=True)
        self._unlocked(new, member=True, tree=True)
        self._vfs.rename(old, new, replace)
        self._gone(old)
        self._done("rename", old, new)

    @_logs_refusals("link")
    def link(self, raw_existing: str, raw_new: str) -> None:
        """Create a hard link."""
        existing, new = self.path(raw_existing), self.path(raw_new)
        self.check("link", new)
        self._unlocked(new, member=True)
        self._unlocked(existing)  # (a new name for a locked file would be a way around it)
        self._vfs.link(existing, new)
        self._done("link", existing, new)

    @_logs_refusals("symlink")
    def symlink(self, target: str, raw_new: str) -> None:
        """Create a symlink; its target is stored as given and resolves inside the jail."""
        new = self.path(raw_new)
        self.check("symlink", new)
        self._unlocked(new, member=True)
        self._vfs.symlink(target, new)
        self._done("symlink", new, target)

    @_logs_refusals("setstat")
    def set_attrs(
        self,
        raw: str,
        *,
        follow: bool = True,
        size: int | None = None,
        mode: int | None = None,
        owner: Owner = None,
        times: Times | None = None,
    ) -> None:
        """Change attributes of a path (``follow`` false: of a symlink itself)."""
        path = self.path(raw)
        self.check("setstat", path)
        self._unlocked(path)
        if mode is not None or owner is not None:
            current = self._vfs.stat(path) if follow else self._vfs.lstat(path)
            self._check_attrs(current, mode, owner)
        elif size is not None and self.jailed:
            current_mode = stat.S_IMODE(self._vfs.stat(path).st_mode)
            if without_privileges(current_mode) != current_mode:
                mode = without_privileges(current_mode)  # (a truncation is a write)
        self._vfs.set_attrs(path, follow=follow, size=size, mode=mode, owner=owner, times=times)
        self._done("setstat", path)

    @_logs_refusals("fsetstat")
    def fset_attrs(
        self,
        file: OpenFile,
        *,
        size: int | None = None,
        mode: int | None = None,
        owner: Owner = None,
        times: Times | None = None,
    ) -> None:
        """Change attributes of an open file."""
        self.check("fsetstat", file.path)
        self._unlocked(file.path)
        if mode is not None or owner is not None:
            self._check_attrs(file.stat(), mode, owner)
        file.set_attrs(size=size, mode=mode, owner=owner, times=times)
        self._done("fsetstat", file.path)

    # -- SQLite databases (see ``sqlite_snapshots``) -------------------------------------

    @_logs_refusals("snapshot")
    def sqlite_snapshot(self, raw: str) -> Snapshot:
        """A consistent copy of the live SQLite database ``raw``, as of one moment
        (the caller closes it); one access line."""
        path = self.path(raw)
        self.check("snapshot", path)
        user = self.user.name
        if not sqlite_snapshots.COPIES.take(user):
            raise sqlite_snapshots.TooManyCopies(path)
        try:
            copy = self._vfs.sqlite_snapshot(path, self.gone)
        except BaseException:
            sqlite_snapshots.COPIES.give_back(user)
            raise
        copy.released = functools.partial(sqlite_snapshots.COPIES.give_back, user)
        COUNTERS.add("bytes_sent", (counted_as(self.protocol),), copy.size)
        logs.later(
            access,
            'user=%s proto=%s op=snapshot path="%s" bytes=%d sha256=%s',
            self.user.name, self.protocol, path, copy.size, copy.sha256.hex(),
        )  # fmt: skip
        return copy

    def restore_upload(self, raw: str) -> Upload:
        """A temp file for a database that is to replace the live one ``raw`` (EACCES
        for a user who may not, ``NotADatabase`` for a target that is none: before the
        upload is sent)."""
        path = self.path(raw)
        self.check("restore", path)
        self._unlocked(path)
        self._vfs.database(path, CHANGE)
        return Upload()

    @_logs_refusals("restore")
    def sqlite_restore(self, raw: str, upload: Upload, digest: bytes) -> None:
        """Replace the content of the live SQLite database ``raw`` with ``upload``'s
        (checked first), in one transaction; the file keeps its inode."""
        path = self.path(raw)
        self.check("restore", path)
        self._unlocked(path)
        self._vfs.sqlite_restore(path, upload, self.gone)
        COUNTERS.add("bytes_received", (counted_as(self.protocol),), upload.size)
        self._done("restore", path, extra=f" bytes={upload.size} sha256={digest.hex()}")
