"""The HTTP listener shared by WebDAV and the file API: cheroot, TLS, auth, sessions.

Each request is authenticated, gets a Session over the user's jail for its lifetime, and
goes to the front that owns its path. Bodies of non-upload requests are bounded, and
every response tells browsers not to sniff content.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import logging
import os
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.makefile import BufferedWriter, MakeFile
from cheroot.ssl.builtin import BuiltinSSLAdapter

from ..config import HTTPOptions, Listen
from ..core import logs, permissions
from ..core.addresses import client_of
from ..core.counters import COUNTERS
from ..core.live import SHUTTING_DOWN, Entry, Live
from ..core.log_limit import Throttled
from ..core.operations import OPERATIONS, result_of_status
from ..core.sessions import Sessions
from ..core.shares import Share
from ..core.turns import Turns, stepped_aside
from ..core.user_slots import UserSlots, has_body
from ..core.users import User
from ..health import DRAINING, Health
from ..http_names import (
    API_PREFIX,
    CLIENT_GONE,
    DAV_ROOT,
    FILES_ROOT,
    LINKS_ROOT,
    OPERATION,
    PEER,
    SESSION,
    SHARES_ROOT,
    SHOWN_ROOT,
)  # fmt: skip
from ..http_rules import body_refusal, status_line
from ..metrics import CONTENT_TYPE, Metrics
from ..proxy_protocol import Network
from . import cheroot_glue
from .auth import Authenticator, AuthError, Grant
from .chunked import BoundedChunks
from .intake import Intake, gather, inbox_of
from .login import PageLogins, login_url, wants_login_page
from .login_page import LOGIN_PATH, LOGOUT_PATH
from .login_sessions import LoginSessions
from .worker_share import WorkerShare

log = logging.getLogger("hoody_mount.web")
access = logging.getLogger("hoody_mount.access")  # a line per request, at INFO
refusals = Throttled(log, "HTTP requests refused")  # (a client's 503s and 429s)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

BODY_LIMIT = 1 << 20  # XML and JSON request bodies
HSTS = "max-age=31536000"  # a year; sent over HTTPS only
BODY_RETRY_AFTER = 2  # seconds: a user's upload slot is likely free again by then
_ENCODED_SLASH = re.compile("%2f", re.IGNORECASE)


class _Closing:
    """A response body that runs ``on_close`` once the server is done with it, and
    counts the bytes it gave (``sent``)."""

    def __init__(self, body: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._body = body
        self._on_close = on_close
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()


def _plain(start_response: StartResponse, status: str, text: str, extra: list[Any]) -> list[bytes]:
    """A short error answer (JSON for the file API, whose clients parse errors)."""
    code = status.split(" ", 1)[1].lower().replace(" ", "_")
    body = (json.dumps({"error": code, "message": text}) + "\n").encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("X-Content-Type-Options", "nosniff"),
        *extra,
    ]
    start_response(status, headers)
    return [body]


LINK_FILES = "/files"  # a link's pages: /s/<secret>/files/… (and /s/<secret>/…)
_SOCKET = "hoody.socket"  # environ: the connection's socket (to end it)
_ANSWER = "hoody.answer"  # environ: the answer's body, which counts the bytes sent
_STARTED = "hoody.started"  # environ: the answer's status was given to cheroot
_CUT = "hoody.cut"  # environ: why the request was cut (a stop, an administrator)
_LINK = "hoody.link"  # environ: the share of a request through a link (False: none)
_REPLACED = "hoody.replaced"  # environ: the 503 body that replaced a cut request's answer
FROM_PAGE_HEADER = "HTTP_X_HOODY_PAGE"  # environ: sent by the file page's own requests
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})  # answered without authentication
METRICS_PATH = "/metrics"
# A request's name in the metrics: WebDAV's method, lower case; the file API's own
# (it names the rest: list, digest, mkdir, move, copy); "other" for anything else
DAV_OPERATIONS = {
    method: method.lower()
    for method in (
        "OPTIONS", "GET", "HEAD", "PUT", "POST", "DELETE", "PROPFIND", "PROPPATCH",
        "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK",
    )
}  # fmt: skip
API_OPERATIONS = {"GET": "read", "HEAD": "read", "PUT": "write", "DELETE": "delete"}


def _count(environ: dict[str, Any], method: str, path: str, status: str, seconds: float) -> None:
    """Count a request among the operations of its front (``/metrics`` itself and the
    login page are not)."""
    if path in (METRICS_PATH, LOGIN_PATH, LOGOUT_PATH):
        return
    if path.startswith(API_PREFIX):
        protocol, op = "api", environ.get(OPERATION) or API_OPERATIONS.get(method, "other")
    else:
        protocol, op = "webdav", DAV_OPERATIONS.get(method, "other")
    result = result_of_status(int(status)) if status.isdigit() else "error"
    OPERATIONS.record(protocol, op, result, seconds)


class WebFront:
    """The WSGI application behind the listener."""

    def __init__(
        self,
        auth: Authenticator,
        sessions: Sessions,
        dav: WSGIApp,
        api: WSGIApp | None,
        uploads_per_user: int = HTTPOptions.uploads_per_user,
        threads: int = HTTPOptions.threads,
        health: Health | None = None,
        metrics: Metrics | None = None,
        live: Live | None = None,
        shares_api: WSGIApp | None = None,
        links: Callable[[str], Share | None] | None = None,
        login_hours: float = HTTPOptions.login_hours,
    ) -> None:
        self.logins = PageLogins(auth, LoginSessions(login_hours * 3600))
        self.shares_api = shares_api
        self.links = links  # a share link's share, by its secret
        self.health = health or Health()
        self.live = live or Live()
        self.metrics = metrics
        self.auth = auth
        self.sessions = sessions
        self.dav = dav
        self.api = api
        self.body_slots = UserSlots(uploads_per_user)
        self.workers = WorkerShare(threads)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response = _headers(start_response, environ.get("wsgi.url_scheme") == "https")
        if environ.get("PATH_INFO") in HEALTH_PATHS:
            return self._health(environ, start_response)  # (probes are not logged)
        page = _page_for_browser(environ)
        if page is not None:
            return _see_other(start_response, page)
        began, answered = time.monotonic(), ["-"]
        shown = None
        if str(environ.get("PATH_INFO", "")).startswith(LINKS_ROOT + "/"):
            shown = self._through_link(environ)
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        shown = shown or _as_sent(path)

        def recording(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            reason = environ.get(_CUT)
            if reason is not None and not environ.get(_STARTED):
                # (cut before its answer began: the body ended early through no fault of
                # the client's, so the front's 400, or its error, becomes a 503)
                environ[_STARTED], answered[0] = True, "503"
                environ[_REPLACED] = _plain(start_response, *_shutting_down(str(reason)))[0]
                return _ignored
            answered[0] = status.split(" ", 1)[0]
            environ[_STARTED] = True
            return start_response(status, headers, exc_info)

        if self.health.state == DRAINING:
            body: Iterable[bytes] = _plain(recording, *_shutting_down(SHUTTING_DOWN))
        else:
            try:
                body = self._authenticated(environ, recording)
            except Exception:
                if environ.get(_CUT) is None or environ.get(_STARTED):
                    raise
                recording("500 Internal Server Error", [])
                body = []
        inner = body if isinstance(body, _Closing) else _Closing(body, lambda: None)
        closing = _Closing(_unless_cut(inner, environ, recording), inner.close)
        user = environ.get("wsgidav.auth.user_name") or "-"
        address = str(environ.get("REMOTE_ADDR", ""))

        def log_request() -> None:
            seconds = time.monotonic() - began
            line = 'http %s "%s" %s bytes=%d seconds=%.3f user=%s address=%s'
            values = [method, shown, answered[0], closing.sent, seconds, user, address]
            if environ.get(_CUT):  # (cut by a stop or an administrator: say so)
                line, values = line + ' cut="%s"', [*values, environ[_CUT]]
            logs.later(access, line, *values)
            _count(environ, method, path, answered[0], seconds)

        return _Closing(closing, log_request)

    def _authenticated(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """The answer, once the client is known (a user, or an address) and holds a
        place among the workers."""
        path = environ.get("PATH_INFO")
        address = "address " + client_of(str(environ.get("REMOTE_ADDR", "")))
        if path in (LOGIN_PATH, LOGOUT_PATH):
            return self._in_turn(address, environ, start_response, self.logins.answer)
        public = self.metrics is not None and self.metrics.public
        link = environ.get(_LINK)
        try:
            grant: Grant | AuthError | None = (
                None if public and path == METRICS_PATH
                else self._grant(environ) if link is None
                else AuthError("404 Not Found", "no such link") if link is False
                else self.auth.link(environ, link.user(), link.password_hash)
            )  # fmt: skip
        except AuthError as exc:
            grant = exc
        client = "user " + grant.user.name if isinstance(grant, Grant) else address
        answer = functools.partial(self._answer, grant=grant)
        return self._in_turn(client, environ, start_response, answer)

    def _grant(self, environ: dict[str, Any]) -> Grant:
        """The grant of a request (not through a link): its Authorization header or,
        without one, on the file API and ``/metrics``, the login page's cookie."""
        path = str(environ.get("PATH_INFO", ""))
        if not environ.get("HTTP_AUTHORIZATION") and (
            path.startswith(API_PREFIX) or path == METRICS_PATH
        ):
            grant = self.logins.grant(environ)
            if grant is not None:
                return grant
        return self.auth.authenticate(environ)

    def _in_turn(
        self,
        client: str,
        environ: dict[str, Any],
        start_response: StartResponse,
        answer: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
    ) -> Iterable[bytes]:
        """``answer`` once ``client`` holds a place among the workers (503 past its share)."""
        if not self.workers.take(client):
            _refused(environ, f"{client} is past its share of workers")
            text = "you already have your share of the server's workers busy; try again shortly"
            extra = [("Retry-After", str(BODY_RETRY_AFTER)), ("Connection", "close")]
            return _plain(start_response, "503 Service Unavailable", text, extra)
        try:
            body = answer(environ, start_response)
        except BaseException:
            self.workers.give_back(client)
            raise
        return _Closing(body, functools.partial(self.workers.give_back, client))

    def _through_link(self, environ: dict[str, Any]) -> str:
        """Turn a request through a share link (``/s/<secret>/…``) into one of the file
        API (``/s/<secret>/dav/…``: of WebDAV) whose URLs are shown under the link, and
        note its share (False when there is none: a wrong, revoked or expired secret).
        The path to log, which names the share by its id, never by its secret."""
        secret, _, rest = str(environ["PATH_INFO"])[len(LINKS_ROOT) + 1 :].partition("/")
        rest = "/" + rest
        share = self.links(secret) if self.links is not None else None
        environ[_LINK] = share or False
        link = f"{LINKS_ROOT}/{secret}"
        if rest == DAV_ROOT or rest.startswith(DAV_ROOT + "/"):
            environ["PATH_INFO"], environ[SHOWN_ROOT] = rest, link + DAV_ROOT
            destination = urlsplit(str(environ.get("HTTP_DESTINATION", "")))
            if destination.path.startswith(link + "/"):  # (a COPY or MOVE within the link)
                moved = destination._replace(path=destination.path[len(link) :])
                environ["HTTP_DESTINATION"] = urlunsplit(moved)
        else:
            # (pages link below /s/<secret>/files/, so that a top-level folder named
            # dav is a page's folder too; /s/<secret>/NAME still reaches NAME)
            if rest == LINK_FILES or rest.startswith(LINK_FILES + "/"):
                rest = rest[len(LINK_FILES) :] or "/"
                link_files = link + LINK_FILES
            else:
                link_files = link
            environ["PATH_INFO"], environ[SHOWN_ROOT] = FILES_ROOT + rest, link + LINK_FILES
            link = link_files
        uri = str(environ.get("REQUEST_URI", ""))
        environ["REQUEST_URI"] = uri[len(link) :] if uri.startswith(link) else environ["PATH_INFO"]
        return f"{LINKS_ROOT}/{share.id if share else '?'}{_as_sent(rest)}"

    def _health(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        """``/healthz`` and ``/readyz``, without authentication: 200 and a small JSON
        while serving, 503 while starting or draining."""
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            extra = [("Allow", "GET, HEAD")]
            return _plain(start_response, "405 Method Not Allowed", "GET or HEAD only", extra)
        status, report = self.health.report()
        body = (json.dumps(report) + "\n").encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        start_response(status_line(status), headers)
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def _metrics(
        self, environ: dict[str, Any], start_response: StartResponse, grant: Grant | None
    ) -> list[bytes]:
        """``/metrics`` in the Prometheus text format, for an administrator: a user
        who is not jailed and may write (a read-only token is not enough); for anyone
        (``grant`` None) with ``metrics_public``."""
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            extra = [("Allow", "GET, HEAD")]
            return _plain(start_response, "405 Method Not Allowed", "GET or HEAD only", extra)
        if grant is not None:
            user = permissions.granted(grant.user, grant.read_only)
            environ["wsgidav.auth.user_name"] = user.name  # (for the access line)
            not_allowed = permissions.protocol_refusal(user, "http")
            if not_allowed is not None:
                return _plain(start_response, "403 Forbidden", not_allowed, [])
            if user.share is not None:
                return _plain(start_response, "403 Forbidden", "metrics are not for shares", [])
            if user.root != "/" or not permissions.may_write(user):
                text = "metrics are for users who are not jailed and may write"
                return _plain(start_response, "403 Forbidden", text, [])
        if self.metrics is None:
            return _plain(start_response, "404 Not Found", "no such endpoint", [])
        body = self.metrics.exposition()
        headers = [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))]
        start_response("200 OK", [*headers, ("Cache-Control", "no-store")])
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def _answer(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        grant: Grant | AuthError | None,
    ) -> Iterable[bytes]:
        """The request's answer (who shares the workers is decided: the user, or the
        address of a client that has not logged in); no ``grant`` for public metrics."""
        method = str(environ.get("REQUEST_METHOD", ""))
        path = str(environ.get("PATH_INFO", ""))
        if environ.get("CONTENT_LENGTH") and environ.get("HTTP_TRANSFER_ENCODING"):
            # (RFC 9112, 6.3: which one frames the body is ambiguous, the way requests
            # are smuggled past proxies; the connection is closed after the answer)
            text = "send Content-Length or Transfer-Encoding, not both"
            return _plain(start_response, "400 Bad Request", text, [("Connection", "close")])
        if grant is None:
            return self._metrics(environ, start_response, None)
        if isinstance(grant, AuthError):
            exc = grant
            extra = self.logins.clearing(environ)  # (a cookie that no longer holds)
            if exc.status.startswith("401") and _LINK not in environ and wants_login_page(environ):
                return _see_other(start_response, login_url(environ), extra)
            if exc.status.startswith("401") and (
                self.logins.stale(environ) or environ.get(FROM_PAGE_HEADER)
            ):
                # (a page's own request after its login ended: no challenge, which would
                # make the browser ask with its own prompt; the page sends people to /login)
                text = f"your login has ended: log in again at {LOGIN_PATH}"
                return _plain(start_response, exc.status, text, extra)
            if exc.status.startswith("401"):
                extra.append(("WWW-Authenticate", 'Basic realm="hoody-mount", charset="UTF-8"'))
            if exc.retry_after is not None:
                extra.append(("Retry-After", str(exc.retry_after)))
            if exc.status.startswith("429"):
                _refused(environ, exc.message)
            return _plain(start_response, exc.status, exc.message, extra)
        if path == METRICS_PATH:
            return self._metrics(environ, start_response, grant)
        if _ENCODED_SLASH.search(str(environ.get("REQUEST_URI", "")).partition("?")[0]):
            # cheroot keeps %2F as the three characters, so a%2Fb and a%252Fb would both
            # name the file "a%2Fb": refused, so that every path names one file
            return _plain(
                start_response, "400 Bad Request", "a name cannot hold an encoded '/' (%2F)", []
            )
        protocol = "http" if path.startswith(API_PREFIX) else "webdav"
        app = self.api if protocol == "http" else self.dav
        if path == SHARES_ROOT or path.startswith(SHARES_ROOT + "/"):
            app = self.shares_api
        if app is None:
            return _plain(start_response, "404 Not Found", "no such endpoint", [])
        user = permissions.granted(grant.user, grant.read_only)
        not_allowed = permissions.protocol_refusal(user, protocol)
        if not_allowed is not None:
            return _plain(start_response, "403 Forbidden", not_allowed, [])
        if method not in ("PUT", "POST"):
            length = str(environ.get("CONTENT_LENGTH") or "0")
            if not length.isdigit() or int(length) > BODY_LIMIT:
                return _plain(start_response, "413 Content Too Large", "request body too large", [])
        # (listed from here: a chunked body read below may take long, and a stop, a
        # kill or the removal of the user must see the request)
        unlist = self._show(environ, user.name, "api" if protocol == "http" else protocol, method)
        try:
            chunked = str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower() == "chunked"
            if method not in ("PUT", "POST") and chunked:
                refusal = _read_chunked_whole(environ)
                if refusal is not None:
                    unlist()
                    status, text = refusal
                    return _plain(start_response, status, text, [("Connection", "close")])
            return self._serve(environ, start_response, app, user, protocol, method, unlist)
        except BaseException:
            unlist()
            raise

    def _serve(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        app: WSGIApp,
        user: User,
        protocol: str,
        method: str,
        unlist: Callable[[], None],
    ) -> Iterable[bytes]:
        """Run the front's app with a session that lives as long as the response (and,
        for a request with a body, one of the user's body slots); ``unlist`` takes the
        request off the live sessions when it ends."""
        release: list[Callable[[], None]] = [unlist]
        if method in ("PUT", "POST") and has_body(environ):
            # (uploads; the bodies of other requests are small XML, bounded and read
            # whole before they run: rclone's eight listings at once are not eight uploads)
            if not self.body_slots.take(user.name):
                unlist()
                _refused(
                    environ,
                    f"user {user.name} has {self.body_slots.per_user} uploads running",
                )
                text = (
                    f"you already have {self.body_slots.per_user} uploads running; "
                    "try again when one ends"
                )
                extra = [("Retry-After", str(BODY_RETRY_AFTER)), ("Connection", "close")]
                return _plain(start_response, "503 Service Unavailable", text, extra)
            release.append(functools.partial(self.body_slots.give_back, user.name))
        try:
            session = self.sessions.open(user, protocol)
        except OSError as exc:
            for undo in release:
                undo()
            log.error("cannot open the jail %s of %s: %s", user.root, user.name, exc.strerror)
            status = "403 Forbidden" if exc.errno == errno.EACCES else "503 Service Unavailable"
            text = f"your folder is not available ({exc.strerror}): ask the administrator"
            return _plain(start_response, status, text, [])
        release.insert(0, session.close)
        shown = "api" if protocol == "http" else protocol
        COUNTERS.add("connections", (shown,), 1)
        release.append(functools.partial(COUNTERS.add, "connections", (shown,), -1))
        session.gone = environ.get(CLIENT_GONE) or session.gone  # (copies stop)
        environ[SESSION] = session
        environ["wsgidav.auth.user_name"] = user.name
        environ["wsgidav.auth.realm"] = "hoody-mount"
        environ["wsgidav.auth.roles"] = ("editor",) if permissions.may_write(user) else ("reader",)

        def done() -> None:
            for undo in release:
                undo()

        try:
            body = app(environ, start_response)
        except BaseException:
            done()
            raise
        answer = _Closing(body, done)
        environ[_ANSWER] = answer
        return answer

    def _show(
        self, environ: dict[str, Any], user: str, protocol: str, method: str
    ) -> Callable[[], None]:
        """List the request among the open sessions; what takes it off (once)."""
        sock = environ.get(_SOCKET)

        def end(reason: str) -> None:
            """Cut the request: before its answer began, only the reading (the body
            ends at once, and the client is answered 503 with ``reason``); after, the
            whole connection."""
            environ[_CUT] = reason
            how = socket.SHUT_RDWR if environ.get(_STARTED) else socket.SHUT_RD
            if sock is not None:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, how)

        def meter() -> tuple[int, int]:
            answer = environ.get(_ANSWER)
            return _body_read(environ), answer.sent if answer is not None else 0

        address = str(environ.get("REMOTE_ADDR", ""))
        doing = f"{method} {_as_sent(str(environ.get('PATH_INFO', '')))}"[:200]
        entry = self.live.add(Entry(user, protocol, address, end, doing=doing, meter=meter))
        return functools.partial(self.live.remove, entry)


