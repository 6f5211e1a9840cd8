"""HTTP rules WebDAV and the file API share, written once: the status of each error
of the core, a file's entity tag, the conditional requests of RFC 9110 §13, and
whether a browser's request comes from another site (``foreign``).

WsgiDAV evaluates WebDAV's conditions itself, from the tag and date the provider
gives it; the file API evaluates them here. Both answer the same way: a tag names one
version of one file (inode, size and modification time in nanoseconds), a date
compares by whole seconds and the same second counts as not modified.
"""

from __future__ import annotations

import email.utils
import errno
import os
import stat
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from .core.locks import Locked

# errno → HTTP status and the file API's stable error code. WebDAV differs in one place,
# by RFC 4918 §9.3.1: MKCOL on a name that exists is 405 (dav/provider.py).
ERRNO_STATUS: Mapping[int, tuple[int, str]] = {
    errno.ENOENT: (404, "not_found"),
    errno.ELOOP: (404, "too_many_links"),  # a link that never resolves: as a dangling one
    errno.EACCES: (403, "forbidden"),
    errno.EPERM: (403, "forbidden"),
    errno.EROFS: (403, "forbidden"),
    errno.EEXIST: (409, "exists"),
    errno.ENOTEMPTY: (409, "not_empty"),
    errno.ENOTDIR: (409, "not_a_directory"),
    errno.EISDIR: (409, "is_a_directory"),
    errno.ENXIO: (409, "not_a_regular_file"),
    errno.EBUSY: (409, "busy"),
    errno.EXDEV: (409, "cross_device"),
    errno.EINVAL: (400, "invalid"),
    errno.EBADMSG: (400, "bad_body"),
    errno.ECANCELED: (400, "cancelled"),
    errno.ENAMETOOLONG: (400, "name_too_long"),
    errno.EFBIG: (413, "too_large"),
    errno.ENOSPC: (507, "insufficient_storage"),
    errno.EDQUOT: (507, "insufficient_storage"),
    errno.ENOLCK: (503, "too_many_locks"),
}
INTERNAL = (500, "internal")
# Reason phrases as RFC 9110 names them (Python's older names for three of them)
REASONS = {status.value: status.phrase for status in HTTPStatus} | {
    413: "Content Too Large",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}


def status_line(status: int) -> str:
    """``404 Not Found`` and so on."""
    return f"{status} {REASONS.get(status, 'Error')}"


def error_status(exc: OSError) -> tuple[int, str]:
    """The HTTP status and error code of an error of the core (a change a lock
    refuses is 423 Locked, RFC 4918)."""
    if isinstance(exc, Locked):
        return 423, "locked"
    return ERRNO_STATUS.get(exc.errno or 0, INTERNAL)


def body_refusal(exc: OSError) -> tuple[int, str] | None:
    """The status and text for an error met while reading a request's body when it is
    the client's doing: a body that stopped arriving (408), a malformed chunked one
    (400), one too large (413); None for any other error."""
    if isinstance(exc, TimeoutError):
        return 408, "the request body stopped arriving"
    if exc.errno == errno.EBADMSG:
        return 400, exc.strerror or "malformed chunked body"
    if exc.errno == errno.EFBIG:
        return 413, "request body too large"
    return None


def opaque_tag(st: os.stat_result) -> str:
    """A file's entity tag without its quotes (WsgiDAV adds them)."""
    return f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"


def entity_tag(st: os.stat_result) -> str:
    """A file's entity tag as the ETag header carries it."""
    return f'"{opaque_tag(st)}"'


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",")]


def _seconds(date: str) -> float | None:
    """An HTTP date as seconds, or None when it cannot be read (then it is ignored,
    RFC 9110 §13.1.3 and §13.1.4)."""
    try:
        return email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, OverflowError):
        return None


