"""Request hygiene in front of WsgiDAV: what must be refused or cleaned before it parses.

- Read-only users: every method that could change anything (PUT, DELETE, MKCOL, COPY,
  MOVE, PROPPATCH, LOCK, UNLOCK, POST) gets 403 before WsgiDAV stores a lock or a dead
  property; OPTIONS shows them only the read methods.
- Paths with a ``..`` segment get a complete 400 (WsgiDAV would answer without a body),
  and so do paths that are not UTF-8 (WsgiDAV failed on them and dropped the connection).
- XML bodies with a DOCTYPE get 400: no DTD of any kind, internal or external.
- ``Depth: infinity`` PROPFIND (also the default with no Depth) gets 403
  propfind-finite-depth (RFC 4918 §9.1).
- A Range header WsgiDAV would misread (reversed, unknown unit, malformed, several
  ranges, of which it sent the last alone) is dropped, so the whole file is sent; one
  range is passed on in the one spelling WsgiDAV reads; an unsatisfiable one gets 416.
- Stored HTML, SVG and XML are sent as sandboxed attachments.
- A GET of a folder (a browser opening ``/dav/``) is sent on to the folder's page in
  the file API (303).
- ``If-Modified-Since`` counts its own second as not modified (RFC 9110 §13.1.3).
- An ``X-OC-Mtime`` that no file can carry gets 400 before the upload starts (WsgiDAV
  applied it after the new content had replaced the old, and failed with 500 there).
- A LOCK of a path through a link (to a file, or into a folder) gets 403 naming the
  path it leads to: the lock would lie on the link's name, and cover nothing when the
  file is changed by its own name (``Session.lock_refusal``).
- PUT, DELETE, MOVE and COPY of the share's root (``/dav/``) get 405: it is the user's
  whole folder, never a file.
- A COPY or MOVE ``Destination`` names exactly the target the client meant, or gets 400
  (see ``exact_destination``); one that is the source or a folder above it, by
  identity (also through a link), gets 403: WsgiDAV would delete it, and the source
  with it, before copying.
"""

from __future__ import annotations

import email.utils
import io
import os
import stat
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes, urlparse, urlsplit, urlunsplit
from xml.parsers import expat

from wsgidav.dav_error import (
    DAVError,
)

from ..core import byteranges, permissions
from ..core.content import is_active
from ..core.locks import brought_tokens
from ..core.session import SameFile, Session
from ..http_names import DAV_ROOT, FILES_ROOT, SESSION, SHOWN_ROOT
from ..http_rules import body_refusal
from .propfind_stream import STREAMED
from .provider import STATED

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# Each method as the operation it asks for, checked against ``core.permissions`` (a
# method not named here is left to WsgiDAV, which refuses it)
OPERATIONS = {
    "OPTIONS": "stat",
    "HEAD": "read",
    "GET": "read",
    "PROPFIND": "list",
    "PUT": "upload",
    "POST": "upload",
    "PATCH": "upload",
    "DELETE": "remove-tree",
    "MKCOL": "mkdir",
    "COPY": "copy",
    "MOVE": "rename",
    "PROPPATCH": "set-properties",
    "LOCK": "lock",
    "UNLOCK": "lock",
}
SHARE = DAV_ROOT
_MISCASED = b"no such share: paths are case-sensitive, the share is /dav/\n"
LISTINGS = FILES_ROOT  # where a browser is sent for a folder's page
_NO_PAGES = (
    b"a folder: its page is part of the file API, which you may not use; "
    b"open the folder with a WebDAV client\n"
)
XML_LIMIT = 1 << 20
XML_DEPTH = 64  # WebDAV bodies nest 5 or 6 deep; a lock owner may hold some markup
XML_ELEMENTS = 5_000  # a PROPFIND of every property anyone defines is far below
_FINITE_DEPTH = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>\n'
)