def _unless_cut(
    body: Iterable[bytes], environ: dict[str, Any], recording: StartResponse
) -> Iterator[bytes]:
    """The answer's chunks, or the 503 that replaced it when the request was cut
    before its answer began (see ``WebFront.__call__``)."""
    try:
        for chunk in body:
            if _REPLACED in environ:
                break
            yield chunk
    except Exception:
        if environ.get(_CUT) is None or _REPLACED in environ or environ.get(_STARTED):
            raise
        recording("500 Internal Server Error", [])
    if _REPLACED in environ:
        yield environ[_REPLACED]


def _as_sent(path: str) -> str:
    """A request's path as the client sent it: WSGI gives its bytes as Latin-1, so a
    UTF-8 name would be shown as mojibake (a byte that is not UTF-8 stays one, and the
    log shows it escaped, ``\\xff``)."""
    return path.encode("latin-1", "replace").decode("utf-8", "surrogateescape")


def _page_for_browser(environ: dict[str, Any]) -> str | None:
    """Where a browser that asks for ``/`` or a WebDAV folder (``/dav/…/``) finds its
    page: the file API's listing of the same folder (WebDAV's clients, which send
    PROPFIND and OPTIONS or no ``text/html``, are not sent there)."""
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        return None
    if "text/html" not in str(environ.get("HTTP_ACCEPT", "")):
        return None
    path = str(environ.get("PATH_INFO", ""))
    if path == "/":
        return FILES_ROOT + "/"
    if (path == DAV_ROOT + "/" or path.startswith(DAV_ROOT + "/")) and path.endswith("/"):
        uri = str(environ.get("REQUEST_URI", "")).partition("?")[0]
        return FILES_ROOT + (uri[len(DAV_ROOT) :] if uri.startswith(DAV_ROOT + "/") else "/")
    return None


