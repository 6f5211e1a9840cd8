"""An open regular file of the jail: positional reads and writes on its fd, reading
ahead for a sequential reader, and the attributes set through it."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import syscalls
from .reserved import LOG_REFUSED, ReservedError
from .turns import stepped_aside

READ_AHEAD = 16 << 20  # how far a sequential reader keeps the kernel reading ahead of it
READ_AHEAD_PIECE = 2 << 20
COPY_BLOCK = 1 << 20  # what a copy reads and writes at once


@dataclass(frozen=True, slots=True)
class Times:
    """Access and modification times in nanoseconds."""

    atime_ns: int
    mtime_ns: int


MAX_OFFSET = 2**63 - 1  # off_t


def valid_offset(offset: int) -> int:
    """``offset``, or EINVAL if no file position can be there (beyond ``off_t``)."""
    if not 0 <= offset <= MAX_OFFSET:
        raise OSError(errno.EINVAL, "Invalid argument: offset beyond the largest file size")
    return offset


def valid_size(size: int) -> int:
    """``size``, or EFBIG if no file can be that large."""
    if not 0 <= size <= MAX_OFFSET:
        raise OSError(errno.EFBIG, "File too large")
    return size


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
        # Opened through a loop view (``Resolver.loop_view``): on the root's tmpfs, so
        # writing, fstat and closing never wait for a disk.
        self.in_memory = False
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
        data = os.pread(self.fd, size, valid_offset(offset))
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
        valid_offset(offset)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written
            self.bytes_written += written

    def write_many(self, offset: int, pieces: list[memoryview]) -> None:
        """Write all of ``pieces``, one after the other, from ``offset``: one system call
        for them all unless the kernel writes less. An error after some of the bytes
        were written raises ``ShortWrite``, which tells how many."""
        pieces = [piece for piece in pieces if piece]  # (an empty WRITE writes nothing)
        valid_offset(offset)
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
            os.ftruncate(self.fd, valid_size(size))
        if owner is not None:
            os.fchown(self.fd, *owner)
        if mode is not None:
            os.fchmod(self.fd, mode & 0o7777)
        if times is not None:
            os.utime(self.fd, ns=(times.atime_ns, times.mtime_ns))

    def frees_little(self, limit: int) -> bool:
        """Whether closing it frees at most ``limit`` bytes of content: it is still
        linked, or small (the last close of an unlinked file frees its pages). For a
        file ``in_memory``, where fstat never waits."""
        st = os.fstat(self.fd)
        return st.st_nlink > 0 or st.st_size <= limit

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


def next_piece(file: OpenFile, offset: int, size: int, most: int) -> tuple[int, bytes]:
    """What a copy finds at ``offset`` of ``file`` (``size`` bytes long, as far as the
    copy knows): a hole's length and no data, or 0 and up to ``most`` bytes of data,
    read up to the next hole but at least a page (so a file that grows is read on).
    At the end: ``(0, b"")``. Copies keep holes with it (a 1 TiB sparse file was
    copied as 1 TiB of zeros)."""
    hole = syscalls.next_data(file.fd, offset, size) - offset
    if hole > 0:
        return hole, b""
    end = syscalls.next_hole(file.fd, offset, size)
    return 0, file.read(offset, min(most, max(end - offset, 4096)))
