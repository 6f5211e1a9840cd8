"""Group commit of folder fsyncs: uploads that finish together in one folder share its
fsync instead of queueing one each behind the disk.

An upload renamed into place is durable once an fsync of its folder that *started after
the rename* has completed. ``sync`` gives exactly that: the first caller of a folder
runs the fsync; a caller arriving while one is in flight waits for the next one, which
starts after it arrived (so after its rename), and which the first of the waiters to
wake runs for all of them. A failed fsync fails every caller that needed it.

A group is keyed by the folder's (st_dev, st_ino) and lives only while a caller is in
it: each caller holds an open fd of the folder meanwhile, so the inode cannot be freed
and its number cannot be reused by another folder while the key is in the table. Any
caller's fd does for the fsync: all of them name the same inode.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable


class _Group:
    """The state of one folder's syncs: ``started`` and ``done`` count syncs (each one
    numbered), ``failed`` is the number of the last that failed and ``error`` its error."""

    __slots__ = ("callers", "done", "error", "failed", "running", "started")

    def __init__(self) -> None:
        self.callers = 0
        self.started = 0
        self.done = 0
        self.running = False
        self.failed = 0
        self.error: OSError | None = None


class FolderSyncs:
    """The folders being synced now, each with its callers (see the module)."""

    def __init__(self, fsync: Callable[[int], None] | None = None) -> None:
        self._fsync = fsync  # (None: os.fsync as it is at the call)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._groups: dict[tuple[int, int], _Group] = {}

    def sync(self, dir_fd: int) -> None:
        """Return once an fsync of the folder ``dir_fd`` that started after this call
        began has completed; its OSError if that fsync failed."""
        st = os.fstat(dir_fd)
        key = (st.st_dev, st.st_ino)
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group()
            group.callers += 1
            needed = group.started + 1  # the first sync to start from now on
            try:
                while group.done < needed:
                    if group.running:
                        self._changed.wait()
                    else:
                        self._run(group, dir_fd)
                if group.failed >= needed and group.error is not None:
                    raise OSError(group.error.errno, group.error.strerror)  # (one per thread)
            finally:
                group.callers -= 1
                if not group.callers:
                    del self._groups[key]

    def _run(self, group: _Group, dir_fd: int) -> None:
        """Run one fsync for the group (called and returning with the lock held)."""
        group.running = True
        group.started += 1
        number = group.started
        error: OSError | None = None
        self._lock.release()
        try:
            (self._fsync or os.fsync)(dir_fd)
        except OSError as exc:
            error = exc
        except BaseException:
            error = OSError(errno.EIO, "the folder's sync was interrupted")
            raise
        finally:
            self._lock.acquire()
            group.running = False
            group.done = number
            if error is not None:
                group.failed, group.error = number, error
            self._changed.notify_all()

    def callers(self, dir_fd: int) -> int:
        """How many callers wait on the folder ``dir_fd`` now (or run its fsync)."""
        st = os.fstat(dir_fd)
        with self._lock:
            group = self._groups.get((st.st_dev, st.st_ino))
            return group.callers if group is not None else 0

    def size(self) -> int:
        """How many folders have callers now."""
        with self._lock:
            return len(self._groups)


_syncs = FolderSyncs()


def sync(dir_fd: int) -> None:
    """``FolderSyncs.sync`` on the process's one table."""
    _syncs.sync(dir_fd)
