"""A file's download: its headers (tag, date, digest, and those that keep an active
type from running in a browser), 304 when the client has it, and its whole content,
one range, or several ranges as multipart/byteranges."""

from __future__ import annotations

import mimetypes
import os
import secrets
from typing import Any

from .. import http_rules
from ..core import byteranges as ranges
from ..core.content import is_active
from ..core.open_files import OpenFile
from ..http_rules import status_line
from .replies import Body, FileBody, Headers, digest_header, json_reply


def send_file(
    environ: dict[str, Any],
    file: OpenFile,
    path: str,
    st: os.stat_result,
    digest: bytes | None,
) -> tuple[str, Headers, Body]:
    etag = http_rules.entity_tag(st)
    kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    headers: Headers = [
        ("ETag", etag),
        ("Last-Modified", http_rules.http_date(st.st_mtime)),
        ("Accept-Ranges", "bytes"),
    ]
    if digest is not None:
        headers.append(("Repr-Digest", digest_header(digest)))
    if is_active(kind):
        headers += [
            ("Content-Disposition", "attachment"),
            ("Content-Security-Policy", "sandbox"),
        ]
    if http_rules.not_modified(environ, st):
        file.close()
        return status_line(304), headers, b""
    size = st.st_size
    wanted = environ.get("HTTP_RANGE")
    if_range = environ.get("HTTP_IF_RANGE")
    spans = None
    if wanted and (if_range is None or if_range == etag):
        try:
            spans = ranges.parse(wanted, size)
        except ranges.RangeError as exc:
            file.close()
            return json_reply(
                416,
                {"error": "range_not_satisfiable", "message": str(exc)},
                [("Content-Range", f"bytes */{size}")],
            )
    if not spans:
        headers += [("Content-Type", kind), ("Content-Length", str(size))]
        return status_line(200), headers, FileBody(file, [(b"", 0, size - 1)], b"")
    if len(spans) == 1:
        first, last = spans[0]
        headers += [
            ("Content-Type", kind),
            ("Content-Length", str(last - first + 1)),
            ("Content-Range", f"bytes {first}-{last}/{size}"),
        ]
        return status_line(206), headers, FileBody(file, [(b"", first, last)], b"")
    boundary = secrets.token_hex(12)
    parts = []
    length = 0
    for first, last in spans:
        prefix = (
            f"\r\n--{boundary}\r\nContent-Type: {kind}\r\n"
            f"Content-Range: bytes {first}-{last}/{size}\r\n\r\n"
        ).encode()
        parts.append((prefix, first, last))
        length += len(prefix) + last - first + 1
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers += [
        ("Content-Type", f"multipart/byteranges; boundary={boundary}"),
        ("Content-Length", str(length + len(tail))),
    ]
    return status_line(206), headers, FileBody(file, parts, tail)
