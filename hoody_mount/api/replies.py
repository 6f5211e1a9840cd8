"""What the file API's answers are made of: JSON bodies, names shown in JSON, digest
headers, and bodies streamed as they are sent."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from ..core.open_files import OpenFile
from ..core.read_ahead import SpanReader
from ..http_rules import status_line
from .errors import ApiError

BLOCK = 1 << 20  # what a download sends at once

Headers = list[tuple[str, str]]


def json_reply(
    status: int, data: object, extra: Headers | None = None
) -> tuple[str, Headers, bytes]:
    """A JSON answer: status line, headers and body."""
    body = json.dumps(data, ensure_ascii=False).encode("utf-8", "replace") + b"\n"
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    return status_line(status), headers + (extra or []), body


JSON_BODY_LIMIT = 64 * 1024


def read_json(environ: dict[str, Any], shape: str) -> dict[str, Any]:
    """A request's JSON object (``ApiError`` 400 or 413 otherwise; ``shape`` says what
    to send)."""
    length_text = str(environ.get("CONTENT_LENGTH") or "0")
    if not length_text.isdigit():
        raise ApiError(400, "bad_request", "Content-Length is not a number")
    length = int(length_text)
    if length > JSON_BODY_LIMIT:
        raise ApiError(413, "too_large", f"JSON bodies are limited to {JSON_BODY_LIMIT} bytes")
    raw = environ["wsgi.input"].read(length) if length else b""
    try:
        data = json.loads(raw or b"null")
    except ValueError:
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None
    except RecursionError:  # e.g. 5,000 nested arrays: no request is nested at all
        raise ApiError(400, "bad_json", "the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", shape)
    return data


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
    """Streams byte ranges of an open file (read ahead, see ``core/read_ahead.py``),
    then closes it."""

    def __init__(self, file: OpenFile, parts: list[tuple[bytes, int, int]], tail: bytes) -> None:
        self._file = file
        self._parts = parts  # (prefix bytes, first, last) for each range
        self._tail = tail
        self._reader: SpanReader | None = None

    def __iter__(self) -> Iterator[bytes]:
        for prefix, first, last in self._parts:
            if prefix:
                yield prefix
            self._reader = SpanReader(self._file, first, last + 1, BLOCK)
            sent = 0
            for data in self._reader:
                sent += len(data)
                yield data
            self._reader.close()
            if sent < last - first + 1:
                return  # the file shrank while it was sent
        if self._tail:
            yield self._tail

    def close(self) -> None:
        try:
            if self._reader is not None:
                self._reader.close()
        finally:
            self._file.close()


Body = bytes | FileBody | Streamed
