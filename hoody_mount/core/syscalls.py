"""Linux system calls that Python's ``os`` module lacks: ``openat2``, ``renameat2`` and
``getdents64`` (a folder's records with their offsets, which ``scandir`` hides).

Both are reached through ``ctypes``. ``openat2`` with ``RESOLVE_IN_ROOT`` makes the
kernel resolve a path as if the directory fd were ``/``: ``..`` and absolute symlinks
never climb above it. That is what keeps every user inside their jail.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
RESOLVE_CACHED = 0x20  # Linux 5.12: answer from the dcache alone, else EAGAIN

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2

AT_FDCWD = -100

_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "armv7l": 437, "i686": 437}
_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "armv7l": 382, "i686": 353}

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def _raise(path: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err), path)


def proc_link(fd: int) -> str:
    """The /proc magic link of an fd: lets calls that need a path act on an open fd."""
    return f"/proc/self/fd/{fd}"


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """Open ``path`` relative to ``dirfd`` with the given RESOLVE_* flags; return an fd.

    ``mode`` is passed only when the flags create a file (the kernel refuses it otherwise).
    EAGAIN (a concurrent rename raced the lookup) is retried a few times, except with
    RESOLVE_CACHED, where it means that the lookup would need the disk.
    """
    creates = bool(flags & os.O_CREAT) or (flags & os.O_TMPFILE) == os.O_TMPFILE
    how = _OpenHow(flags | os.O_CLOEXEC, mode if creates else 0, resolve)
    encoded = os.fsencode(path)
    number = _SYS_OPENAT2[platform.machine()]
    for _ in range(16):
        fd = _syscall(number, dirfd, encoded, ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return int(fd)
        if ctypes.get_errno() != errno.EAGAIN or resolve & RESOLVE_CACHED:
            break
    _raise(path)
    raise AssertionError("unreachable")


def renameat2(old_dirfd: int, old: str, new_dirfd: int, new: str, flags: int = 0) -> None:
    """Rename ``old`` (in ``old_dirfd``) to ``new`` (in ``new_dirfd``); flags as renameat2(2)."""
    number = _SYS_RENAMEAT2[platform.machine()]
    result = _syscall(number, old_dirfd, os.fsencode(old), new_dirfd, os.fsencode(new), flags)
    if result != 0:
        _raise(new)


def openat2_works() -> bool:
    """Tell whether this kernel has openat2 (Linux 5.6 and later)."""
    try:
        fd = openat2(AT_FDCWD, "/", os.O_PATH | os.O_DIRECTORY, 0, RESOLVE_IN_ROOT)
    except (OSError, KeyError):
        return False
    os.close(fd)
    return True


SYNC_FILE_RANGE_WRITE = 2
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def next_data(fd: int, offset: int, size: int) -> int:
    """Where the next data of a file is at or after ``offset`` (``size`` when only a
    hole is left; ``offset`` where the filesystem cannot tell): what lies between is a
    hole, read as zeros."""
    try:
        return os.lseek(fd, offset, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return size
        return offset


def next_hole(fd: int, offset: int, size: int) -> int:
    """Where the next hole of a file is at or after ``offset`` (``size`` where the
    filesystem cannot tell: the end of a file counts as a hole)."""
    try:
        return os.lseek(fd, offset, os.SEEK_HOLE)
    except OSError:
        return size


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range of a file's dirty pages to the disk, without waiting
    (sync_file_range with SYNC_FILE_RANGE_WRITE); a hint, so failures are ignored."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


_getdents64 = _libc.getdents64  # glibc 2.30 and later
_getdents64.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
_getdents64.restype = ctypes.c_ssize_t


def getdents64(fd: int, buffer: ctypes.Array[ctypes.c_char]) -> int:
    """Fill ``buffer`` with the next ``linux_dirent64`` records of the folder ``fd``
    from its current offset; return the bytes filled (0 at the end). Each record's
    ``d_off`` is the offset to ``lseek`` to for the records after it."""
    filled = _getdents64(fd, buffer, len(buffer))
    if filled < 0:
        _raise(f"<folder fd {fd}>")
    return int(filled)


PR_SET_NAME = 15
_prctl = _libc.prctl


def name_this_thread(name: str) -> None:
    """Give the calling thread a name the system shows (``top -H``, ``ps -L``,
    /proc/<pid>/task/<tid>/comm): at most 15 bytes are kept. A hint: failures are ignored."""
    _prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


AT_EMPTY_PATH = 0x1000
STATX_ATTR_IMMUTABLE = 0x10
STATX_ATTR_APPEND = 0x20
_statx = getattr(_libc, "statx", None)  # glibc 2.28 and later
if _statx is not None:
    _statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]


def frozen(fd: int) -> bool | None:
    """Whether the file ``fd`` (an O_PATH fd will do) refuses every change of its
    attributes: on a read-only mount, or immutable or append-only (chmod and chown then
    fail even when they would change nothing). None where this cannot be told."""
    if os.fstatvfs(fd).f_flag & os.ST_RDONLY:
        return True
    if _statx is None:
        return None
    buffer = ctypes.create_string_buffer(256)  # struct statx
    if _statx(fd, b"", AT_EMPTY_PATH, 0, buffer) != 0:
        return None
    attributes = int.from_bytes(buffer.raw[8:16], sys.byteorder)
    return bool(attributes & (STATX_ATTR_IMMUTABLE | STATX_ATTR_APPEND))