def _answer(
    start_response: StartResponse,
    status: str,
    body: bytes,
    kind: str = "text/plain",
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [("Content-Type", kind), ("Content-Length", str(len(body))), *(extra or [])]
    start_response(status, headers)
    return [body]


ROOT_REFUSED = frozenset({"PUT", "DELETE", "MOVE", "COPY"})
MAX_MTIME = (2**63 - 1) // 10**9  # seconds that fit a file's time in nanoseconds


def _judge_since(environ: dict[str, Any]) -> None:
    """Set If-Modified-Since of a GET or HEAD up for WsgiDAV as RFC 9110 §13.1.3 reads it.

    With If-None-Match it is dropped: the tag alone decides (WsgiDAV answered 412 to a
    matching tag with a date the file was not modified since, and davfs2, which sends
    both to revalidate its cache, failed to open the file). Otherwise it moves one second
    on: WsgiDAV answers 304 only for a file older than the date, where the RFC also
    wants it for one of the same second (a client sending back the Last-Modified it was
    given got the whole file again)."""
    if "HTTP_IF_NONE_MATCH" in environ:
        del environ["HTTP_IF_MODIFIED_SINCE"]
        return
    parts = email.utils.parsedate_tz(str(environ["HTTP_IF_MODIFIED_SINCE"]))
    try:
        later = email.utils.formatdate(email.utils.mktime_tz(parts) + 1, usegmt=True)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return  # an unreadable or impossible date is left to WsgiDAV, which ignores it
    environ["HTTP_IF_MODIFIED_SINCE"] = later


def exact_destination(raw: str) -> str:
    """A Destination header as WsgiDAV reads it to name exactly the target the client
    meant, or ``ValueError`` saying why no reading can.

    WsgiDAV percent-decodes the header and only then parses it as a URL, so an encoded
    ``;``, ``?``, tab or newline became a URL delimiter or was dropped: a MOVE to
    ``report%3Bv2`` replaced ``report``. Here the header is parsed first, its path
    decoded once, and the target passed on in a spelling WsgiDAV's reading gives back
    whole (a trailing ``/`` keeps a ``;`` in the last name out of URL parameters).
    What no spelling can carry (``?``, control characters) is refused, never guessed.
    """
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in raw):
        raise ValueError("control characters must be percent-encoded")
    parts = urlsplit(raw)
    if "?" in raw or "#" in raw:
        raise ValueError("a query or fragment names no file")
    if not parts.path.startswith("/") or (parts.scheme and not parts.netloc):
        raise ValueError("must be an absolute path (/dav/…) or a URL of this server")
    # (WSGI hands a header over as latin-1: raw bytes, such as unencoded UTF-8, stay bytes)
    names = [unquote_to_bytes(segment.encode("latin-1")) for segment in parts.path.split("/")]
    if any(b"/" in name or b"\0" in name for name in names):
        raise ValueError("a name cannot hold an encoded '/' or NUL")
    if any(name == b".." for name in names):
        raise ValueError("'..' is not allowed in paths")
    if _miscased_share(parts.path):
        raise ValueError(_MISCASED.decode().strip())
    try:
        path = b"/".join(names).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("WebDAV paths must be UTF-8") from None
    spelled = path + "/" if ";" in path.rsplit("/", 1)[-1] else path
    if urlparse(spelled, allow_fragments=False).path != spelled:  # as WsgiDAV reads it
        raise ValueError(
            "this name cannot travel in a WebDAV Destination (it holds '?', a tab or a line "
            "break); rename it over SFTP or the file API"
        )
    return urlunsplit((parts.scheme, parts.netloc, quote(spelled, safe="/"), "", ""))


def _requested(environ: dict[str, Any]) -> str | None:
    """The path in the user's jail that the request names, or None outside the share
    (WSGI hands the path over as latin-1: its bytes are the name's)."""
    return _share_path(os.fsdecode(str(environ.get("PATH_INFO", "")).encode("latin-1")))


def _in_share(path: str) -> bool:
    """Whether ``path`` is the share or lies in it (the rest is ``/``, shared by all)."""
    return path == SHARE or path.startswith(SHARE + "/")


def _changes(method: str) -> bool:
    """Whether ``method`` changes something (a file, a lock or a property)."""
    operation = OPERATIONS.get(method)
    return operation is not None and operation not in ("stat", "read", "list")


def _miscased_share(path: str) -> bool:
    """Whether a path names the share in other letters (``/DAV/…``): WsgiDAV matches
    share names whatever their case, so such a path would reach the share around
    every check here that names it (``/dav``)."""
    first = path.lstrip("/").split("/", 1)[0]
    return first != SHARE[1:] and first.lower() == SHARE[1:]


def _share_path(path: str) -> str | None:
    """The path in the user's jail of a path under the share, or None."""
    if path != SHARE and not path.startswith(SHARE + "/"):
        return None
    return path.removeprefix(SHARE) or "/"


