"""What each SFTP request does: decoded, mapped onto the user's core Session, answered.

A request is answered on the spot when that cannot wait (REALPATH, names already read,
stat from the kernel's caches, a READ the page cache holds, CLOSE of a file on the
local disk); anything else becomes a ``Job`` that the channel runs on a worker, and
whose ``reply`` encodes the result. No path handling and no permission checks live here:
paths are decoded and handed to the session, whose ``OSError``s become STATUS replies.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asyncssh import constants
from asyncssh.constants import (
    FXP_CLOSE,
    FXP_DATA,
    FXP_EXTENDED,
    FXP_EXTENDED_REPLY,
    FXP_FSETSTAT,
    FXP_FSTAT,
    FXP_LSTAT,
    FXP_MKDIR,
    FXP_OPEN,
    FXP_OPENDIR,
    FXP_READ,
    FXP_READDIR,
    FXP_READLINK,
    FXP_REALPATH,
    FXP_REMOVE,
    FXP_RENAME,
    FXP_RMDIR,
    FXP_SETSTAT,
    FXP_STAT,
    FXP_SYMLINK,
    FXP_WRITE,
)
from asyncssh.packet import PacketDecodeError, SSHPacket, UInt32, UInt64
from asyncssh.sftp import (
    SFTPAttrs,
    SFTPBadMessage,
    SFTPEOFError,
    SFTPInvalidHandle,
    SFTPOpUnsupported,
)

from ..core.listing import Entry, Listing
from ..core.open_files import OpenFile
from ..core.resolution import LOOP_FREE_LIMIT
from ..core.session import Capacity, Session
from ..fair_share import SLICE
from . import wire
from .batches import Write
from .handle_budget import HandleBudget
from .sftp import (
    changes_of,
    close_logging_errors,
    mode_of,
    open_flags,
    read_batch,
    start_listing,
    text_of,
)

EXTENSIONS = [
    (b"newline", b"\n"),
    (b"posix-rename@openssh.com", b"1"),
    (b"statvfs@openssh.com", b"2"),
    (b"fstatvfs@openssh.com", b"2"),
    (b"hardlink@openssh.com", b"1"),
    (b"fsync@openssh.com", b"1"),
    (b"lsetstat@openssh.com", b"1"),
    (b"limits@openssh.com", b"1"),
    (b"expand-path@openssh.com", b"1"),
    (b"copy-data", b"1"),
    (b"home-directory", b"1"),
    (b"users-groups-by-id@openssh.com", b"1"),
]

LOOP_WRITE = 64 * 1024  # bytes of a WRITE to tmpfs the channel may make on the loop

# Clients (the software in their SSH version string) that send SYMLINK's two paths in
# OpenSSH's order, the reverse of the draft's: OpenSSH, paramiko, libssh2 (curl), rclone
# and Go's pkg/sftp (whose SSH version is "Go").
_REVERSED_SYMLINK = ("OpenSSH", "paramiko", "libssh2", "rclone/")


@dataclass(slots=True)
class Job:
    """A request that must run on a worker: ``call`` there, then ``reply(result)`` on the
    loop; ``undo`` on the loop if ``call`` failed. WRITEs run ``in_order``, one worker
    taking them in turn (the channel puts SETSTAT and FSETSTAT in that queue too)."""

    call: Callable[[], Any]
    reply: Callable[[Any], bytes]
    undo: Callable[[], None] | None = None
    in_order: bool = False
    long: bool = False  # may run for minutes (copy-data): kept off the shared workers
    # ``call`` made with the session's loop view (see ``Session.loop_view``): the channel
    # may make it on the event loop, and makes ``call`` on a worker if it raises OffLoop
    on_loop: Callable[[], Any] | None = None


Answer = bytes | Job


MORE = object()  # what a long job's ``call`` returns while it has slices left


class _CopySlices:
    """copy-data a slice at a time: each call copies ``SLICE`` bytes and returns MORE
    while some are left (see ``fair_share``)."""

    def __init__(
        self, requests: Requests, src: OpenFile, src_offset: int, length: int,
        dst: OpenFile, dst_offset: int,
    ) -> None:  # fmt: skip
        self._requests = requests
        self._src, self._dst = src, dst
        self._src_offset, self._dst_offset = src_offset, dst_offset
        self._left = length or None  # None: to the end of the source

    def __call__(self) -> Any:
        want = SLICE if self._left is None else min(SLICE, self._left)
        copied = self._requests.session.copy_data(
            self._src, self._src_offset, want, self._dst, self._dst_offset,
            stop=lambda: self._requests.ended,
        )  # fmt: skip
        self._src_offset += copied
        self._dst_offset += copied
        if self._left is not None:
            self._left -= copied
        if copied < want or self._left == 0:
            return None
        return MORE


@dataclass(slots=True)
class Folder:
    """An open folder: the names read and not yet sent, and the listing while not at its
    end (a folder that fits in the first batch is closed at OPENDIR)."""

    listing: Listing | None
    batch: list[Entry]


class Requests:
    """The requests of one SFTP channel and the handles it holds."""

    def __init__(
        self,
        session: Session,
        limits: tuple[int, int, int],
        client_version: str,
        in_background: Callable[[Callable[[OpenFile], None], OpenFile], object],
        budget: HandleBudget,
    ) -> None:
        """``limits``: packet size, READ size and handles; ``in_background`` runs a call
        on a worker that nobody waits for."""
        self.session = session
        self._in_background = in_background
        self.max_packet, self.max_read, self.max_handles = limits
        self.files: dict[bytes, OpenFile] = {}
        self.folders: dict[bytes, Folder] = {}
        self._opening = 0  # OPEN and OPENDIR requests running: their handles are promised
        self._budget = budget  # the handles of every channel, per user
        self.ended = False  # the channel is closing: a long copy stops
        self._user = session.user.name
        self._next = 0
        software = client_version.removeprefix("SSH-2.0-")
        self._reversed_symlink = software.startswith(_REVERSED_SYMLINK) or software == "Go"
        # The session for calls on the event loop, when the jail lies on tmpfs
        self._loop_view = session.loop_view()

    def _job(
        self,
        call: Callable[[Session], Any],
        reply: Callable[[Any], bytes],
        undo: Callable[[], None] | None = None,
        on_loop: bool = True,
    ) -> Job:
        """A job making ``call`` with the session; one the channel may make on the event
        loop with the loop view (``on_loop``, on tmpfs, no lock held anywhere)."""
        session, view = self.session, self._loop_view
        if view is None or not on_loop or session.locks:
            return Job(lambda: call(session), reply, undo)
        return Job(lambda: call(session), reply, undo, on_loop=lambda: call(view))

    def answer(self, kind: int, pktid: bytes, packet: SSHPacket) -> Answer:
        """The reply to one request, or the job that will make it."""
        if kind == FXP_EXTENDED:
            name = packet.get_string()
            handler = self._extended.get(name)
            if handler is None:
                raise SFTPOpUnsupported(f"Unsupported extension: {name.decode(errors='replace')}")
        else:
            handler = self._handlers.get(kind)
            if handler is None:
                raise SFTPOpUnsupported(f"Unsupported request type: {kind}")
        answer: Answer = handler(self, pktid, packet)
        return answer

    def open_objects(self) -> list[OpenFile | Listing]:
        """Everything still open, forgotten here: the channel closes it at the end."""
        self.ended = True
        objects: list[OpenFile | Listing] = list(self.files.values())
        objects += [f.listing for f in self.folders.values() if f.listing is not None]
        self._budget.give(self._user, len(self.files) + len(self.folders))
        self.files, self.folders = {}, {}
        return objects

    # -- handles --------------------------------------------------------------------

    def _promise_handle(self) -> None:
        if len(self.files) + len(self.folders) + self._opening >= self.max_handles:
            raise OSError(errno.EMFILE, f"Too many open handles (at most {self.max_handles})")
        self._budget.take(self._user)
        self._opening += 1

    def _keep(self, table: dict[bytes, Any], value: object) -> bytes:
        self._opening -= 1
        while True:
            handle = self._next.to_bytes(4, "big")
            self._next = (self._next + 1) & 0xFFFFFFFF
            if handle not in self.files and handle not in self.folders:
                table[handle] = value
                return handle

    def _broken_promise(self) -> None:
        self._opening -= 1
        self._budget.give(self._user)

    def _file(self, packet: SSHPacket) -> OpenFile:
        return self._open_file(packet.get_string())

    def _open_file(self, handle: bytes) -> OpenFile:
        file = self.files.get(handle)
        if file is None:
            raise SFTPInvalidHandle("Invalid file handle")
        return file

    # -- files ----------------------------------------------------------------------

    def _open(self, pktid: bytes, packet: SSHPacket) -> Answer:
        path = text_of(packet.get_string())
        flags = open_flags(packet.get_uint32())
        attrs = SFTPAttrs.decode(packet, 3)
        packet.check_end()
        mode = mode_of(attrs, 0o666)
        self._promise_handle()
        return self._job(
            lambda session: session.open(path, flags, mode),
            lambda file: wire.handle(pktid, self._keep(self.files, file)),
            self._broken_promise,
        )

    def _close(self, pktid: bytes, packet: SSHPacket) -> Answer:
        """CLOSE. On a local filesystem close reports nothing a client could act on, so
        the answer goes out at once and a worker closes the fd right behind it."""
        handle = packet.get_string()
        packet.check_end()
        folder = self.folders.pop(handle, None)
        if folder is not None:
            self._budget.give(self._user)
            listing = folder.listing
            if listing is None:
                return wire.ok(pktid)
            return Job(listing.close, lambda _: wire.ok(pktid))
        file = self.files.pop(handle, None)
        if file is None:
            raise SFTPInvalidHandle("Invalid file handle")
        self._budget.give(self._user)
        if file.in_memory and file.frees_little(LOOP_FREE_LIMIT):  # (a worker costs more)
            close_logging_errors(file)
            return wire.ok(pktid)
        if file.local:
            self._in_background(close_logging_errors, file)
            return wire.ok(pktid)
        return Job(file.close, lambda _: wire.ok(pktid))

    def _read(self, pktid: bytes, packet: SSHPacket) -> Answer:
        file = self._file(packet)
        offset = packet.get_uint64()
        size = min(packet.get_uint32(), self.max_read)
        packet.check_end()
        data = file.read_cached(offset, size)
        if data is not None:
            return self._data(pktid, data)
        return Job(lambda: file.read(offset, size), lambda got: self._data(pktid, got))

    @staticmethod
    def _data(pktid: bytes, data: bytes | bytearray) -> bytes:
        if not data:
            raise SFTPEOFError("")
        return wire.packet(FXP_DATA, pktid, UInt32(len(data)), data)

    def _write(self, pktid: bytes, packet: SSHPacket) -> Answer:
        """WRITE, ignoring bytes after the data as OpenSSH's sftp-server does.

        rclone 1.60 (Debian 12's, built on pkg/sftp 1.13.5) sends the last short chunk of
        a concurrent upload in a packet padded to the full chunk size.
        """
        handle = packet.get_string()
        file = self._open_file(handle)
        offset = packet.get_uint64()
        length = packet.get_uint32()
        start = 21 + len(handle)  # type, id, the handle with its length, offset, length
        payload = packet.get_full_payload()
        if start + length > len(payload):
            raise PacketDecodeError("Incomplete packet")
        data = memoryview(payload)[start : start + length]  # written from where it lies
        write = Write(file, offset, data, self.session.write_many)
        # (on tmpfs a small write is a copy in memory: the channel may make it on the loop)
        small = file.in_memory and length <= LOOP_WRITE and not self.session.locks
        return Job(write, lambda _: wire.ok(pktid), in_order=True, on_loop=write if small else None)

    def _fstat(self, pktid: bytes, packet: SSHPacket) -> Answer:
        file = self._file(packet)
        packet.check_end()
        st = file.stat_cached()
        if st is not None:
            return wire.attrs_reply(pktid, st)
        return Job(file.stat, lambda result: wire.attrs_reply(pktid, result))

    def _fsetstat(self, pktid: bytes, packet: SSHPacket) -> Answer:
        """FSETSTAT: a job, or an error with nothing done (the channel may start it while
        WRITEs run, behind them in their queue, so it must not act on the spot)."""
        file = self._file(packet)
        attrs = SFTPAttrs.decode(packet, 3)
        packet.check_end()
        changes = changes_of(attrs)
        call = lambda: self.session.fset_attrs(file, **changes)  # noqa: E731
        # (on tmpfs, without a size: the channel may make it on the loop when idle)
        small = file.in_memory and changes["size"] is None and not self.session.locks
        return Job(call, lambda _: wire.ok(pktid), on_loop=call if small else None)

    def _fsync(self, pktid: bytes, packet: SSHPacket) -> Answer:
        file = self._file(packet)
        packet.check_end()
        return Job(lambda: self.session.fsync(file), lambda _: wire.ok(pktid))

    def _fstatvfs(self, pktid: bytes, packet: SSHPacket) -> Answer:
        file = self._file(packet)
        packet.check_end()
        return self._capacity_reply(pktid, lambda: self.session.file_capacity(file))

    def _copy_data(self, pktid: bytes, packet: SSHPacket) -> Answer:
        """copy-data: a server-side copy between two open handles."""
        src = self._file(packet)
        src_offset = packet.get_uint64()
        length = packet.get_uint64()
        dst = self._file(packet)
        dst_offset = packet.get_uint64()
        packet.check_end()
        return Job(
            _CopySlices(self, src, src_offset, length, dst, dst_offset),
            lambda _: wire.ok(pktid),
            long=True,
        )

    # -- paths ----------------------------------------------------------------------

    def _stat(self, pktid: bytes, packet: SSHPacket, follow: bool) -> Answer:
        path = text_of(packet.get_string())
        packet.check_end()
        st = self.session.stat_cached(path, follow)
        if st is not None:
            return wire.attrs_reply(pktid, st)
        return self._job(
            lambda session: session.stat(path, follow), lambda r: wire.attrs_reply(pktid, r)
        )

    def _lstat(self, pktid: bytes, packet: SSHPacket) -> Answer:
        return self._stat(pktid, packet, False)

    def _stat_follow(self, pktid: bytes, packet: SSHPacket) -> Answer:
        return self._stat(pktid, packet, True)

    def _set_attrs(self, pktid: bytes, packet: SSHPacket, follow: bool) -> Answer:
        """SETSTAT and LSETSTAT: a job, or an error with nothing done (see ``_fsetstat``)."""
        path = text_of(packet.get_string())
        attrs = SFTPAttrs.decode(packet, 3)
        packet.check_end()
        changes = changes_of(attrs)
        mode, owner = changes["mode"], changes["owner"]
        only = changes["size"] is None and changes["times"] is None  # mode and owner only
        if only and self.session.attrs_unchanged(path, follow, mode, owner):
            return wire.ok(pktid)  # (nothing to change: no hand-off to a worker)
        return self._job(
            lambda session: session.set_attrs(path, follow=follow, **changes),
            lambda _: wire.ok(pktid),
            on_loop=changes["size"] is None,  # (truncating may free a large file's pages)
        )

    def _setstat(self, pktid: bytes, packet: SSHPacket) -> Answer:
        return self._set_attrs(pktid, packet, True)

    def _lsetstat(self, pktid: bytes, packet: SSHPacket) -> Answer:
        return self._set_attrs(pktid, packet, False)

    def _opendir(self, pktid: bytes, packet: SSHPacket) -> Answer:
        """OPENDIR opens the folder (so errors come back here) and reads its first names."""
        path = text_of(packet.get_string())
        packet.check_end()
        self._promise_handle()

        def keep(result: tuple[Listing | None, list[Entry]]) -> bytes:
            listing, _ = result
            if listing is not None:
                listing.stays = False  # (READDIRs read on from a worker)
            return wire.handle(pktid, self._keep(self.folders, Folder(*result)))

        # . and .. come first, as from OpenSSH's sftp-server (sshfs shows them in ls -a)
        # (on tmpfs the first names are read on the loop; READDIRs for more, on a worker)
        opening = lambda session: start_listing(session, path, dots=True)  # noqa: E731
        return self._job(opening, keep, self._broken_promise)

    def _readdir(self, pktid: bytes, packet: SSHPacket) -> Answer:
        handle = packet.get_string()
        packet.check_end()
        folder = self.folders.get(handle)
        if folder is None:
            raise SFTPInvalidHandle("Invalid file handle")
        if folder.batch:
            return self._names(pktid, folder)
        listing = folder.listing
        if listing is None:
            raise SFTPEOFError("")

        def next_batch(result: tuple[list[Entry], bool]) -> bytes:
            folder.batch, at_end = result
            if at_end:
                folder.listing = None
            if not folder.batch:
                raise SFTPEOFError("")
            return self._names(pktid, folder)

        return Job(lambda: read_batch(listing), next_batch)

    def _names(self, pktid: bytes, folder: Folder) -> bytes:
        entries, folder.batch = folder.batch, []
        names, now = self.session.names, time.time()
        listed = []
        for entry in entries:
            st = entry.stat
            filename = os.fsencode(entry.name)
            user = names.user(st.st_uid) or str(st.st_uid)
            group = names.group(st.st_gid) or str(st.st_gid)
            listed.append((filename, wire.longname(filename, st, user, group, now), wire.attrs(st)))
        return wire.names(pktid, listed)

    def _path_call(
        self, pktid: bytes, packet: SSHPacket, call: Callable[[Session, str], Any]
    ) -> Answer:
        path = text_of(packet.get_string())
        packet.check_end()
        return self._job(lambda session: call(session, path), lambda _: wire.ok(pktid))

    def _remove(self, pktid: bytes, packet: SSHPacket) -> Answer:
        return self._path_call(pktid, packet, Session.remove)

    def _rmdir(self, pktid: bytes, packet: SSHPacket) -> Answer:
        return self._path_call(pktid, packet, Session.rmdir)

    def _mkdir(self, pktid: bytes, packet: SSHPacket) -> Answer:
        path = text_of(packet.get_string())
        attrs = SFTPAttrs.decode(packet, 3)
        packet.check_end()
        mode = mode_of(attrs, 0o777)
        return self._job(lambda session: session.mkdir(path, mode), lambda _: wire.ok(pktid))

    def _realpath(self, pktid: bytes, packet: SSHPacket) -> Answer:
        path = text_of(packet.get_string())
        packet.check_end()
        return wire.one_name(pktid, os.fsencode(self.session.path(path)))

    def _two_paths(self, packet: SSHPacket) -> tuple[str, str]:
        first = text_of(packet.get_string())
        second = text_of(packet.get_string())
        packet.check_end()
        return first, second

    def _rename(self, pktid: bytes, packet: SSHPacket) -> Answer:
        old, new = self._two_paths(packet)
        return self._job(lambda session: session.rename(old, new, False), lambda _: wire.ok(pktid))

    def _posix_rename(self, pktid: bytes, packet: SSHPacket) -> Answer:
        old, new = self._two_paths(packet)
        return self._job(lambda session: session.rename(old, new, True), lambda _: wire.ok(pktid))

    def _readlink(self, pktid: bytes, packet: SSHPacket) -> Answer:
        path = text_of(packet.get_string())
        packet.check_end()
        return self._job(
            lambda session: session.readlink(path),
            lambda target: wire.one_name(pktid, os.fsencode(target)),
        )

    def _symlink(self, pktid: bytes, packet: SSHPacket) -> Answer:
        """SYMLINK: the draft sends the link's path first; OpenSSH and the clients that
        follow it send the target first."""
        first, second = self._two_paths(packet)
        target, link = (first, second) if self._reversed_symlink else (second, first)
        return self._job(lambda session: session.symlink(target, link), lambda _: wire.ok(pktid))

    def _hardlink(self, pktid: bytes, packet: SSHPacket) -> Answer:
        old, new = self._two_paths(packet)
        return self._job(lambda session: session.link(old, new), lambda _: wire.ok(pktid))

    def _statvfs(self, pktid: bytes, packet: SSHPacket) -> Answer:
        path = text_of(packet.get_string())
        packet.check_end()
        return self._statvfs_of(pktid, path)

    def _statvfs_of(self, pktid: bytes, path: str) -> Answer:
        return self._capacity_reply(pktid, lambda: self.session.capacity(path))

    @staticmethod
    def _capacity_reply(pktid: bytes, call: Callable[[], Capacity]) -> Answer:
        def reply(c: Capacity) -> bytes:
            fields = (
                c.bsize, c.frsize, c.blocks, c.bfree, c.bavail,
                c.files, c.ffree, c.favail, c.fsid, c.flag, c.namemax,
            )  # fmt: skip
            return wire.packet(FXP_EXTENDED_REPLY, pktid, *map(UInt64, fields))

        return Job(call, reply)

    def _limits(self, pktid: bytes, packet: SSHPacket) -> Answer:
        packet.check_end()
        fields = (self.max_packet, self.max_read, self.max_read, self.max_handles)
        return wire.packet(FXP_EXTENDED_REPLY, pktid, *map(UInt64, fields))

    def _expand_path(self, pktid: bytes, packet: SSHPacket) -> Answer:
        path = packet.get_string()
        packet.check_end()
        home = os.fsencode(self.session.home)
        if path == b"~" or path.startswith(b"~/"):
            path = home + path[1:]
        elif path.startswith(b"~"):
            name, _, rest = path[1:].partition(b"/")
            if name.decode("utf-8", "replace") != self.session.user.name:
                raise OSError(errno.ENOENT, "No such user")
            path = home + b"/" + rest
        return wire.one_name(pktid, os.fsencode(self.session.path(text_of(path))))

    def _home_directory(self, pktid: bytes, packet: SSHPacket) -> Answer:
        name = packet.get_string()
        packet.check_end()
        if name and name.decode("utf-8", "replace") != self.session.user.name:
            raise OSError(errno.ENOENT, "No such user")
        return wire.one_name(pktid, os.fsencode(self.session.home))

    def _users_groups_by_id(self, pktid: bytes, packet: SSHPacket) -> Answer:
        uids = _uint32s(packet.get_string())
        gids = _uint32s(packet.get_string())
        packet.check_end()
        names = self.session.names

        def reply(_: None) -> bytes:
            users = b"".join(wire.string((names.user(uid) or "").encode()) for uid in uids)
            groups = b"".join(wire.string((names.group(gid) or "").encode()) for gid in gids)
            return wire.packet(FXP_EXTENDED_REPLY, pktid, wire.string(users), wire.string(groups))

        return Job(names.refresh, reply)

    _handlers: dict[int, Callable[[Requests, bytes, SSHPacket], Answer]] = {
        FXP_OPEN: _open,
        FXP_CLOSE: _close,
        FXP_READ: _read,
        FXP_WRITE: _write,
        FXP_LSTAT: _lstat,
        FXP_FSTAT: _fstat,
        FXP_SETSTAT: _setstat,
        FXP_FSETSTAT: _fsetstat,
        FXP_OPENDIR: _opendir,
        FXP_READDIR: _readdir,
        FXP_REMOVE: _remove,
        FXP_MKDIR: _mkdir,
        FXP_RMDIR: _rmdir,
        FXP_REALPATH: _realpath,
        FXP_STAT: _stat_follow,
        FXP_RENAME: _rename,
        FXP_READLINK: _readlink,
        FXP_SYMLINK: _symlink,
    }

    _extended: dict[bytes, Callable[[Requests, bytes, SSHPacket], Answer]] = {
        b"posix-rename@openssh.com": _posix_rename,
        b"statvfs@openssh.com": _statvfs,
        b"fstatvfs@openssh.com": _fstatvfs,
        b"hardlink@openssh.com": _hardlink,
        b"fsync@openssh.com": _fsync,
        b"lsetstat@openssh.com": _lsetstat,
        b"limits@openssh.com": _limits,
        b"expand-path@openssh.com": _expand_path,
        b"copy-data": _copy_data,
        b"home-directory": _home_directory,
        b"users-groups-by-id@openssh.com": _users_groups_by_id,
    }


# The names of requests in the metrics: FXP_OPEN is "open"; an extension is named
# without its "@openssh.com" ("posix-rename"); anything not served is "other"
_OPERATIONS = {
    kind: name.removeprefix("FXP_").lower()
    for name, kind in vars(constants).items()
    if name.startswith("FXP_") and kind in Requests._handlers
}
_EXTENDED_OPERATIONS = {
    name: name.decode().removesuffix("@openssh.com") for name in Requests._extended
}


def operation(payload: bytes) -> str:
    """The name of a request in the metrics, from its packet."""
    name = _OPERATIONS.get(payload[0])
    if name is None and payload[0] == FXP_EXTENDED:
        size = int.from_bytes(payload[5:9], "big")
        name = _EXTENDED_OPERATIONS.get(payload[9 : 9 + size])
    return name or "other"


def _uint32s(blob: bytes) -> list[int]:
    if len(blob) % 4:
        raise SFTPBadMessage("id list length is not a multiple of 4")
    return [int.from_bytes(blob[i : i + 4], "big") for i in range(0, len(blob), 4)]
