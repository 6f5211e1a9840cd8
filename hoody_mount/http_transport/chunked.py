"""Chunked request bodies read in bounded pieces, with malformed ones refused.

cheroot's reader of a chunked body reads each chunk whole into memory at the size the
client announced: a chunk announced as 1 GiB makes the server allocate 1 GiB, and one
of ``ffffffffffffffff`` bytes raised OverflowError (500). This reader takes at most
``PIECE`` bytes of a chunk at a time, whatever its announced size, and a size line that
is not a hexadecimal number of at most 16 digits, or a chunk not followed by CRLF, is
``OSError(EBADMSG)``: the fronts answer 400.
"""

from __future__ import annotations

import errno
import re
from typing import Any

from cheroot.server import ChunkedRFile

PIECE = 64 * 1024
SIZE_LINE_LIMIT = 4096  # a size, and chunk extensions
MAX_CHUNK = 1 << 62  # larger than any file (2^63 - 1 bytes at most): 413
_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


def _malformed(text: str) -> OSError:
    return OSError(errno.EBADMSG, f"malformed chunked body: {text}")


class BoundedChunks(ChunkedRFile):
    """cheroot's chunked reader (same interface), reading ``PIECE`` bytes at a time."""

    def __init__(self, rfile: Any, maxlen: int, bufsize: int = 8192) -> None:
        super().__init__(rfile, maxlen, bufsize)
        self._left = 0  # bytes of the current chunk still to read
        self.broken = False  # the body was malformed: the connection must close

    def _fetch(self) -> None:
        try:
            self._fetch_piece()
        except OSError:
            self.broken = True
            raise

    def _fetch_piece(self) -> None:
        if self.closed:
            return
        if self._left == 0:
            line = self.rfile.readline(SIZE_LINE_LIMIT)
            self.bytes_read += len(line)
            if not line.endswith(b"\n"):
                raise _malformed("a chunk size line that does not end")
            size_text = line.split(b";", 1)[0].strip()
            if not _SIZE.fullmatch(size_text):
                raise _malformed(f"chunk size {size_text[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                self.closed = True
                return
            if size > MAX_CHUNK or (self.maxlen and self.bytes_read + size > self.maxlen):
                raise OSError(errno.EFBIG, "Request Entity Too Large")
            self._left = size
        piece = self.rfile.read(min(self._left, PIECE))
        if not piece:
            raise _malformed("the body ended inside a chunk")
        self._left -= len(piece)
        self.bytes_read += len(piece)
        self.buffer += piece
        if self._left == 0 and self.rfile.read(2) != b"\r\n":
            raise _malformed("a chunk not followed by CRLF")
