"""Folder listings read from the kernel a batch at a time, resumable at any point.

A ``Listing`` reads the folder's records with ``getdents64`` into a fixed buffer and
decodes only as many as it is asked for, so a huge folder never sits in memory and a
page of N names costs N lookups, whatever the folder's size. Each record carries the
kernel's offset of the records after it (``d_off``): ``position`` is that offset for
the last name given out, and a new listing started at it goes on right after that name
(``seekdir`` semantics: names added or removed meanwhile may or may not be seen, but no
name is given twice or skipped because of paging).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
from dataclasses import dataclass

from . import syscalls
from .reserved import Identity, Reserved
from .resolution import OffLoop
from .upload_temps import is_temp

_BUFFER = 32 << 10  # bytes of records per getdents64 call: about 1,000 short names
_HEAD = struct.Struct("=QqHB")  # d_ino, d_off, d_reclen, d_type; then the name, NUL-ended
_DOTS = (b".", b"..")


@dataclass(frozen=True, slots=True)
class Entry:
    """One name in a folder listing, with its lstat and, for a symlink, its target."""

    name: str
    stat: os.stat_result
    link_target: str | None = None


class Listing:
    """An open folder listing, read in batches so huge folders never sit in memory."""

    def __init__(
        self,
        fd: int,
        reserved: Reserved | None = None,
        first: list[Entry] | None = None,
        position: int = 0,
        stays: bool = False,
    ) -> None:
        """``stays``: for an event loop, a name that is another mount's root raises
        ``OffLoop`` (its stat would enter that filesystem); set it false before the
        listing goes on in a worker."""
        self._fd = fd
        self.stays = stays
        self._reserved = reserved
        self._first = first or []  # entries that come before the folder's own (. and ..)
        self._buffer = ctypes.create_string_buffer(_BUFFER)
        self._filled = 0  # bytes of records in the buffer
        self._at = 0  # where the next record starts in it
        self._raw = b""
        self._ended = False
        self.position = position  # the kernel's offset right after the last name given out
        self.decoded = 0  # records taken from the buffer: the listing's cost, for tests
        if not 0 <= position < 1 << 63:
            raise OSError(errno.EINVAL, "No such position in a folder")
        if position:
            os.lseek(fd, position, os.SEEK_SET)

    def read(self, count: int) -> list[Entry]:
        """Return up to ``count`` more entries (an empty list at the end)."""
        out, self._first = self._first[:count], self._first[count:]
        if len(out) >= count:
            return out
        state_files = self._reserved.state_files() if self._reserved is not None else frozenset()
        while len(out) < count:
            record = self._next_record()
            if record is None:
                break
            name, offset = record
            self.position = offset
            entry = self._entry(name, state_files)
            if entry is not None:
                out.append(entry)
        return out

    def _next_record(self) -> tuple[bytes, int] | None:
        """The next record's name and offset (the folder's . and .. skipped), or None at
        the end."""
        while True:
            if self._at >= self._filled:
                if self._ended:
                    return None
                self._filled = syscalls.getdents64(self._fd, self._buffer)
                self._raw = self._buffer.raw[: self._filled]
                self._at = 0
                if self._filled == 0:
                    self._ended = True
                    return None
            raw = self._raw
            _ino, offset, length, _kind = _HEAD.unpack_from(raw, self._at)
            start = self._at + _HEAD.size
            name = raw[start : raw.index(b"\0", start)]
            self._at += length
            self.decoded += 1
            if name not in _DOTS:
                return name, offset

    def _entry(self, raw_name: bytes, state_files: frozenset[Identity]) -> Entry | None:
        """The entry for a name, or None for one that is not shown (or gone)."""
        name = os.fsdecode(raw_name)
        if is_temp(name):
            return None  # an upload in flight is not a file yet
        try:
            st = self._lstat(raw_name)
        except FileNotFoundError:
            return None  # removed while listing
        if self._reserved is not None and not self._reserved.listed(st, state_files):
            return None  # the server's own state folder, or a file of it mounted here
        target = None
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.fsdecode(os.readlink(raw_name, dir_fd=self._fd))
            except OSError:
                target = None
        return Entry(name, st, target)

    def _lstat(self, raw_name: bytes) -> os.stat_result:
        """lstat of a name of the folder; with ``stays``, never entering another mount."""
        if not self.stays:
            return os.stat(raw_name, dir_fd=self._fd, follow_symlinks=False)
        try:
            fd = syscalls.openat2(
                self._fd, os.fsdecode(raw_name), os.O_PATH | os.O_NOFOLLOW, 0,
                syscalls.RESOLVE_BENEATH | syscalls.RESOLVE_NO_XDEV,
            )  # fmt: skip
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise OffLoop(os.fsdecode(raw_name)) from None
            raise
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def folder(self) -> os.stat_result:
        """The listed folder's own stat."""
        return os.fstat(self._fd)

    def close(self) -> None:
        """Release the folder's fd (a second close does nothing: the number may be reused)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
