"""SHA-256 digests of files, remembered while the file is unchanged.

The key is (device, inode, size, mtime, ctime): any write changes mtime and ctime, a
replacement changes the inode, so a remembered digest is never stale in practice.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .open_files import OpenFile
from .syscalls import next_data
from .turns import stepped_aside, without_turn

_BLOCK = 1 << 20
_ZEROS = memoryview(bytes(_BLOCK))
_CHECK_EVERY = 16 * _BLOCK  # bytes hashed between two looks at whether the asker is gone
_ENTRIES = 4096
HASH_BEHIND_FROM = 8 << 20  # a stream this long is hashed on a helper thread from here on
_HASH_QUEUE = 8  # pieces waiting for the helper before ``update`` waits

Key = tuple[int, int, int, int, int]


def _key(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class DigestCache:
    """sha256 of open files, computed once per version of the file."""

    def __init__(self, entries: int = _ENTRIES) -> None:
        self._entries = entries
        self._known: OrderedDict[Key, bytes] = OrderedDict()
        self._hashed: dict[Key, int] = {}  # digests being computed: the bytes hashed so far
        self._lock = threading.Lock()

    def progress(self, st: os.stat_result) -> int | None:
        """How many bytes of this version of the file a digest being computed has
        hashed so far (None: none is being computed)."""
        with self._lock:
            return self._hashed.get(_key(st))

    def _note(self, key: Key, hashed: int | None) -> None:
        with self._lock:
            if hashed is None:
                self._hashed.pop(key, None)
            else:
                self._hashed[key] = max(hashed, self._hashed.get(key, 0))

    def known(self, st: os.stat_result) -> bytes | None:
        """The digest of this version of the file, if already computed."""
        with self._lock:
            digest = self._known.get(_key(st))
            if digest is not None:
                self._known.move_to_end(_key(st))
            return digest

    def remember(self, st: os.stat_result, digest: bytes) -> None:
        """Store the digest of a file version (e.g. computed while it was uploaded)."""
        with self._lock:
            self._known[_key(st)] = digest
            self._known.move_to_end(_key(st))
            while len(self._known) > self._entries:
                self._known.popitem(last=False)

    def sha256(self, file: OpenFile, cancelled: Callable[[], bool] | None = None) -> bytes:
        """The digest of an open file, read only when this version is not known yet
        (ECANCELED once ``cancelled`` says the asker has gone)."""
        before = file.stat()
        digest = self.known(before)
        if digest is not None:
            return digest
        hasher = hashlib.sha256()
        key = _key(before)
        self._note(key, 0)
        try:
            feed(file, hasher, cancelled, lambda hashed: self._note(key, hashed))
        finally:
            self._note(key, None)
        digest = hasher.digest()
        if _key(file.stat()) == _key(before):  # not changed while it was read
            self.remember(before, digest)
        return digest


@without_turn
def feed(
    file: OpenFile,
    hasher: Any,
    cancelled: Callable[[], bool] | None = None,
    hashed: Callable[[int], None] | None = None,
) -> None:
    """Read the whole of an open file into ``hasher``. Reading to hash is no download:
    the bytes are not counted in the access log's line for the file. The holes of a
    sparse file are hashed as the zeros they read as, without reading the disk; with
    ``cancelled``, the work stops (ECANCELED) once it says the asker has gone; ``hashed``
    is told the bytes hashed so far, every few MiB."""
    offset, done = 0, False
    while not done:
        if cancelled is not None and cancelled():
            raise OSError(errno.ECANCELED, "the client went away")
        offset, done = feed_slice(file, hasher, offset, _CHECK_EVERY)
        if hashed is not None:
            hashed(offset)


def feed_slice(file: OpenFile, hasher: Any, offset: int, limit: int) -> tuple[int, bool]:
    """Hash ``limit`` bytes of an open file from ``offset`` (fewer at its end), holes
    as zeros without reading them: the offset reached, and whether that is the end."""
    counted = file.bytes_read
    end = offset + limit
    size = file.stat().st_size
    try:
        while offset < end:
            if offset < size:
                data_at = min(next_data(file.fd, offset, size), size)
                if data_at > offset:  # a hole
                    step = min(data_at - offset, _BLOCK, end - offset)
                    hasher.update(_ZEROS[:step])
                    offset += step
                    continue
            data = file.read(offset, min(_BLOCK, end - offset))  # (past size: it grew?)
            if not data:
                return offset, True
            hasher.update(data)
            offset += len(data)
        return offset, False
    finally:
        file.bytes_read = counted


class StreamDigest:
    """SHA-256 of a stream, computed while the caller goes on receiving it.

    Hashing on the request thread made a 1 GiB upload through the file API take 0.5 s
    longer than the same upload over WebDAV (SHA-256 runs at about 1.8 GB/s here, and
    the thread received nothing meanwhile). The first ``HASH_BEHIND_FROM`` bytes are
    hashed on the spot; after that a helper thread hashes the pieces in order while the
    caller receives the next ones (``hashlib`` lets go of the GIL on large pieces).
    Pieces must be immutable (``bytes``).
    """

    def __init__(self) -> None:
        self._hasher = hashlib.sha256()
        self._size = 0
        self._pieces: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None

    def update(self, data: bytes) -> None:
        """Add the next piece (waits while ``_HASH_QUEUE`` pieces are not yet hashed)."""
        if self._pieces is None:
            self._hasher.update(data)
            self._size += len(data)
            if self._size >= HASH_BEHIND_FROM:
                self._pieces = queue.Queue(maxsize=_HASH_QUEUE)
                self._thread = threading.Thread(target=self._run, name="hoody-sha256", daemon=True)
                self._thread.start()
            return
        with stepped_aside():  # (the helper's hashing time)
            self._pieces.put(data)

    def digest(self) -> bytes:
        """The digest of everything added (waits for the helper to finish)."""
        self.close()
        return self._hasher.digest()

    def close(self) -> None:
        """Stop the helper, if any (a second call does nothing)."""
        if self._thread is not None and self._pieces is not None:
            self._pieces.put(None)
            with stepped_aside():
                self._thread.join()
            self._thread = None

    def _run(self) -> None:
        assert self._pieces is not None
        while (piece := self._pieces.get()) is not None:
            self._hasher.update(piece)