def _see_other(
    start_response: StartResponse, where: str, extra: list[tuple[str, str]] | None = None
) -> list[bytes]:
    """303 to ``where`` (a path of this server)."""
    headers = [("Location", where), ("Content-Length", "0"), ("Cache-Control", "no-store")]
    start_response("303 See Other", [*headers, *(extra or [])])
    return [b""]


def _ignored(data: bytes) -> None:
    """The ``write`` of an answer that is not sent."""


def _shutting_down(reason: str) -> tuple[str, str, list[tuple[str, str]]]:
    """Status, text and headers of a request the server will not serve to its end."""
    extra = [("Retry-After", str(BODY_RETRY_AFTER)), ("Connection", "close")]
    return "503 Service Unavailable", reason, extra


def _body_read(environ: dict[str, Any]) -> int:
    """How many bytes of the request's body were read so far."""
    rfile = environ.get("wsgi.input")
    remaining = getattr(rfile, "remaining", None)
    length = str(environ.get("CONTENT_LENGTH") or "")
    if isinstance(remaining, int) and length.isdigit():
        return int(length) - remaining
    read = getattr(rfile, "bytes_read", 0)
    return read if isinstance(read, int) else 0


def _refused(environ: dict[str, Any], why: str) -> None:
    """Log a refused request (throttled: a flood of them is a few lines)."""
    refusals.note(str(environ.get("REMOTE_ADDR", "")), why)