def precondition_failure(
    environ: Mapping[str, Any], st: os.stat_result | None, write: bool
) -> str | None:
    """Why If-Match, If-Unmodified-Since or, for a write, If-None-Match fail for the
    resource ``st`` (None: it does not exist), or None when they hold (RFC 9110 §13.2:
    If-Unmodified-Since counts only without If-Match). A folder has no tag."""
    match = environ.get("HTTP_IF_MATCH")
    none_match = environ.get("HTTP_IF_NONE_MATCH") if write else None
    since = environ.get("HTTP_IF_UNMODIFIED_SINCE")
    tag = entity_tag(st) if st is not None and not stat.S_ISDIR(st.st_mode) else None
    if match is not None:
        tags = _tags(str(match))
        if st is None or ("*" not in tags and tag not in tags):
            return "If-Match: the file is not the one named"
    elif since is not None and st is not None:
        limit = _seconds(str(since))
        if limit is not None and int(st.st_mtime) > limit:
            return "If-Unmodified-Since: the file changed"
    if none_match is not None and st is not None:
        tags = [t.removeprefix("W/") for t in _tags(str(none_match))]
        if "*" in tags or (tag is not None and tag in tags):
            return "If-None-Match: the file exists"
    return None


def has_preconditions(environ: Mapping[str, Any], write: bool) -> bool:
    """Whether ``precondition_failure`` has anything to check (it needs a stat)."""
    names = ("HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE", "HTTP_IF_NONE_MATCH")
    return any(name in environ for name in names[: 3 if write else 2])


def creates_only(environ: Mapping[str, Any]) -> bool:
    """Whether a write may only create (``If-None-Match: *``): then it never replaces."""
    return "*" in _tags(str(environ.get("HTTP_IF_NONE_MATCH", "")))


# The seconds an HTTP date can carry (RFC 9110 §5.6.7: a four-digit year, UTC); a file's
# time outside them (the kernel keeps times to the year 292 billion) is shown at the edge
EARLIEST = -62135596800  # 0001-01-01 00:00:00
LATEST = 253402300799  # 9999-12-31 23:59:59


def http_seconds(seconds: float) -> float:
    """A file's time as an HTTP date can carry it: clamped to the years 1 to 9999."""
    return max(EARLIEST, min(LATEST, seconds))


def http_date(seconds: float) -> str:
    """A file's time as an HTTP date (``Last-Modified``), clamped as ``http_seconds``."""
    return email.utils.formatdate(http_seconds(seconds), usegmt=True)


def not_modified(environ: Mapping[str, Any], st: os.stat_result) -> bool:
    """Whether a GET or HEAD of ``st`` is answered 304: If-None-Match names its tag (or
    ``*``), or else If-Modified-Since is not before its modification's second."""
    none_match = environ.get("HTTP_IF_NONE_MATCH")
    if none_match is not None:
        tag = entity_tag(st)
        tags = _tags(str(none_match))
        return "*" in tags or tag in tags or f"W/{tag}" in tags
    since = environ.get("HTTP_IF_MODIFIED_SINCE")
    if since:
        limit = _seconds(str(since))
        return limit is not None and int(http_seconds(st.st_mtime)) <= limit
    return False


_DEFAULT_PORTS = {"http": 80, "https": 443}
_FOREIGN_SITES = frozenset({"cross-site", "same-site"})

Origin = tuple[str, str, int]


def _parse(scheme: str, netloc: str) -> Origin | None:
    """(scheme, host, port) of ``scheme://netloc``, the port defaulted; None if malformed."""
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS or not netloc or "@" in netloc:
        return None
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path or parts.query or parts.fragment:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def own_origin(environ: dict[str, Any]) -> Origin | None:
    """The origin the request was sent to: its scheme and ``Host`` (or the server's name)."""
    scheme = str(environ.get("wsgi.url_scheme", "http"))
    host = environ.get("HTTP_HOST")
    if not host:
        host = f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    return _parse(scheme, str(host).strip())


def foreign(environ: dict[str, Any]) -> str | None:
    """Why the request comes from another site (one sentence), or None when it does not."""
    site = str(environ.get("HTTP_SEC_FETCH_SITE", "")).strip().lower()
    if site in _FOREIGN_SITES:
        return f"the browser says this request is {site} (Sec-Fetch-Site)"
    sent = environ.get("HTTP_ORIGIN")
    if sent is None or (site == "same-origin" and str(sent).strip() == "null"):
        # (a form posted from one of this server's pages, which send no referrer:
        # browsers then say Origin: null, and Sec-Fetch-Site tells the truth)
        return None
    text = str(sent).strip()
    scheme, sep, rest = text.partition("://")
    parsed = _parse(scheme, rest) if sep else None
    if parsed is None or parsed != own_origin(environ):
        return f"the request comes from the origin {text!r}, not from this server"
    return None
