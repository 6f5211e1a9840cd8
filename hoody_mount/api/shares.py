"""The shares API at /api/v1/shares: create, list and revoke shares, for administrators
(users who are not jailed and may write), with the same answers as ``hoody-mount share``."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable
from typing import Any

from ..core import paths, permissions
from ..core.session import Session
from ..core.shares import ShareStore, check_allow, created
from ..core.tokens import checked_duration, parse_duration
from ..http_names import SESSION, SHARES_ROOT
from . import origin
from .errors import ApiError, from_os_error
from .replies import Headers, json_reply, read_json

StartResponse = Callable[..., Any]
REVOKED = "the share was revoked"
SHAPE = 'send {"path": "/folder", "mode": "ro"|"rw", "expires": "90d"|null}'


class SharesAPI:
    """The WSGI application of /api/v1/shares; ``usage`` gives a share user's last use
    and bytes served, ``end_user`` ends a user's sessions (how many)."""

    def __init__(
        self,
        shares: ShareStore,
        usage: Callable[[str], dict[str, Any]],
        end_user: Callable[[str, str], int],
        jail_refusal: Callable[[str], str | None] = lambda path: None,
    ) -> None:
        self.shares, self.usage, self.end_user = shares, usage, end_user
        self.jail_refusal = jail_refusal  # why a folder cannot be a share's (its jail)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, headers, body = self._dispatch(environ)
        except ApiError as exc:
            status, headers, body = json_reply(
                exc.status, {"error": exc.code, "message": exc.message}, exc.headers
            )
        except OSError as exc:
            err = from_os_error(exc)
            status, headers, body = json_reply(
                err.status, {"error": err.code, "message": err.message}
            )
        start_response(status, headers)
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def _dispatch(self, environ: dict[str, Any]) -> tuple[str, Headers, bytes]:
        session: Session = environ[SESSION]
        user = session.user
        if user.root != "/" or user.share is not None or not permissions.may_write(user):
            raise ApiError(
                403, "forbidden", "shares are for users who are not jailed and may write"
            )
        method = environ["REQUEST_METHOD"]
        rest = str(environ.get("PATH_INFO", ""))[len(SHARES_ROOT) :].strip("/")
        if method not in origin.SAFE_METHODS:
            origin.check(environ)
        if method in ("GET", "HEAD") and not rest:
            rows = [{**share.row(), **self.usage(share.name)} for share in self.shares.list()]
            return json_reply(200, {"shares": rows})
        if method == "POST" and not rest:
            return self._create(environ, session)
        if method == "DELETE" and rest:
            share = self.shares.revoke(rest)
            if share is None:
                raise ApiError(404, "not_found", f"no share {rest}")
            ended = self.end_user(share.name, REVOKED)
            return json_reply(200, {"revoked": share.id, "ended": ended})
        allow = [("Allow", "GET, HEAD, POST, DELETE")]
        text = "GET or POST /api/v1/shares, DELETE /api/v1/shares/<id>"
        raise ApiError(405, "method_not_allowed", text, allow)

    def _create(self, environ: dict[str, Any], session: Session) -> tuple[str, Headers, bytes]:
        if str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip() != "application/json":
            raise ApiError(
                415, "unsupported_media_type", "send JSON with Content-Type: application/json"
            )
        request = read_json(environ, SHAPE)
        path, mode, expires = request.get("path"), request.get("mode", "ro"), request.get("expires")
        allow, password = request.get("allow", []), request.get("password")
        if not isinstance(path, str) or not path.startswith("/") or mode not in ("ro", "rw"):
            raise ApiError(400, "bad_request", SHAPE)
        if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
            raise ApiError(400, "bad_request", '"allow" must be a list of address ranges')
        if password is not None and (not isinstance(password, str) or not password):
            raise ApiError(400, "bad_request", '"password" must be a non-empty string')
        try:
            seconds = _seconds(expires)
            ranges = check_allow(allow)
        except ValueError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        path = paths.normalize(path)
        if not stat.S_ISDIR(session.stat(path).st_mode):
            raise ApiError(400, "not_a_directory", f"{path} is not a folder")
        why = self.jail_refusal(path)  # (a link on its path: every login would fail)
        if why is not None:
            raise ApiError(400, "not_shareable", f"{path} cannot be shared: {why}")
        secret, share = self.shares.create(path, mode == "ro", seconds, ranges, password)
        base = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', 'localhost')}"
        return json_reply(201, created(share, secret, base), [("Cache-Control", "no-store")])


def _seconds(expires: object) -> float | None:
    """``"90d"``, a number of seconds, or null (never)."""
    if expires is None:
        return None
    if isinstance(expires, str):
        return parse_duration(expires)
    if isinstance(expires, int | float) and not isinstance(expires, bool) and expires > 0:
        return checked_duration(float(expires))
    raise ValueError('"expires" must be a duration such as "90d", seconds, or null')