def _read_chunked_whole(environ: dict[str, Any]) -> tuple[str, str] | None:
    """Read a small chunked body (an XML or JSON request's) whole, so that it is bounded
    like one with a Content-Length and the fronts see its length: WsgiDAV ignored a
    chunked PROPFIND body of 3 MB and answered as if there were none. The status and
    text of a refusal, if any."""
    try:
        body = environ["wsgi.input"].read(BODY_LIMIT + 1)
    except OSError as exc:
        refusal = body_refusal(exc)
        if refusal is None:
            raise
        status, text = refusal
        return status_line(status), text
    if len(body) > BODY_LIMIT:
        return "413 Content Too Large", "request body too large"
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    del environ["HTTP_TRANSFER_ENCODING"]
    return None


def _headers(start_response: StartResponse, https: bool) -> StartResponse:
    """Tell browsers never to guess content types, and over HTTPS to keep to HTTPS; the
    Server header is cheroot's, ``hoody-mount`` without a version."""

    def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if status.endswith(" Status") and status[:3].isdigit():  # WsgiDAV's unnamed ones
            status = status_line(int(status[:3]))
        names = {name.lower() for name, _ in headers}
        if "server" in names:
            headers[:] = [(name, value) for name, value in headers if name.lower() != "server"]
        if "x-content-type-options" not in names:
            headers.append(("X-Content-Type-Options", "nosniff"))
        if "referrer-policy" not in names:  # (a share link's secret is in its URLs)
            headers.append(("Referrer-Policy", "no-referrer"))
        if https and "strict-transport-security" not in names:
            headers.append(("Strict-Transport-Security", HSTS))
        return start_response(status, headers, exc_info)

    return wrapped


