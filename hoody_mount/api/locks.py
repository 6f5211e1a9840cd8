"""Locks over the file API: ``POST …?lock`` takes one, ``DELETE …?lock`` releases it, and
administrators list and release every lock at ``/api/v1/locks``.

The locks are the core's (``core/locks.py``), the ones WebDAV takes too. A request
brings the tokens of its locks in ``If: (<token>)`` (as WebDAV does) or in
``Lock-Token: <token>``; a change a lock it does not hold covers is 423 Locked.
"""

from __future__ import annotations

from typing import Any

from ..core import permissions
from ..core.locks import Lock, brought_tokens
from ..core.session import Session
from ..http_names import LOCKS_ROOT
from ..http_rules import status_line
from .errors import ApiError
from .replies import Headers, json_reply, json_text

DEFAULT_TIMEOUT = 3600  # seconds a lock lasts when the request names no timeout


def tokens_of(environ: dict[str, Any]) -> frozenset[str]:
    """The lock tokens a request brings (``If`` lists, ``Lock-Token``)."""
    return brought_tokens(str(environ.get("HTTP_IF", "")), str(environ.get("HTTP_LOCK_TOKEN", "")))


def _one(query: dict[str, list[str]], name: str, default: str) -> str:
    return query.get(name, [default])[0] or default


def _reply(session: Session, lock: Lock, status: int) -> tuple[str, Headers, bytes]:
    data = {
        "token": lock.token,
        "path": json_text(session.in_jail(lock.path) or "/"),
        **{key: value for key, value in lock.row().items() if key != "path"},
    }
    return json_reply(status, data, [("Lock-Token", f"<{lock.token}>")])


def answer(
    environ: dict[str, Any], session: Session, path: str, query: dict[str, list[str]]
) -> tuple[str, Headers, bytes]:
    """``POST ?lock[&timeout=SECONDS][&depth=0|infinity][&shared][&owner=TEXT]``: a
    lock (200 with its token in JSON and in ``Lock-Token``), or, with the token of a
    lock of the caller's on ``path`` in ``Lock-Token``, that lock for a new timeout.
    ``DELETE ?lock`` with ``Lock-Token``: the lock released (204)."""
    token = str(environ.get("HTTP_LOCK_TOKEN", "")).strip().strip("<>")
    if environ["REQUEST_METHOD"] == "DELETE":
        if not token:
            raise ApiError(400, "bad_request", "send the lock's token in Lock-Token: <token>")
        try:
            session.release_lock(path, token)
        except LookupError as exc:
            raise ApiError(409, "no_lock", str(exc)) from None
        return status_line(204), [("Content-Length", "0")], b""
    text = _one(query, "timeout", str(DEFAULT_TIMEOUT))
    depth = _one(query, "depth", "0")
    if not text.isdigit() or int(text) <= 0:
        raise ApiError(400, "bad_request", "timeout must be a number of seconds above 0")
    if depth not in ("0", "infinity"):
        raise ApiError(400, "bad_request", 'depth must be "0" or "infinity"')
    if token:
        held = session.locks.get(token)
        if held is None or held.principal != session.user.name:
            raise ApiError(409, "no_lock", "no lock of yours with that token")
        return _reply(session, session.locks.refresh(token, float(text)), 200)
    lock = session.take_lock(
        path, timeout=float(text), depth=depth, shared="shared" in query,
        owner=_one(query, "owner", "")[:200],
    )  # fmt: skip
    return _reply(session, lock, 200)


def admin(environ: dict[str, Any], session: Session) -> tuple[str, Headers, bytes]:
    """``GET /api/v1/locks``: every lock; ``DELETE /api/v1/locks/<id>``: one released.
    For administrators (users who are not jailed and may write)."""
    user = session.user
    if user.root != "/" or user.share is not None or not permissions.may_write(user):
        raise ApiError(
            403, "forbidden", "locks are listed for users who are not jailed and may write"
        )
    rest = str(environ.get("PATH_INFO", ""))[len(LOCKS_ROOT) :].strip("/")
    method = environ["REQUEST_METHOD"]
    if method in ("GET", "HEAD") and not rest:
        return json_reply(200, {"locks": [lock.row() for lock in session.locks.locks()]})
    if method == "DELETE" and rest:
        lock = session.locks.by_id(rest)
        if lock is None or not session.locks.delete(lock.token):
            raise ApiError(404, "not_found", f"no lock {rest}")
        session.changed("unlock", lock.path, f" lock={lock.id} (by an administrator)")
        return status_line(204), [("Content-Length", "0")], b""
    raise ApiError(405, "method_not_allowed", "GET /api/v1/locks, or DELETE /api/v1/locks/<id>")
