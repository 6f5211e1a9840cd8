"""scp's access to files: asyncssh's SFTPServer interface mapped onto a core Session.

asyncssh's scp server drives this interface; the SFTP subsystem is served by
``sftp_channel`` and ``sftp_requests``, which share the helpers below.

No path handling and no permission checks live here: paths are decoded and handed to
the session; its ``OSError``s reach asyncssh, which maps errno to SFTP status codes.
Every call that can block runs in the worker pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import posixpath
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import asyncssh
from asyncssh.constants import FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC, FXF_WRITE
from asyncssh.sftp import (
    SFTPAttrs,
    SFTPName,
)

from ..core.atomic_files import AtomicFile
from ..core.listing import Entry, Listing
from ..core.open_files import OpenFile, Times
from ..core.session import Session
from ..workers import Workers
from .batches import Batches

T = TypeVar("T")
log = logging.getLogger("hoody_mount.sftp")
LISTING_BATCH = 128


def text_of(path: bytes) -> str:
    """A path from the wire as the session takes it."""
    return os.fsdecode(path)


def mode_of(attrs: SFTPAttrs, default: int) -> int:
    """The permission bits a new file or folder is asked for (``default`` if none)."""
    return attrs.permissions & 0o7777 if attrs.permissions is not None else default


def times_of(attrs: SFTPAttrs) -> Times | None:
    if attrs.mtime is None and attrs.atime is None:
        return None
    mtime_ns = attrs.mtime_ns if attrs.mtime_ns is not None else (attrs.mtime or 0) * 10**9
    atime_ns = attrs.atime_ns if attrs.atime_ns is not None else None
    if atime_ns is None:
        atime_ns = attrs.atime * 10**9 if attrs.atime is not None else mtime_ns
    return Times(atime_ns, mtime_ns)


def owner_of(attrs: SFTPAttrs) -> tuple[int, int] | None:
    if attrs.uid is None and attrs.gid is None:
        return None
    return (-1 if attrs.uid is None else attrs.uid, -1 if attrs.gid is None else attrs.gid)


def changes_of(attrs: SFTPAttrs) -> dict[str, Any]:
    """The keyword arguments of ``Session.set_attrs`` for what SETSTAT asks to change."""
    return {
        "size": attrs.size,
        "mode": attrs.permissions,
        "owner": owner_of(attrs),
        "times": times_of(attrs),
    }


_WHOLE = FXF_WRITE | FXF_CREAT | FXF_TRUNC  # what a whole new content is opened with
_NOT_WHOLE = FXF_READ | FXF_APPEND | FXF_EXCL


def open_flags(pflags: int) -> int:
    if pflags & FXF_READ and pflags & FXF_WRITE:
        flags = os.O_RDWR
    elif pflags & FXF_WRITE:
        flags = os.O_WRONLY
    else:
        flags = os.O_RDONLY
    if pflags & FXF_APPEND:
        flags |= os.O_APPEND
    if pflags & FXF_CREAT:
        flags |= os.O_CREAT
    if pflags & FXF_TRUNC:
        flags |= os.O_TRUNC
    if pflags & FXF_EXCL:
        flags |= os.O_EXCL
    return flags


def close_logging_errors(file_obj: OpenFile) -> None:
    """On a worker: close a file whose CLOSE was already answered."""
    try:
        file_obj.close()
    except OSError as exc:
        log.warning("closing %s after CLOSE was answered: %s", file_obj.path, exc)


def read_batch(listing: Listing) -> tuple[list[Entry], bool]:
    """On a worker: the next names of a folder, and whether that was the end (then the
    folder is closed in the same hand-off, so READDIRs and CLOSE past it need none)."""
    try:
        entries = listing.read(LISTING_BATCH)
    except BaseException:
        listing.close()
        raise
    if len(entries) < LISTING_BATCH:  # a short batch: the folder is read to its end
        listing.close()
        return entries, True
    return entries, False


def start_listing(
    session: Session, path: str, dots: bool = False
) -> tuple[Listing | None, list[Entry]]:
    """On a worker: open a folder and read its first batch (closing it if that is all);
    with ``dots`` the names start with ``.`` and ``..``."""
    listing = session.listdir(path, dots)
    first, at_end = read_batch(listing)
    return (None if at_end else listing), first


class NameStream:
    """The names of an open folder, read from the disk a batch at a time (for scp's
    recursive copies). The first batch is read with the open; a folder that fits in it
    (nearly all) is closed right away."""

    def __init__(self, adapter: SFTPAdapter, listing: Listing | None, first: list[Entry]) -> None:
        self._adapter = adapter
        self._listing = listing  # None once read to its end (and closed)
        self._batch = self._names(first)

    @staticmethod
    def _names(entries: list[Entry]) -> list[SFTPName]:
        return [
            SFTPName(os.fsencode(e.name), attrs=SFTPAttrs.from_local(e.stat))
            for e in reversed(entries)
        ]

    def __aiter__(self) -> NameStream:
        return self

    async def __anext__(self) -> SFTPName:
        if not self._batch and self._listing is not None:
            entries, at_end = await self._adapter.run(read_batch, self._listing)
            if at_end:
                self._listing = None
            self._batch = self._names(entries)
        if not self._batch:
            raise StopAsyncIteration
        return self._batch.pop()

    async def close(self) -> None:
        """Release the folder (safe to call twice)."""
        if self._listing is not None:
            listing, self._listing = self._listing, None
            await self._adapter.run(listing.close)


class SFTPAdapter(asyncssh.SFTPServer):
    """The files of one scp session of one user: what asyncssh's scp server calls
    (``open``, ``read``, ``write``, ``close``, ``stat``, ``setstat``, ``scandir``,
    ``mkdir``). SFTP itself is served by ``sftp_channel.py``, not by this class.

    Every other method of asyncssh's ``SFTPServer`` works on the host's own filesystem
    when not overridden; here each refuses (EPERM, see ``_refuse_the_rest``), so a
    call no one expects can never reach outside the jail.
    """

    def __init__(
        self,
        chan: asyncssh.SSHServerChannel[bytes],
        session: Session,
        pool: Workers,
        max_read: int,
    ) -> None:
        super().__init__(chan)
        self.session = session
        self.pool = pool
        self.max_read = max_read
        self._writes: Batches | None = None
        # Whether the client stopped sending: scp closes a file it got cut short too
        self.client_gone: Callable[[], bool] = self.channel.is_closing
        # For the metrics: the first error of a call, and of a stat (scp's sink asks
        # whether its target exists; its source, whether the file it sends does)
        self.error: OSError | None = None
        self.stat_error: OSError | None = None

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking core call in the worker pool."""
        if kwargs:
            fn = functools.partial(fn, **kwargs)
        try:
            return await self.pool.call(asyncio.get_running_loop(), fn, *args)
        except OSError as exc:
            self.error = self.error or exc
            raise

    # -- names shown to clients ----------------------------------------------------

    def format_user(self, uid: int | None) -> str:
        return "" if uid is None else self.session.names.user(uid) or str(uid)

    def format_group(self, gid: int | None) -> str:
        return "" if gid is None else self.session.names.group(gid) or str(gid)

    # -- files ------------------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> OpenFile | AtomicFile:
        """Open a file; a file opened to be written whole (scp's sink: write, create,
        truncate) is an upload instead, which replaces the old content only when the
        copy is complete: an aborted ``scp -O`` left a cut file (OpenSSH's sink at least
        truncates only at the end). scp opens one file at a time."""
        mode = mode_of(attrs, 0o666)
        if pflags & _WHOLE == _WHOLE and not pflags & _NOT_WHOLE:
            return await self.run(self.session.upload, text_of(path))
        return await self.run(self.session.open, text_of(path), open_flags(pflags), mode)

    async def close(self, file_obj: object) -> None:
        """Release a file. On a local filesystem close reports nothing a client could act
        on, so the answer goes out at once and a worker closes the fd right behind it.
        An upload is committed, unless the client has stopped sending or a write failed:
        scp closes the file after a lost connection, and after a write error (ENOSPC; it
        tells the client that error once the data is in), too; the old content must then
        stay."""
        if isinstance(file_obj, AtomicFile):
            if file_obj.failed or self.client_gone() or self.channel.is_closing():
                await self.run(file_obj.abort)
            else:
                await self.run(file_obj.commit)
            return
        assert isinstance(file_obj, OpenFile)
        if file_obj.local:
            self.pool.submit(close_logging_errors, file_obj)
            return
        await self.run(file_obj.close)

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        assert isinstance(file_obj, OpenFile)
        return await self.run(file_obj.read, offset, min(size, self.max_read))

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        if isinstance(file_obj, AtomicFile):  # scp writes an upload in order
            if offset != file_obj.size:
                file_obj.failed = OSError(
                    errno.EINVAL, "an upload is written in order", file_obj.path
                )
                raise file_obj.failed
            await self.run(file_obj.write, data)  # (a failed write marks it failed)
            return len(data)
        assert isinstance(file_obj, OpenFile)
        if self._writes is None:
            self._writes = Batches(self.pool, asyncio.get_running_loop())
        await self._writes.run(functools.partial(self.session.write, file_obj, offset, data))
        return len(data)

    # -- paths -------------------------------------------------------------------------

    async def stat(self, path: bytes) -> os.stat_result:
        """From the kernel's caches on the spot if it can, else on a worker."""
        st = self.session.stat_cached(text_of(path), True)
        if st is None:
            loop = asyncio.get_running_loop()
            try:
                st = await self.pool.call(loop, self.session.stat, text_of(path), True)
            except OSError as exc:
                self.stat_error = self.stat_error or exc
                raise
        return st

    async def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        await self.run(self.session.set_attrs, text_of(path), follow=True, **changes_of(attrs))

    async def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        """The names of a folder (used by scp's recursive copies and globbing). A name
        with a line break cannot travel in scp's one-line headers (the client read the
        rest of the name as the next header and wrote a stray file): it is skipped and
        the client told on stderr, as OpenSSH's scp does."""
        listing, first = await self.run(start_listing, self.session, text_of(path))
        stream = NameStream(self, listing, first)
        try:
            async for name in stream:
                filename = os.fsencode(name.filename)
                if b"\n" in filename:
                    shown = os.fsdecode(posixpath.join(path, filename)).encode("unicode_escape")
                    self.channel.write_stderr(
                        b"scp: " + shown + b": skipping, filename contains a newline\n"
                    )
                    continue
                yield name
        finally:
            await stream.close()

    async def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        mode = mode_of(attrs, 0o777)
        await self.run(self.session.mkdir, text_of(path), mode)

    def home_directory(self) -> bytes:
        """The user's start folder, as home-directory and ``~`` expansion answer it."""
        return os.fsencode(self.session.home)

    async def exit(self) -> None:
        """The SFTP session ended."""


# asyncssh's SFTPServer methods scp never calls: each would otherwise act on the host's
# own filesystem, outside the jail.
_NOT_FOR_SCP = (
    "map_path", "reverse_map_path", "open56", "lstat", "fstat", "lsetstat", "fsetstat",
    "remove", "rmdir", "realpath", "rename", "readlink", "symlink", "link", "lock", "unlock",
    "posix_rename", "statvfs", "fstatvfs", "fsync",
)  # fmt: skip


def _refuse_the_rest() -> None:
    """Make each of ``_NOT_FOR_SCP`` refuse with EPERM."""
    for name in _NOT_FOR_SCP:

        def refuse(self: SFTPAdapter, *args: Any, _name: str = name, **kwargs: Any) -> Any:
            raise OSError(errno.EPERM, f"{_name}: not served to scp")

        refuse.__name__ = name
        setattr(SFTPAdapter, name, refuse)


_refuse_the_rest()