GONE = select.POLLRDHUP | select.POLLHUP | select.POLLERR
BACKLOG = 4096  # as rclone's; sshd's is 128
LINGER = 0.005  # seconds a worker waits on a kept-alive connection for the next request
DRAIN_LIMIT = 64 << 20
DRAIN_BLOCK = 16 << 10  # (a read waits for all of it: small, so the time bound holds)
PYTHON_TURNS = 2  # workers that serve a request at once (the others wait off the GIL)
DRAIN_TIME = 2.0  # seconds a worker spends reading a body the application did not want


class _Request(cheroot_server.HTTPRequest):
    """cheroot's request, except for what happens to a body the application does not want.

    - cheroot answers ``Expect: 100-continue`` at once, so the client starts sending even
      a body that is refused (401, 403, 413); closing then resets the connection under
      the client, which may report a broken pipe instead of the answer. Here 100 Continue
      goes out only when the application first reads the body. Answered without it, the
      client has sent nothing, and the connection is closed cleanly after the answer.
    - cheroot reads whatever body the application left unread in one piece to keep the
      connection alive; a refused 1 GiB upload would then sit in memory whole. Here up to
      ``DRAIN_LIMIT`` is read and thrown away a block at a time (so a client that is
      still sending gets its answer); beyond that the connection is closed instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.awaits_continue = False  # the client waits for 100 Continue to send its body
        self.header_reader = _HoldContinue(self, type(self).header_reader)

    def send_continue(self) -> None:
        """Tell a client that waits for it to send its body (once)."""
        if self.awaits_continue:
            self.awaits_continue = False
            self.conn.wfile.write(f"{self.server.protocol} 100 Continue\r\n\r\n".encode())

    def respond(self) -> None:
        if not self.awaits_continue:
            super().respond()
            return
        connection_rfile = self.conn.rfile
        self.conn.rfile = _ContinueOnRead(connection_rfile, self)
        try:
            super().respond()
        finally:
            self.conn.rfile = connection_rfile

    def send_headers(self) -> None:
        if any(
            name.lower() == b"connection" and b"close" in value.lower()
            for name, value in self.outheaders
        ):
            self.close_connection = True  # (cheroot would keep it open, saying it closes)
        if getattr(self.rfile, "broken", False) or inbox_of(self.conn).broken:
            self.close_connection = True  # the body broke off: what follows is no request
        remaining = getattr(self.rfile, "remaining", 0)
        if self.awaits_continue or remaining > DRAIN_LIMIT:
            self.close_connection = True
        elif remaining > 0 and not self.close_connection and not self.chunked_read:
            self._drain()
        if self.close_connection and not self.awaits_continue:
            # a body still on its way: the intake sees the end through (close_gently)
            self.conn.unread_body = bool(getattr(self.rfile, "remaining", 0)) or (
                self.chunked_read and not getattr(self.rfile, "closed", True)
            )
        super().send_headers()

    def _drain(self) -> None:
        """Read and drop the body the application left, for at most ``DRAIN_TIME``: a
        client sending it slowly would otherwise hold the worker (a refused upload of
        60 MB sent at 2 KB/s, before any login, held one for hours); past that the
        connection is closed after the answer instead."""
        sock = self.conn.socket
        timeout = sock.gettimeout()
        deadline = time.monotonic() + DRAIN_TIME
        try:
            while self.rfile.remaining > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.close_connection = True
                    self.conn.unread_body = True
                    return
                sock.settimeout(left)
                if not self.rfile.read(min(DRAIN_BLOCK, self.rfile.remaining)):
                    return
        except OSError:
            self.close_connection = True
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(timeout)


class _HoldContinue:
    """cheroot's header reader, taking ``Expect: 100-continue`` out of cheroot's hands,
    and refusing (400) a ``Content-Length`` given twice with different values: cheroot
    kept the last, a proxy in front may keep the first, and the body's end is then
    where the two disagree (RFC 9112, 6.3: the shape of request smuggling), or one that
    is not digits alone (RFC 9110, 8.6): cheroot's ``int()`` read ``-1`` as a length
    (an empty upload replaced the file), and ``+10`` or ``1_0`` as 10."""

    def __init__(self, request: _Request, read_headers: Any) -> None:
        self._request = request
        self._read_headers = read_headers

    def __call__(self, rfile: Any, headers: dict[bytes, bytes]) -> Any:
        lines = _Lines(rfile)
        result = self._read_headers(lines, headers)
        lengths = {
            line.partition(b":")[2].strip()
            for line in lines.seen
            if line.partition(b":")[0].strip().lower() == b"content-length"
        }
        if len(lengths) > 1:
            raise ValueError("Content-Length is given twice, with different values")
        if any(not length.isdigit() for length in lengths):  # (int() takes -1, +1 and 1_0)
            raise ValueError("Content-Length is not a number of bytes (digits only)")
        if headers.get(b"Expect", b"").strip().lower() == b"100-continue":
            del headers[b"Expect"]
            self._request.awaits_continue = True
        return result


class _Lines:
    """A reader that remembers the lines read through it (a request's header lines)."""

    def __init__(self, rfile: Any) -> None:
        self._rfile = rfile
        self.seen: list[bytes] = []

    def readline(self, *args: Any) -> bytes:
        line: bytes = self._rfile.readline(*args)
        self.seen.append(line)
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rfile, name)


