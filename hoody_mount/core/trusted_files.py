"""Files the server trusts: its configuration, its state folder and the files it reads there.

Such a file is trusted only when it is owned by the server's uid and not writable by group
or others; the check is made on the opened file (``fstat`` of its fd), so the file checked
is the file read. A refusal is one ``UntrustedFile`` line that says how to fix it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK  # a FIFO never blocks


class UntrustedFile(Exception):
    """A file or folder the server refuses to trust; the message is one line."""

    def __init__(self, message: str, status: os.stat_result | None = None) -> None:
        super().__init__(message)
        self.status = status  # of the refused file, when it was opened


def problem(st: os.stat_result, path: str | Path) -> str | None:
    """Why a file with this status is not trusted (one line), or None when it is."""
    uid = os.geteuid()
    if st.st_uid != uid:
        return f"{path}: not trusted: owned by uid {st.st_uid} (the server runs as uid {uid})"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        return f"{path}: not trusted: writable by group/others (mode {mode:04o}); chmod go-w {path}"
    return None


def check_fd(fd: int, path: str | Path) -> os.stat_result:
    """The status of an open file, which must be trusted (``UntrustedFile`` otherwise)."""
    st = os.fstat(fd)
    reason = problem(st, path)
    if reason is not None:
        raise UntrustedFile(reason, st)
    return st


def read(path: Path) -> tuple[bytes, os.stat_result]:
    """The content of a trusted regular file and the status it was read with."""
    fd = os.open(path, _READ_FLAGS)
    try:
        st = check_fd(fd, path)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedFile(f"{path}: not trusted: not a regular file", st)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def check_folder(folder: Path, names: Iterable[str] = (), prefixes: Iterable[str] = ()) -> None:
    """Check a folder, and those of its files that have one of ``names`` or start with one
    of ``prefixes`` (absent ones are fine). Entries are looked up in the opened folder, so
    they are the ones a reader there will find as long as the folder stays trusted."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        check_fd(fd, folder)
        wanted = set(names)
        starts = tuple(prefixes)
        for name in sorted(os.listdir(fd)):
            if name not in wanted and not (starts and name.startswith(starts)):
                continue
            try:
                st = os.stat(name, dir_fd=fd)
            except FileNotFoundError:
                continue  # removed meanwhile, or a dangling link: nothing is read from it
            reason = problem(st, folder / name)
            if reason is not None:
                raise UntrustedFile(reason)
    finally:
        os.close(fd)
