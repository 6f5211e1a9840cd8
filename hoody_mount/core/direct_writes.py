"""Large uploads written to the disk with direct I/O while the next part arrives.

An upload is fsynced before it replaces anything. Through the page cache this
machine's disk takes that at about 580 MB/s: the kernel's write-back of 1 GiB took
1.1-1.5 s, most of it after the last byte had arrived, while the client waited. Written
with ``O_DIRECT`` from page-aligned buffers by a helper thread, while the request
thread fills the next buffer, the same 1 GiB took 0.5 s, overlapped with receiving
(the disk's own speed, as ``dd oflag=direct`` measures it).

A ``DirectWriter`` appends whole blocks through a second, ``O_DIRECT`` descriptor of the
file; what is left of the last block goes through the ordinary descriptor, since direct
I/O needs aligned lengths. A filesystem that refuses direct I/O (at the open, or at a
write, ``EINVAL``) gets the remaining blocks through the ordinary descriptor: the
content is the same either way. The upload's fsync still makes it all durable.
"""

from __future__ import annotations

import errno
import mmap
import os
import queue
import threading

from .syscalls import proc_link
from .turns import stepped_aside

BLOCK = 2 << 20  # one direct write: a multiple of any disk's logical block size
BUFFERS = 4  # blocks in memory per upload: one filling, the others queued or on the disk
MAX_WRITERS = 4  # uploads written this way at once; the others use the page cache

_slots = threading.BoundedSemaphore(MAX_WRITERS)


class DirectWriter:
    """Appends to the open file ``fd`` from ``offset`` (a multiple of ``BLOCK``)."""

    @classmethod
    def start(cls, fd: int, offset: int) -> DirectWriter | None:
        """A writer, or None if too many run or the filesystem refuses direct I/O."""
        if offset % BLOCK:
            raise ValueError("direct writes start at a multiple of BLOCK")
        if not _slots.acquire(blocking=False):
            return None
        try:
            direct_fd = os.open(proc_link(fd), os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
        except OSError:
            _slots.release()
            return None
        try:
            return cls(fd, direct_fd, offset)
        except BaseException:
            os.close(direct_fd)
            _slots.release()
            raise

    def __init__(self, fd: int, direct_fd: int, offset: int) -> None:
        self._fd = fd
        self._direct_fd = direct_fd  # -1 once the filesystem refused a direct write
        self._offset = offset  # where the next block goes (advanced by the thread)
        self._free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[mmap.mmap | None] = queue.SimpleQueue()
        self._buffers = [mmap.mmap(-1, BLOCK) for _ in range(BUFFERS)]
        for buffer in self._buffers[1:]:
            self._free.put(buffer)
        self._buffer = self._buffers[0]
        self._fill = 0  # bytes in ``_buffer``
        self._error: OSError | None = None  # the first failed write; the rest are skipped
        self._cancelled = False
        self._thread = threading.Thread(
            target=self._write_blocks, name="hoody-direct-write", daemon=True
        )
        self._thread.start()

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data``; waits while every buffer is queued (the disk is behind).
        A write that failed on the disk is raised here or by ``finish``."""
        self._raise_error()
        view = memoryview(data)
        while view:
            take = min(len(view), BLOCK - self._fill)
            self._buffer[self._fill : self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if self._fill == BLOCK:
                self._full.put(self._buffer)
                with stepped_aside():  # (the disk's time)
                    self._buffer = self._free.get()
                self._fill = 0

    def finish(self) -> tuple[int, bytes]:
        """Wait until the whole blocks are on the disk; return where the rest goes and
        the rest (less than a block), for the caller to write through the page cache."""
        self._join()
        try:
            self._raise_error()
            return self._offset, self._buffer[: self._fill]
        finally:
            self._release()

    def cancel(self) -> None:
        """Drop what is not yet written and end (the upload is being thrown away)."""
        self._cancelled = True
        self._join()
        self._release()

    def _join(self) -> None:
        if self._thread.is_alive():
            self._full.put(None)
            with stepped_aside():
                self._thread.join()

    def _release(self) -> None:
        """Close the direct descriptor and free the buffers (a second call does nothing)."""
        if self._direct_fd >= 0:
            os.close(self._direct_fd)
            self._direct_fd = -1
        if self._buffers:
            for buffer in self._buffers:
                buffer.close()
            self._buffers = []
            _slots.release()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise OSError(self._error.errno, self._error.strerror)

    # -- the helper thread ---------------------------------------------------------------

    def _write_blocks(self) -> None:
        while (buffer := self._full.get()) is not None:
            try:
                if self._error is None and not self._cancelled:
                    self._write_block(buffer)
            except OSError as exc:
                self._error = exc
            except BaseException as exc:  # noqa: BLE001 - the upload fails, never hangs
                self._error = OSError(errno.EIO, f"direct write failed: {exc!r}")
            finally:
                self._free.put(buffer)  # the request thread may be waiting for it

    def _write_block(self, buffer: mmap.mmap) -> None:
        view = memoryview(buffer)
        try:
            while view:
                written = self._pwrite(view)
                view = view[written:]
                self._offset += written
        finally:
            view.release()

    def _pwrite(self, view: memoryview) -> int:
        if self._direct_fd >= 0:
            try:
                return os.pwrite(self._direct_fd, view, self._offset)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                os.close(self._direct_fd)  # alignment this filesystem does not take
                self._direct_fd = -1
        return os.pwrite(self._fd, view, self._offset)