class _ContinueOnRead:
    """The connection's reader for one request: 100 Continue goes out at the first read."""

    def __init__(self, rfile: Any, request: _Request) -> None:
        self._rfile = rfile
        self._request = request

    def read(self, *args: Any) -> bytes:
        self._request.send_continue()
        return self._rfile.read(*args)  # type: ignore[no-any-return]

    def readline(self, *args: Any) -> bytes:
        self._request.send_continue()
        return self._rfile.readline(*args)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rfile, name)


class SocketWriter(BufferedWriter):
    """cheroot's socket writer, except that a chunk is sent from where it lies, and that
    a short answer is sent without giving the worker's turn back.

    cheroot's copies every chunk into a buffer, then copies it again before each send
    (a cached 1 GiB GET took 0.58 s with it, 0.44 s without).
    Here the chunk goes to the socket through a view, a send at a time. Over plain TCP
    the connection's timeout applies to each send, so a slow reader is not cut off in
    the middle of a long chunk; over TLS, Python's ``ssl`` writes a chunk whole within
    one timeout, as with cheroot's writer.

    A send waits on the client, so it is made stepped aside (``core/turns.py``), which
    costs a place at the back of the queue of workers. Over plain TCP the first
    ``KEPT_SEND`` bytes since the last step aside are first offered to the socket
    without waiting; what it takes at once needs no step aside (an answer's head and a
    small body went to the back of the queue twice per request). Past that, or for what
    the socket does not take at once, the send steps aside as before: a long answer
    still gives way every ``KEPT_SEND`` bytes.
    """

    KEPT_SEND = 64 * 1024

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(socket.SocketIO(sock, "wb"))
        self.bytes_written = 0  # read by cheroot's statistics, when they are enabled
        self._kept = 0  # bytes sent since the last step aside

    def write(self, b: Any) -> int:
        cheroot_glue.check_open(self)
        sock = cheroot_glue.socket_of(self)
        view = memoryview(b).cast("B")
        size = len(view)
        # (a plain socket with a timeout has a non-blocking fd: a write to it never waits)
        at_once = type(sock) is socket.socket and sock.gettimeout() is not None
        if at_once and self._kept + size <= self.KEPT_SEND:
            with cheroot_glue.write_lock(self):
                try:
                    sent = os.write(sock.fileno(), view)
                except BlockingIOError:
                    sent = 0
            self._kept += sent
            view = view[sent:]
        if view:
            self._kept = 0
            with stepped_aside(), cheroot_glue.write_lock(self):  # (a slow reader's wait)
                while view:
                    view = view[sock.send(view) :]
        self.bytes_written += size
        return size


