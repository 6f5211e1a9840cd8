"""A download's reads of one span of a file, done by a helper thread a few blocks ahead
of the sender, so the disk works while the socket does.

Read in line, a cold 1 GiB GET waited for each block's disk read, then for its send,
one after the other (1.4 s where ``rclone serve webdav``, reading with a goroutine of
its own, took 1.0 s). The helper holds at most ``AHEAD_BLOCKS`` blocks that the sender
has not taken, plus the one it reads: memory stays bounded per download. It holds no
turn (``turns.py``): its time goes to ``pread``, off the GIL. Spans shorter than
``MIN_SPAN`` are read in line (a thread would cost more than it saves).

The file is only closed once the helper has stopped: its fd number must never be
reused under a read still running.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

from .open_files import OpenFile
from .syscalls import name_this_thread
from .turns import stepped_aside

AHEAD_BLOCKS = 2
THREAD_NAME = "hoody-ahead"
MIN_SPAN = 8 << 20

_END = object()


class SpanReader:
    """The bytes of ``file`` from ``first`` to ``end`` (exclusive), ``block`` at a time;
    fewer if the file ends sooner (it shrank). ``close`` stops the helper; it does not
    close the file."""

    def __init__(self, file: OpenFile, first: int, end: int, block: int) -> None:
        self._file = file
        self._offset = first
        self._end = end
        self._block = block
        self._stop = False
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[object] = queue.Queue(AHEAD_BLOCKS)

    def __iter__(self) -> Iterator[bytes]:
        if self._end - self._offset < MIN_SPAN:
            yield from self._in_line()
            return
        self._thread = threading.Thread(target=self._ahead, name=THREAD_NAME, daemon=True)
        self._thread.start()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                with stepped_aside():  # (waiting for the disk)
                    item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, OSError):
                raise item
            assert isinstance(item, bytes)
            yield item

    def _in_line(self) -> Iterator[bytes]:
        while self._offset < self._end:
            data = self._file.read(self._offset, min(self._block, self._end - self._offset))
            if not data:
                return
            self._offset += len(data)
            yield data

    def _ahead(self) -> None:
        """The helper: read the span in order into the queue, then the end mark."""
        name_this_thread(THREAD_NAME)
        try:
            for data in self._in_line():
                self._queue.put(data)
                if self._stop:
                    return
        except OSError as exc:
            self._queue.put(exc)
        self._queue.put(_END)

    def close(self) -> None:
        """Stop the helper and wait for it (taking what it put, so it never blocks)."""
        self._stop = True
        thread = self._thread
        while thread is not None and thread.is_alive():
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
            thread.join(0.05)
