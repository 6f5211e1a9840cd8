"""SQLite databases over the file API: ``GET <file>?snapshot`` sends a consistent copy
of a live database, ``PUT <file>?restore`` replaces its content with an uploaded one.

The copy is finished before the answer begins (see ``core/sqlite_snapshots.py``), so
its ``Content-Length`` and ``Repr-Digest`` are known; ``X-Snapshot-Time`` (RFC 3339)
and ``Last-Modified`` say the moment it shows. It lives in an unlinked temp file that
is let go when the answer ends, however it ends.
"""

from __future__ import annotations

import datetime
import email.utils
import posixpath
from collections.abc import Iterator
from typing import Any

from ..core.session import Session
from ..core.sqlite_snapshots import (
    DamagedDatabase,
    NotADatabase,
    Snapshot,
    StillBusy,
    UnfitUpload,
)
from ..http_rules import status_line
from .bodies import received
from .errors import ApiError
from .replies import BLOCK, Headers, Streamed, digest_header, json_reply, json_text
from .zips import _disposition

MEDIA_TYPE = "application/vnd.sqlite3"
RETRY_AFTER = "5"  # seconds, when a busy database never settled


def _busy(exc: StillBusy) -> ApiError:
    return ApiError(503, "busy", str(exc.strerror), [("Retry-After", RETRY_AFTER)])


def _not_a_database(session: Session, path: str) -> ApiError:
    return ApiError(
        415,
        "not_a_database",
        f"{json_text(session.path(path))} is not an SQLite database "
        "(snapshots and restores are for SQLite databases only)",
    )


def snapshot(session: Session, path: str) -> tuple[str, Headers, Streamed]:
    """``?snapshot``: the database ``path`` copied as of one moment, then sent."""
    try:
        copy = session.sqlite_snapshot(path)
    except NotADatabase:
        raise _not_a_database(session, path) from None
    except DamagedDatabase as exc:
        raise ApiError(
            422, "damaged_database", f"{json_text(session.path(path))}: {exc.strerror}"
        ) from None
    except StillBusy as exc:
        raise _busy(exc) from None
    taken = datetime.datetime.fromtimestamp(copy.taken, datetime.UTC)
    name = json_text(posixpath.basename(session.path(path)))
    headers = [
        ("Content-Type", MEDIA_TYPE),
        ("Content-Length", str(copy.size)),
        ("Content-Disposition", _disposition(name)),
        ("Repr-Digest", digest_header(copy.sha256)),
        ("X-Snapshot-Time", taken.isoformat(timespec="microseconds").replace("+00:00", "Z")),
        ("Last-Modified", email.utils.formatdate(copy.taken, usegmt=True)),
        ("Cache-Control", "no-store"),
    ]
    return status_line(200), headers, Streamed(_pieces(copy), copy.close)


def _pieces(copy: Snapshot) -> Iterator[bytes]:
    offset = 0
    while data := copy.read(offset, BLOCK):
        offset += len(data)
        yield data


def restore(
    environ: dict[str, Any], session: Session, path: str, expected: bytes | None
) -> tuple[str, Headers, bytes]:
    """``?restore``: the body, checked (its digest when one is ``expected``, then as an
    SQLite database), replaces the content of the live database ``path``."""
    length_text = str(environ.get("CONTENT_LENGTH") or "")
    if length_text and not length_text.isdigit():
        raise ApiError(400, "bad_request", "Content-Length is not a number")
    try:
        upload = session.restore_upload(path)
    except NotADatabase:
        raise _not_a_database(session, path) from None
    try:
        digest = received(environ, upload.write, expected)
        try:
            session.sqlite_restore(path, upload, digest)
        except NotADatabase:
            raise _not_a_database(session, path) from None
        except UnfitUpload as exc:
            raise ApiError(422, "not_a_database", f"nothing changed: {exc.strerror}") from None
        except StillBusy as exc:
            raise _busy(exc) from None
    finally:
        upload.close()
    data = {
        "path": json_text(session.path(path)),
        "size": upload.size,
        "sha256": digest.hex(),
        "restored": True,
    }
    return json_reply(200, data)