class _Connection(cheroot_server.HTTPConnection):
    """cheroot's connection, except that a worker waits briefly for the next request,
    and that a connection is counted by the intake until it closes.

    cheroot hands a kept-alive connection back to its selector thread after every
    request, and the selector hands the next request to a worker again: two thread
    wake-ups per request, costly on a virtual machine whose idle CPUs must be woken. A
    serial client's small GET took 450-550 µs (335-435 µs of server CPU) that way. Here
    the worker first waits up to ``LINGER`` for the client's next request head and
    serves it itself (345-410 µs, 215-305 µs of CPU), but only while another worker is
    idle, so a new client is never kept waiting for a lingering one, and only once the
    whole head is there, so a client sending its head slowly never holds the worker.
    """

    RequestHandlerClass = _Request
    intake: Intake | None = None  # set by the intake, which counts the connection

    def __init__(self, server: Any, sock: Any, makefile: Any = MakeFile) -> None:
        super().__init__(server, sock, makefile)
        self.wfile = SocketWriter(sock)

    def communicate(self) -> bool:
        """Serve requests until the connection is to close (False) or goes quiet; each
        one in a turn of the server's (see ``core/turns.py``)."""
        while self._serve_one():
            if not self._next_request_soon():
                return True
            inbox_of(self).restart_rate()
        return False

    def _serve_one(self) -> bool:
        with self.server.turns.held():
            return bool(super().communicate())  # type: ignore[no-untyped-call]

    def _next_request_soon(self) -> bool:
        """Whether the client's next request head is here whole, or arrives so within
        ``LINGER`` (otherwise the intake waits for it)."""
        if self.intake is None or self.server.requests.idle == 0:
            return False
        deadline = time.monotonic() + LINGER
        poll: select.poll | None = None
        while True:
            if self.rfile.has_data() or _tls_pending(self.socket) or inbox_of(self).ahead:
                state = gather(self)
                if state != "more":
                    return state == "ready"  # (at the end, the intake sees it closed)
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if poll is None:
                poll = select.poll()
                poll.register(self.socket.fileno(), select.POLLIN)
            if not poll.poll(left * 1000):
                return False
            state = gather(self)
            if state != "more":
                return state == "ready"

    unread_body = False  # the client may still be sending a body no one reads

    def close(self) -> None:
        """Close, and give the connection's place back to its address (once). With a
        body left unread, the intake sees the end through (see ``close_gently``)."""
        intake = self.intake
        if self.unread_body and intake is not None:
            with contextlib.suppress(OSError):
                self.wfile.flush()
                intake.close_gently(
                    socket.socket(fileno=os.dup(self.socket.fileno())), self.remote_addr or ""
                )
        try:
            super().close()
        finally:
            intake, self.intake = self.intake, None
            if intake is not None:
                intake.release(client_of(self.remote_addr or ""), self)


def _tls_pending(sock: Any) -> bool:
    """Whether TLS has decrypted bytes that the socket no longer shows as readable."""
    pending = getattr(sock, "pending", None)
    return bool(pending()) if pending is not None else False


