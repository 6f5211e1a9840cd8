"""Logging in with the web page: ``/login`` and ``/logout``, and the session cookie they
give and take back, which the file API accepts in place of the Authorization header.

The form's credentials go through ``Authenticator.authenticate`` as Basic or Bearer
would (the login guard, the scrypt check shared and as costly for an unknown user, the
``allow`` ranges, passwords over plain HTTP only where Basic is accepted), and a form
from another origin is refused (a login made by another site's page). The cookie names
a session of ``LoginSessions``; it is ``HttpOnly`` and ``SameSite=Strict``, and
``Secure`` over HTTPS.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote

from ..core import logs
from ..core.counters import COUNTERS
from ..core.permissions import protocol_refusal
from ..http_names import FILES_ROOT, LOGGED_IN
from ..http_rules import body_refusal, foreign, status_line
from . import login_page
from .auth import Authenticator, AuthError, Grant
from .login_sessions import LoginSessions

access = logging.getLogger("hoody_mount.access")

StartResponse = Callable[..., Any]
COOKIE = "hoody_session"
FORM_LIMIT = 8192  # bytes of a login form's body
DEFAULT_NEXT = FILES_ROOT + "/"
_STALE = "hoody.stale_cookie"  # environ: the request brought a cookie of no session


def cookie_of(environ: dict[str, Any]) -> str | None:
    """The session secret the request's ``Cookie`` header brings, if any."""
    for part in str(environ.get("HTTP_COOKIE", "")).split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == COOKIE and value:
            return value.strip('"')
    return None


def local_path(text: str | None) -> str:
    """``text`` when it is a path of this server (``/…``, not ``//…`` nor holding a
    backslash, which browsers read as ``/``; printable ASCII only), else the file page."""
    if (
        text
        and text.startswith("/")
        and not text.startswith("//")
        and "\\" not in text
        and all(33 <= ord(c) < 127 for c in text)
    ):
        return text
    return DEFAULT_NEXT


def wants_login_page(environ: dict[str, Any]) -> bool:
    """Whether the request is a browser's for a page of the file API, made without
    credentials (or with a cookie that no longer holds): it is sent to the login page."""
    path = str(environ.get("PATH_INFO", ""))
    return (
        environ.get("REQUEST_METHOD") in ("GET", "HEAD")
        and "text/html" in str(environ.get("HTTP_ACCEPT", ""))
        and (path == FILES_ROOT or path.startswith(FILES_ROOT + "/"))
        and not environ.get("HTTP_AUTHORIZATION")
    )


def login_url(environ: dict[str, Any]) -> str:
    """The login page, which sends the browser back to this request's path and query."""
    target = str(environ.get("REQUEST_URI", "")) or DEFAULT_NEXT
    return f"{login_page.LOGIN_PATH}?next={quote(target, safe='')}"