def _listing_of_folder(environ: dict[str, Any]) -> str | None:
    """For a GET of a folder of the share (a browser opening ``/dav/``), the URL of its
    page in the file API; WsgiDAV answered 403 naming options no user can set."""
    session = environ.get(SESSION)
    path = _requested(environ)
    if session is None or path is None:
        return None
    try:
        st = session.stat(path)
    except OSError:
        return None
    environ[STATED] = (path, st)  # WsgiDAV's lookup of the same path takes it (provider)
    if not stat.S_ISDIR(st.st_mode):
        return None
    folder = path if path.endswith("/") else path + "/"
    shown = environ.get(SHOWN_ROOT)  # (a link's WebDAV root: its pages are one level up)
    listings = shown.removesuffix(SHARE) if shown else LISTINGS
    return listings + quote(folder, errors="surrogateescape")


def _destination_holds_source(environ: dict[str, Any]) -> bool:
    """Whether a COPY or MOVE names as its Destination the source itself or a folder
    above it, by identity (through links too): WsgiDAV compares the paths only, then
    deletes the destination it is to replace, and the source with it."""
    session = environ.get(SESSION)
    source = _requested(environ)
    target = _share_path(unquote(urlsplit(str(environ["HTTP_DESTINATION"])).path))
    if session is None or source is None or target is None or source == "/":
        return False
    try:
        session.check_replace(source, target, above=True)
    except SameFile:
        return True
    except OSError:
        return False  # (a missing source or a refused name: WsgiDAV answers)
    return False


def _lock_refusal(environ: dict[str, Any]) -> str | None:
    """Why a LOCK of this path is refused (it leads through a link: the lock would not
    cover the file it names), or None (a missing or refused path: WsgiDAV answers)."""
    session = environ.get(SESSION)
    path = _requested(environ)
    if session is None or path is None:
        return None
    try:
        return session.lock_refusal(path)  # type: ignore[no-any-return]
    except OSError:
        return None


def _utf8(path_info: str) -> bool:
    """Whether the raw path (WSGI hands it over as latin-1) is UTF-8, the only paths
    WsgiDAV can decode (it failed before answering, and the connection was dropped)."""
    try:
        path_info.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return False
    return True


def _mtime_ok(value: str) -> bool:
    """Whether an ``X-OC-Mtime`` is whole seconds (ASCII digits: WsgiDAV took any
    Unicode digit and failed on it) that a file's time can hold."""
    text = value.strip()
    return text.isascii() and text.isdigit() and int(text) <= MAX_MTIME


def _xml_shape_problem(body: bytes) -> str | None:
    """Whether an XML body nests too deep or holds too many elements (a body that is
    not well-formed is left to WsgiDAV, which answers 400 for it)."""
    parser = expat.ParserCreate()
    depth = 0
    elements = 0

    class _TooMuch(Exception):
        pass

    class _Doctype(Exception):
        pass

    def start(_name: str, _attrs: dict[str, str]) -> None:
        nonlocal depth, elements
        depth += 1
        elements += 1
        if depth > XML_DEPTH or elements > XML_ELEMENTS:
            raise _TooMuch

    def end(_name: str) -> None:
        nonlocal depth
        depth -= 1

    def doctype(*_args: object) -> None:
        raise _Doctype

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.StartDoctypeDeclHandler = doctype  # (in any encoding, UTF-16 too)
    try:
        parser.Parse(body, True)
    except _Doctype:
        return "DTDs are not accepted"
    except _TooMuch:
        if depth > XML_DEPTH:
            return f"XML bodies may nest {XML_DEPTH} elements deep at most"
        return f"XML bodies may hold {XML_ELEMENTS} elements at most (properties included)"
    except expat.ExpatError:
        return None
    return None