def _error_log(msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
    """cheroot's error reports, into the log. A client that breaks its connection (a
    TLS session closed mid-request, a reset) is one debug line, not a traceback on
    stderr that anyone could trigger at will; anything else keeps its traceback."""
    error = sys.exc_info()[1] if traceback else None
    if isinstance(error, OSError | EOFError):
        log.debug("connection ended by the client: %s (%s)", msg, error)
    elif level >= logging.ERROR or error is not None:
        log.error("%s", msg, exc_info=error is not None)
    else:
        log.info("%s", msg)


def _client_gone(sock: socket.socket) -> bool:
    """Whether the client has closed its end of the connection (checked without
    waiting): a long job done for a request stops then."""
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLRDHUP)
    return any(events & GONE for _, events in poll.poll(0))


class _Gateway(wsgi.Gateway_10):
    """cheroot's WSGI gateway; the environ also tells whether the client has gone
    (``hoody.client_gone``, a callable), and a body that does not match its
    Content-Length ends the connection.

    cheroot never counts down what is left of the Content-Length (``remaining_bytes_out``
    stays as declared), so it let a longer body out whole and kept the connection open
    after a shorter one: a file truncated by another writer during its download left the
    client waiting for the missing bytes on a kept-alive connection. Here a short body
    closes the connection (the client sees it end short), and a long one is cut at the
    Content-Length and closes it too.
    """

    def write(self, chunk: bytes) -> None:
        left = self.remaining_bytes_out
        if left is None:
            super().write(chunk)
            return
        if len(chunk) > left:
            self.req.close_connection = True
            super().write(chunk[:left])
            self.remaining_bytes_out = 0
            raise ValueError("the answer's body is longer than its Content-Length")
        super().write(chunk)
        self.remaining_bytes_out = left - len(chunk)

    def respond(self) -> None:
        super().respond()
        if self.remaining_bytes_out and _has_body(self.req.method, self.req.status):
            self.req.close_connection = True  # the body ended short: so must the connection

    def get_environ(self) -> dict[str, Any]:  # type: ignore[override]  # (stub says None)
        environ: dict[str, Any] = super().get_environ()  # type: ignore[no-untyped-call]
        environ[CLIENT_GONE] = functools.partial(_client_gone, self.req.conn.socket)
        environ[_SOCKET] = self.req.conn.socket
        # the listener's scheme: cheroot takes an absolute URI's (OPTIONS https://x/),
        # and a client must not make plain HTTP pass for HTTPS
        environ["wsgi.url_scheme"] = "https" if self.req.server.ssl_adapter else "http"
        with contextlib.suppress(OSError, IndexError):
            environ[PEER] = str(self.req.conn.socket.getpeername()[0])
        return environ


def _has_body(method: bytes | None, status: bytes | None) -> bool:
    """Whether an answer to ``method`` with ``status`` carries the body its
    Content-Length tells (not HEAD, 1xx, 204, 304)."""
    code = (status or b"")[:3]
    return method != b"HEAD" and not code.startswith(b"1") and code not in (b"204", b"304")


class _Server(wsgi.Server):
    """cheroot's WSGI server, with the intake in place of cheroot's connection loop."""

    def __init__(
        self, *args: Any, limits: HTTPOptions, trusted: tuple[Network, ...], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._trusted = trusted
        self.turns = Turns(PYTHON_TURNS)
        self.intake: Intake | None = None

    def prepare(self) -> None:
        super().prepare()
        self.intake = Intake(self, self._limits, self._trusted)
        cheroot_glue.replace_connection_manager(self, self.intake)


class WebServer:
    """cheroot serving one WSGI application, in its own threads."""

    def __init__(
        self,
        app: WSGIApp,
        listen: Listen,
        tls: tuple[Path, Path] | None,
        options: HTTPOptions,
        trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        cheroot_glue.check()
        cheroot_glue.use_chunked_reader(BoundedChunks)
        self._server = _Server(
            (listen.host, listen.port),
            app,
            limits=options,
            trusted=trusted_proxies,
            numthreads=options.threads,
            server_name="hoody-mount",  # the Server header: no version
            timeout=60,
            shutdown_timeout=5,
            request_queue_size=BACKLOG,  # cheroot's default listen backlog is 5
        )
        self._server.max_request_header_size = 64 * 1024
        self._server.software = "hoody-mount"  # SERVER_SOFTWARE, cheroot's name otherwise
        self._server.ConnectionClass = _Connection
        self._server.gateway = _Gateway
        self._server.keep_alive_conn_limit = options.max_connections
        self._server.error_log = _error_log  # type: ignore[method-assign]  # cheroot: "override"
        if tls is not None:
            self._server.ssl_adapter = BuiltinSSLAdapter(str(tls[0]), str(tls[1]))
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> None:
        """Bind (blocking) and serve in a background thread."""
        self._server.prepare()
        self.port = int(self._server.bind_addr[1])
        self._thread = threading.Thread(target=self._server.serve, name="hoody-web", daemon=True)
        self._thread.start()

    def use_certificate(self, cert: Path, key: Path) -> None:
        """Serve new TLS connections with this certificate (blocking; an error if it
        does not load, and the old one stays)."""
        self._server.ssl_adapter = BuiltinSSLAdapter(str(cert), str(key))

    def drain(self) -> None:
        """Refuse new connections and close the idle ones; requests in flight go on."""
        if self._server.intake is not None:
            self._server.intake.drain()

    def stop(self) -> None:
        """Stop accepting and finish (blocking)."""
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
