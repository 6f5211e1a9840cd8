"""What the file API's answers are made of: JSON bodies, names shown in JSON, digest
headers, and bodies streamed as they are sent."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator

from ..core.open_files import OpenFile
from ..http_rules import status_line

BLOCK = 1 << 20  # what a download sends at once

Headers = list[tuple[str, str]]


def json_reply(
    status: int, data: object, extra: Headers | None = None
) -> tuple[str, Headers, bytes]:
    """A JSON answer: status line, headers and body."""
    body = json.dumps(data, ensure_ascii=False).encode("utf-8", "replace") + b"\n"
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    return status_line(status), headers + (extra or []), body


def json_text(name: str) -> str:
    """A name for JSON (undecodable bytes shown as U+FFFD)."""
    return os.fsencode(name).decode("utf-8", "replace")


def digest_header(digest: bytes) -> str:
    """A ``Repr-Digest`` value (RFC 9530) for a SHA-256."""
    return f"sha-256=:{base64.b64encode(digest).decode()}:"


class Streamed:
    """A body made as it is sent; closing it (at the end, or when the client left)
    releases what it reads from."""

    def __init__(self, pieces: Iterator[bytes], release: Callable[[], None]) -> None:
        self._pieces = pieces
        self._release = release

    def __iter__(self) -> Iterator[bytes]:
        return self._pieces

    def close(self) -> None:
        try:
            self._pieces.close()  # type: ignore[attr-defined]
        finally:
            self._release()


class FileBody:
    """Streams byte ranges of an open file, then closes it."""

    def __init__(self, file: OpenFile, parts: list[tuple[bytes, int, int]], tail: bytes) -> None:
        self._file = file
        self._parts = parts  # (prefix bytes, first, last) for each range
        self._tail = tail

    def __iter__(self) -> Iterator[bytes]:
        for prefix, first, last in self._parts:
            if prefix:
                yield prefix
            offset = first
            while offset <= last:
                data = self._file.read(offset, min(BLOCK, last - offset + 1))
                if not data:
                    return  # the file shrank while it was sent
                offset += len(data)
                yield data
        if self._tail:
            yield self._tail

    def close(self) -> None:
        self._file.close()


Body = bytes | FileBody | Streamed
