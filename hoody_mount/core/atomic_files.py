"""An upload that replaces its target whole or not at all: written to a hidden temp file
beside the target, put in place by a rename at commit, removed at abort."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Callable, Iterator

from . import folder_syncs, syscalls, upload_temps
from .direct_writes import DirectWriter
from .dirfds import rename_noreplace
from .open_files import OpenFile, Times
from .turns import stepped_aside

# An upload's pages are sent to the disk every this many bytes: 1 GiB took 0.45 s more
# to fsync at the end otherwise, time in which the client only waits.
WRITEBACK_STEP = 8 << 20


# From here on an upload is written with direct I/O (see ``direct_writes``); smaller
# files stay in the page cache, where a download soon after finds them.
DIRECT_FROM = 8 << 20


class AtomicFile:
    """A file written in full, then put in place: the old content stays until commit.

    The data goes to a hidden temp file created with O_EXCL in the target's folder (held
    as an fd, so the folder cannot be swapped underneath); ``commit`` fsyncs it, gives it
    the old file's permission bits and owner, renames it over the target and fsyncs the
    folder. ``abort`` (or any failure in ``commit``) removes the temp file. Once a
    write has failed the upload is broken: later writes and ``commit`` raise its error
    (``commit`` aborting first), so a front that reports the error but still closes the
    upload as finished cannot put a partial file in place.
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
        self.failed: OSError | None = None  # the first failed write (or the front's error)
        self.on_commit: Callable[[AtomicFile, bytes | None], None] | None = None
        # After ``commit``: the lstat of the target right after the rename, if it was
        # still this upload's file then (else None: a front asks the session instead)
        self.placed: os.stat_result | None = None
        self._dir = dir_fd

    @contextlib.contextmanager
    def _breaking(self) -> Iterator[None]:
        """Refuse to go on after a failed write; note a write that fails now."""
        self._raise_failed()
        try:
            yield
        except OSError as exc:
            self.failed = exc
            raise

    def _raise_failed(self) -> None:
        if self.failed is not None:
            raise OSError(
                self.failed.errno,
                f"the upload failed ({self.failed.strerror or self.failed}): not put in place",
                self.path,
            )

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data``. The first ``DIRECT_FROM`` bytes go through the page cache,
        the disk starting on them every ``WRITEBACK_STEP`` bytes so that the fsync at
        commit waits for the tail only; from there on a ``DirectWriter`` takes over."""
        with self._breaking():
            self._append(data)

    def _append(self, data: bytes | memoryview) -> None:
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
        with self._breaking():
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
        ``on_commit`` with the SHA-256 ``digest`` of the content, where known. After a
        failed write it aborts instead and raises that write's error."""
        try:
            self._raise_failed()
            if self._direct is not None:
                offset, rest = self._direct.finish()
                self._direct = None
                self.file.write(offset, rest)
            written = os.fstat(self.file.fd)
            if written.st_size < self.size:  # (it ends in a hole)
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
                rename_noreplace(self._dir, self._temp, self._dir, self._name)
        except FileNotFoundError:
            # The temp file went with its folder (a tree removed meanwhile): said so, not
            # by the temp file's name, which the user never sees
            self.abort()
            raise FileNotFoundError(errno.ENOENT, _FOLDER_GONE, self.path) from None
        except BaseException:
            self.abort()
            raise
        self.placed = _still_ours(self._dir, self._name, written)
        dir_fd, self._dir = self._dir, -1
        try:
            with stepped_aside():
                folder_syncs.sync(dir_fd)  # (shared with uploads ending beside it)
        except OSError as exc:
            # The new content is the file now (nothing to undo, nothing lost); what failed
            # is the proof that the rename reached the disk: said so, not as a lost upload
            flushed: OSError | None = OSError(
                exc.errno,
                f"the new content replaced {self.path}, but flushing its folder to the disk "
                f"failed ({exc.strerror}): it may not survive a crash",
                self.path,
            )
        else:
            flushed = None
        finally:
            os.close(dir_fd)
            upload_temps.ended(self._temp)
        if self.on_commit is not None:  # (the audit line: the file was replaced)
            self.on_commit(self, digest)
        if flushed is not None:
            raise flushed

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


_FOLDER_GONE = "the upload was not kept: its folder was removed while it ran"


def _still_ours(dir_fd: int, name: str, ours: os.stat_result) -> os.stat_result | None:
    """The lstat of ``name`` in the folder ``dir_fd`` if it is the file ``ours`` (one
    call, where a lookup from the jail's root takes eight), else None."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    return st if (st.st_ino, st.st_dev) == (ours.st_ino, ours.st_dev) else None


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
