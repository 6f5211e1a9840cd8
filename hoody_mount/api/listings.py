"""Folder listings of the file API: pages of JSON resumed with a cursor, and the
folder's HTML page streamed as the folder is read."""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Iterator
from urllib.parse import quote

from ..core import paths
from ..core.filesystems import Usage
from ..core.listing import Entry
from ..core.session import Session
from ..http_names import FILES_ROOT
from ..http_rules import status_line
from . import page
from .errors import ApiError
from .replies import Headers, Streamed, json_reply, json_text

PAGE_DEFAULT, PAGE_MAX = 1000, 10000


_CURSOR = re.compile(r"[0-9a-f]{1,16}\.[0-9a-f]{1,16}")


def _cursor(query: dict[str, list[str]]) -> tuple[int, int] | None:
    """The ``cursor`` a listing page gave as ``next``: the folder's inode and the
    kernel's offset after the page's last name (None: from the start)."""
    if "after" in query:
        raise ApiError(400, "bad_request", "after= is gone: pass a page's next as cursor=")
    text = query.get("cursor", [""])[0]
    if not text:
        return None
    if _CURSOR.fullmatch(text):
        inode, position = (int(part, 16) for part in text.split("."))
        if position < 1 << 63:  # (a folder offset is a signed 64-bit number)
            return inode, position
    raise ApiError(400, "bad_cursor", "cursor is not one this server gave: list from the start")


def _entry_json(entry: Entry, folder: str, root: str) -> dict[str, object]:
    mode = entry.stat.st_mode
    kind = (
        "directory" if stat.S_ISDIR(mode)
        else "file" if stat.S_ISREG(mode)
        else "symlink" if stat.S_ISLNK(mode)
        else "fifo" if stat.S_ISFIFO(mode)
        else "socket" if stat.S_ISSOCK(mode)
        else "device"
    )  # fmt: skip
    item: dict[str, object] = {
        "name": json_text(entry.name),
        # the entry's own URL, its name's bytes percent-encoded: it reaches a name that
        # "name" can only show (bytes that are not UTF-8 appear there as U+FFFD)
        "href": quote(os.fsencode(root + paths.join(folder, entry.name)), safe="/"),
        "type": kind,
        "size": entry.stat.st_size,
        "mtime": entry.stat.st_mtime,
        "mode": f"{stat.S_IMODE(mode):04o}",
    }
    if entry.link_target is not None:
        item["target"] = json_text(entry.link_target)
    return item


def list_json(
    session: Session, path: str, query: dict[str, list[str]], root: str = FILES_ROOT
) -> tuple[str, Headers, bytes]:
    """One page of a folder, in the folder's own order; its ``next`` resumes right
    after it (reading only what the page returns, whatever the folder's size)."""
    try:
        limit = int(query.get("limit", [str(PAGE_DEFAULT)])[0])
    except ValueError:
        raise ApiError(400, "bad_request", "limit must be a whole number") from None
    if not 1 <= limit <= PAGE_MAX:
        raise ApiError(400, "bad_request", f"limit must be from 1 to {PAGE_MAX}")
    cursor = _cursor(query)
    listing = session.listdir(path, position=cursor[1] if cursor else 0)
    try:
        inode = listing.folder().st_ino
        if cursor is not None and cursor[0] != inode:
            raise ApiError(400, "bad_cursor", "cursor is for another folder: list again")
        page_entries = listing.read(limit)
        position = listing.position
        more = bool(page_entries) and bool(listing.read(1))
    finally:
        listing.close()
    data = {
        "path": json_text(session.path(path)),
        "type": "directory",
        "entries": [_entry_json(e, session.path(path), root) for e in page_entries],
        # opaque: pass it back as cursor= for the next page
        "next": f"{inode:x}.{position:x}" if more else None,
    }
    return json_reply(200, data)


def list_html(
    session: Session,
    path: str,
    query: dict[str, list[str]],
    root: str = FILES_ROOT,
    viewer: page.Viewer | None = None,
) -> tuple[str, Headers, Streamed]:
    """The folder's page, streamed as the folder is read (see ``page.render``)."""
    nonce = secrets.token_urlsafe(16)
    listing = session.listdir(path)
    try:
        space: Usage | None = session.usage(path)
    except OSError:
        space = None  # (the page goes on without the bar)

    def batches() -> Iterator[list[Entry]]:
        while batch := listing.read(1024):
            yield batch

    pieces = page.render(
        session.path(path),
        batches(),
        query.get("sort", ["name"])[0],
        "desc" in query,
        nonce,
        writable=session.may("upload"),
        space=space,
        root=root,
        viewer=viewer,
    )
    csp = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; media-src 'self'; frame-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Security-Policy", csp),
        ("Cache-Control", "no-store"),
    ]
    return status_line(200), headers, Streamed(pieces, listing.close)