class _Body:
    """An upload's body, whose read errors WsgiDAV answers rightly: it made a 500 of
    every exception while copying a PUT's body, also of a body that stalled (408) or
    a malformed chunked one (400)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        try:
            return bytes(self._stream.read(size))
        except OSError as exc:
            refusal = body_refusal(exc)
            if refusal is None:
                raise
            raise DAVError(*refusal) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


KeyOfUrl = Callable[[str, Session], "str | None"]


def _if_tags_as_keys(header: str, session: Session, keys: KeyOfUrl) -> str:
    """The ``If`` header with each resource tag (RFC 4918 §10.4: a ``<URL>`` outside the
    parenthesised lists; a ``<lock token>`` inside one stays) spelled as the lock key
    of that resource, which is what WsgiDAV compares a tag with: a jailed user's
    ``If: </dav/f> (["etag"])`` was compared with ``/dav/<jail>/f``, never matched,
    and the condition was skipped (the write went through)."""
    out: list[str] = []
    depth = 0
    at = 0
    while at < len(header):
        char = header[at]
        if char == "<" and depth == 0:
            end = header.find(">", at)
            if end < 0:
                break
            tag = header[at + 1 : end]
            out.append(f"<{keys(tag, session) or tag}>")
            at = end + 1
            continue
        depth += (char == "(") - (char == ")")
        out.append(char)
        at += 1
    return "".join(out) + header[at:]


def _allowed(session: Session | None) -> str | None:
    """The Allow header of a user who may not do everything: the methods they may
    use (None: WsgiDAV's own, which shows what the resource supports)."""
    if session is None or all(map(session.may, OPERATIONS.values())):
        return None
    return ", ".join(method for method, op in OPERATIONS.items() if session.may(op))


class DavGate:
    """WSGI middleware that refuses or cleans requests before WsgiDAV sees them."""

    def __init__(
        self,
        app: WSGIApp,
        keys: KeyOfUrl | None = None,
        drop_locks: Callable[[str], int] | None = None,
        lock_holders: Callable[[], list[str]] | None = None,
    ) -> None:
        self.app = app
        self.keys = keys  # an ``If`` header's tag → the lock key WsgiDAV compares it to
        self._drop_locks = drop_locks
        self._lock_holders = lock_holders

    def lock_holders(self) -> list[str]:
        """The users holding WebDAV locks now."""
        return self._lock_holders() if self._lock_holders is not None else []

    def forget_user(self, name: str) -> int:
        """Release the locks of a user who was removed (they would keep others out of
        its files for as long as their timeout, up to weeks); how many."""
        return self._drop_locks(name) if self._drop_locks is not None else 0

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", ""))
        session = environ.get(SESSION)
        operation = OPERATIONS.get(method)
        why = None if session is None or operation is None else session.refusal(operation)
        if why is not None:
            return _answer(start_response, "403 Forbidden", f"{why}\n".encode())
        if session is not None:
            # (WsgiDAV checks the locks of the path as named itself, on the core's table;
            # the core checks where links lead, with the tokens the request brings)
            session.locks_checked = True
            session.lock_tokens = brought_tokens(
                str(environ.get("HTTP_IF", "")), str(environ.get("HTTP_LOCK_TOKEN", ""))
            )
        if "HTTP_IF" in environ and session is not None and self.keys is not None:
            environ["HTTP_IF"] = _if_tags_as_keys(str(environ["HTTP_IF"]), session, self.keys)
        if _miscased_share(str(environ.get("PATH_INFO", ""))):
            return _answer(start_response, "404 Not Found", _MISCASED)
        if ".." in str(environ.get("PATH_INFO", "")).split("/"):
            return _answer(start_response, "400 Bad Request", b"'..' is not allowed in paths\n")
        if not _utf8(str(environ.get("PATH_INFO", ""))):
            return _answer(
                start_response,
                "400 Bad Request",
                b"WebDAV paths must be UTF-8; this name is reachable over SFTP and the file API\n",
            )
        if method == "PROPFIND" and environ.get("HTTP_DEPTH", "infinity").lower() == "infinity":
            return _answer(
                start_response, "403 Forbidden", _FINITE_DEPTH, "application/xml; charset=utf-8"
            )
        if _changes(method) and not _in_share(str(environ.get("PATH_INFO", ""))):
            # ``/`` is shared by every user: a lock there (LOCK Depth infinity) covered
            # every user's files, and a property there was one every jail could read
            return _answer(
                start_response, "403 Forbidden", b"only the /dav share can be changed or locked\n"
            )
        if method == "LOCK" and session is not None:
            through_link = _lock_refusal(environ)
            if through_link is not None:
                return _answer(start_response, "403 Forbidden", f"{through_link}\n".encode())
        if method in ROOT_REFUSED and str(environ.get("PATH_INFO", "")).rstrip("/") == SHARE:
            return _answer(
                start_response,
                "405 Method Not Allowed",
                b"the share's root cannot be replaced, moved or deleted\n",
                extra=[("Allow", "OPTIONS, GET, HEAD, PROPFIND")],
            )
        if method in ("COPY", "MOVE") and "HTTP_DESTINATION" in environ:
            try:
                environ["HTTP_DESTINATION"] = exact_destination(str(environ["HTTP_DESTINATION"]))
            except ValueError as exc:
                text = f"Destination: {exc}\n".encode()
                return _answer(start_response, "400 Bad Request", text)
            if _destination_holds_source(environ):
                return _answer(
                    start_response,
                    "403 Forbidden",
                    b"the Destination is the source or a folder that holds it: replacing it "
                    b"would destroy the source\n",
                )
        if not _mtime_ok(str(environ.get("HTTP_X_OC_MTIME", "0"))):
            return _answer(
                start_response,
                "400 Bad Request",
                b"X-OC-Mtime must be whole seconds a file's time can hold\n",
            )
        if method == "PUT":
            environ["wsgi.input"] = _Body(environ["wsgi.input"])
        if method not in ("PUT", "GET", "HEAD"):
            problem = self._xml_body_problem(environ)
            if problem is not None:
                return _answer(start_response, "400 Bad Request", problem.encode() + b"\n")
        if method in ("GET", "HEAD"):
            listing = _listing_of_folder(environ)
            refused = session is not None and permissions.protocol_refusal(session.user, "http")
            if listing is not None and refused:
                return _answer(start_response, "403 Forbidden", _NO_PAGES)
            if listing is not None:
                text = f"a folder: its listing is at {listing}\n".encode()
                return _answer(start_response, "303 See Other", text, extra=[("Location", listing)])
        if method in ("GET", "HEAD") and "HTTP_IF_MODIFIED_SINCE" in environ:
            _judge_since(environ)
        if method in ("GET", "HEAD") and "HTTP_RANGE" in environ:
            refusal = self._check_range(environ, start_response)
            if refusal is not None:
                return refusal
        return self.app(environ, self._headers(start_response, environ, _allowed(session)))

    @staticmethod
    def _xml_body_problem(environ: dict[str, Any]) -> str | None:
        """Read a small request body (the listener already bounds it to 1 MiB) and say
        what is wrong with it, if anything: a DTD of any kind, elements nested deeper
        than ``XML_DEPTH`` (a LOCK owner 3,000 deep made WsgiDAV fail with
        RecursionError, 500) or more than ``XML_ELEMENTS`` of them (a PROPFIND naming
        60,000 properties ran for minutes and took 850 MB)."""
        length = str(environ.get("CONTENT_LENGTH") or "0")
        if not length.isdigit() or int(length) == 0:
            return None
        body = environ["wsgi.input"].read(min(int(length), XML_LIMIT))
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        if b"<!doctype" in body.lower():
            return "DTDs are not accepted"
        return _xml_shape_problem(body)

    @staticmethod
    def _check_range(environ: dict[str, Any], start_response: StartResponse) -> list[bytes] | None:
        session = environ.get(SESSION)
        if session is None:
            return None
        path = _requested(environ)
        if path is None:
            return None
        try:
            size = session.stat(path).st_size
        except OSError:
            return None  # WsgiDAV answers for missing paths
        try:
            ranges = byteranges.parse(str(environ["HTTP_RANGE"]), size)
            if ranges is None or len(ranges) > 1:  # WsgiDAV would send the last range alone
                del environ["HTTP_RANGE"]
            else:  # in the one spelling WsgiDAV reads right
                environ["HTTP_RANGE"] = "bytes={}-{}".format(*ranges[0])
        except byteranges.RangeError:
            start_response(
                "416 Range Not Satisfiable",
                [("Content-Range", f"bytes */{size}"), ("Content-Length", "0")],
            )
            return [b""]
        return None

    @staticmethod
    def _headers(
        start_response: StartResponse, environ: dict[str, Any], allowed: str | None
    ) -> StartResponse:
        method = str(environ.get("REQUEST_METHOD", ""))

        def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if environ.get(STREAMED):
                # WsgiDAV closes the connection after any answer without Content-Length;
                # a streamed one goes out chunked and the connection can stay (the
                # listener still closes it if the request's body was not all read)
                headers = [(n, v) for n, v in headers if n.lower() != "connection"]
            if allowed is not None and method == "OPTIONS":
                headers = [(n, allowed if n.lower() == "allow" else v) for n, v in headers]
            kind = next((v for n, v in headers if n.lower() == "content-type"), "")
            if method in ("GET", "HEAD") and is_active(kind):
                if status.startswith("2"):  # (an error page is shown, not downloaded)
                    headers.append(("Content-Disposition", "attachment"))
                headers.append(("Content-Security-Policy", "sandbox"))
            return start_response(status, headers, exc_info)

        return wrapped