class PageLogins:
    """``/login`` and ``/logout``, and the grants of requests that bring the cookie."""

    def __init__(self, auth: Authenticator, sessions: LoginSessions) -> None:
        self.auth = auth
        self.sessions = sessions

    def grant(self, environ: dict[str, Any]) -> Grant | None:
        """The grant of the request's cookie (None without one; AuthError 401 when its
        session is over, the user gone or the token revoked; 403 from a refused address)."""
        secret = cookie_of(environ)
        if secret is None:
            return None
        session = self.sessions.find(secret)
        grant = self.auth.resumed(environ, session) if session is not None else None
        if grant is None:
            self.sessions.end(secret)
            environ[_STALE] = True
            raise AuthError("401 Unauthorized", "your login has ended: log in again")
        environ[LOGGED_IN] = True
        return grant

    @staticmethod
    def stale(environ: dict[str, Any]) -> bool:
        """Whether the request came with a cookie that no longer holds (expired, logged
        out, or of a user removed since)."""
        return bool(environ.get(_STALE))

    def clearing(self, environ: dict[str, Any]) -> list[tuple[str, str]]:
        """The header that makes the browser drop a cookie that no longer holds (if any)."""
        return [("Set-Cookie", self._cookie(environ, "", 0))] if environ.get(_STALE) else []

    def answer(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        """The answer to ``/login`` (GET, HEAD, POST) or ``/logout`` (POST)."""
        method = str(environ.get("REQUEST_METHOD", ""))
        if environ.get("PATH_INFO") == login_page.LOGOUT_PATH:
            if method != "POST":
                return _not_allowed(start_response, "POST")
            return self._logout(environ, start_response)
        if method == "POST":
            return self._login(environ, start_response)
        if method not in ("GET", "HEAD"):
            return _not_allowed(start_response, "GET, HEAD, POST")
        try:
            query = parse_qs(str(environ.get("QUERY_STRING", "")), max_num_fields=10)
        except ValueError:  # (more fields than a login page has: none of them is used)
            query = {}
        next_path = local_path((query.get("next") or [""])[0])
        return self._page(environ, start_response, "200 OK", next_path)

    def _login(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        """Check the form's credentials; 303 to its ``next`` with the cookie, or the
        page again with what went wrong."""
        reason = foreign(environ)
        if reason is not None:
            text = f"{reason}; log in from this server's own page"
            return self._page(environ, start_response, "403 Forbidden", DEFAULT_NEXT, text)
        form, refusal = _read_form(environ)
        next_path = local_path(form.get("next"))
        name, password, token = form.get("user", ""), form.get("password", ""), form.get("token")
        if refusal is not None:
            status, text = refusal
            return self._page(environ, start_response, status, next_path, text)
        if token:
            header = f"Bearer {token}"
        elif name:
            clear_text = self.auth.clear_text_refusal(environ)
            if clear_text is not None:
                text = f"{clear_text}: use https://, or a token"
                return self._page(environ, start_response, "403 Forbidden", next_path, text, name)
            header = "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()
        else:
            text = "enter your user name and password, or a token"
            return self._page(environ, start_response, "400 Bad Request", next_path, text)
        try:
            grant = self.auth.authenticate(environ, header, page=True)
        except AuthError as exc:
            extra = [("Retry-After", str(exc.retry_after))] if exc.retry_after else []
            return self._page(
                environ, start_response, exc.status, next_path, exc.message, name, extra
            )
        user = grant.user.name
        not_allowed = protocol_refusal(grant.user, "http")
        if not_allowed is not None:  # (the page is of the file API: http)
            return self._page(environ, start_response, "403 Forbidden", next_path, not_allowed)
        credential = b"" if token else self.auth.credential(grant.user)
        secret = self.sessions.create(user, grant.read_only, token or None, credential)
        method = "token" if token else "password"
        COUNTERS.add("logins", ("http", method, "ok"))
        address = environ.get("REMOTE_ADDR", "")
        logs.later(access, "login %s from %s over http (%s, page)", user, address, method)
        environ["wsgidav.auth.user_name"] = user  # (for the access line)
        lifetime = int(self.sessions.lifetime)
        return _see_other(
            start_response, next_path, [("Set-Cookie", self._cookie(environ, secret, lifetime))]
        )

    def _logout(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        """End the cookie's session and drop the cookie; 303 to the login page."""
        reason = foreign(environ)
        if reason is not None:
            text = f"{reason}; log out from this server's own page"
            return self._page(environ, start_response, "403 Forbidden", DEFAULT_NEXT, text)
        secret = cookie_of(environ)
        session = self.sessions.end(secret) if secret is not None else None
        if session is not None:
            environ["wsgidav.auth.user_name"] = session.user
            address = environ.get("REMOTE_ADDR", "")
            logs.later(access, "logout %s from %s over http (page)", session.user, address)
        clear = [("Set-Cookie", self._cookie(environ, "", 0))]
        return _see_other(start_response, login_page.LOGIN_PATH, clear)

    def _page(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        status: str,
        next_path: str,
        error: str | None = None,
        user: str = "",
        extra: list[tuple[str, str]] | None = None,
    ) -> list[bytes]:
        """The login page with this status (and ``error`` shown in it)."""
        nonce = secrets.token_urlsafe(16)
        clear_text = self.auth.clear_text_refusal(environ)
        body = login_page.render(nonce, next_path, user, error, clear_text)
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", login_page.CSP.format(nonce=nonce)),
            ("X-Frame-Options", "DENY"),
            # (no-referrer would make the browser send Origin: null with the form)
            ("Referrer-Policy", "same-origin"),
            *(extra or []),
        ]
        start_response(status, headers)
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def _cookie(self, environ: dict[str, Any], value: str, max_age: int) -> str:
        """The ``Set-Cookie`` value of the session cookie."""
        cookie = f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
        return cookie + "; Secure" if environ.get("wsgi.url_scheme") == "https" else cookie


def _read_form(environ: dict[str, Any]) -> tuple[dict[str, str], tuple[str, str] | None]:
    """The fields of a urlencoded form body (the first of each name), and the status and
    text of a refusal, if any."""
    kind = str(environ.get("CONTENT_TYPE", "")).partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}, ("415 Unsupported Media Type", "send the login form as the page does")
    length = str(environ.get("CONTENT_LENGTH") or "")
    if not length.isdigit():
        return {}, ("411 Length Required", "the login form needs a Content-Length")
    if int(length) > FORM_LIMIT:
        return {}, ("413 Content Too Large", "the login form is too large")
    try:
        text = environ["wsgi.input"].read(int(length)).decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return {}, ("400 Bad Request", "the login form is malformed")
    except OSError as exc:
        refusal = body_refusal(exc)
        if refusal is None:
            raise
        return {}, (status_line(refusal[0]), refusal[1])
    return {name: values[0] for name, values in fields.items()}, None


def _see_other(
    start_response: StartResponse, where: str, extra: list[tuple[str, str]]
) -> list[bytes]:
    """303 to ``where`` (a path of this server)."""
    headers = [("Location", where), ("Content-Length", "0"), ("Cache-Control", "no-store")]
    start_response("303 See Other", [*headers, *extra])
    return [b""]


def _not_allowed(start_response: StartResponse, allow: str) -> list[bytes]:
    """405 naming the methods allowed."""
    body = f"{allow} only\n".encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Allow", allow),
    ]
    start_response("405 Method Not Allowed", headers)
    return [body]
