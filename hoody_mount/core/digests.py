"""SHA-256 digests of files, remembered while the file is unchanged.

The key is (device, inode, size, mtime, ctime): any write changes mtime and ctime, a
replacement changes the inode, so a remembered digest is never stale in practice.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict

from .vfs import OpenFile

_BLOCK = 1 << 20
_ENTRIES = 4096

Key = tuple[int, int, int, int, int]


def _key(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class DigestCache:
    """sha256 of open files, computed once per version of the file."""

    def __init__(self, entries: int = _ENTRIES) -> None:
        self._entries = entries
        self._known: OrderedDict[Key, bytes] = OrderedDict()
        self._lock = threading.Lock()

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

    def sha256(self, file: OpenFile) -> bytes:
        """The digest of an open file, read only when this version is not known yet."""
        before = file.stat()
        digest = self.known(before)
        if digest is not None:
            return digest
        hasher = hashlib.sha256()
        offset = 0
        while data := file.read(offset, _BLOCK):
            hasher.update(data)
            offset += len(data)
        digest = hasher.digest()
        if _key(file.stat()) == _key(before):  # not changed while it was read
            self.remember(before, digest)
        return digest
