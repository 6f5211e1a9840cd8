"""Logins of the web page: server-side sessions in memory, each named by a cookie's secret.

Only a keyed digest of each secret is kept (a copy of the table names no cookie). A
session knows its user by name, so every request looks the user up afresh: a user
removed by a reload ends its sessions, a changed one gets its new rights. A session
made with a token keeps the token, checked again at each request (a revoked one ends
it). Sessions are bounded per user and in all: the oldest give way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

PER_USER = 16  # a user's sessions at once (browsers, devices)
IN_ALL = 4096


@dataclass(frozen=True)
class LoginSession:
    """Who a cookie stands for, until when, and the token it was made with (if any)."""

    user: str
    read_only: bool
    expires: float  # time.monotonic()
    token: str | None = None
    # a keyed digest of the user's password hash at login (``Authenticator.credential``):
    # a new password, or another user made under the same name, ends the session
    credential: bytes = b""


class LoginSessions:
    """The sessions of the web page, by the digest of their secret (thread-safe)."""

    def __init__(self, lifetime: float, per_user: int = PER_USER, in_all: int = IN_ALL) -> None:
        self.lifetime = lifetime  # seconds
        self.per_user = per_user
        self.in_all = in_all
        self._key = secrets.token_bytes(32)
        self._sessions: OrderedDict[bytes, LoginSession] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def _digest(self, secret: str) -> bytes:
        return hmac.new(self._key, secret.encode("utf-8", "replace"), hashlib.sha256).digest()

    def create(
        self,
        user: str,
        read_only: bool = False,
        token: str | None = None,
        credential: bytes = b"",
    ) -> str:
        """A new session's secret (256 random bits), for the cookie."""
        secret = secrets.token_urlsafe(32)
        expires = time.monotonic() + self.lifetime
        session = LoginSession(user, read_only, expires, token, credential)
        with self._lock:
            mine = [key for key, held in self._sessions.items() if held.user == user]
            for key in mine[: max(0, len(mine) - self.per_user + 1)]:
                del self._sessions[key]
            while len(self._sessions) >= self.in_all:
                self._sessions.popitem(last=False)
            self._sessions[self._digest(secret)] = session
        return secret

    def find(self, secret: str) -> LoginSession | None:
        """The session of this secret while it lasts (an expired one is dropped)."""
        digest = self._digest(secret)
        with self._lock:
            session = self._sessions.get(digest)
            if session is not None and session.expires <= time.monotonic():
                del self._sessions[digest]
                return None
            return session

    def end(self, secret: str) -> LoginSession | None:
        """End the session of this secret; the session it was, if any."""
        with self._lock:
            return self._sessions.pop(self._digest(secret), None)

    def end_user(self, user: str) -> int:
        """End every session of ``user`` (removed from the configuration); how many."""
        with self._lock:
            mine = [key for key, held in self._sessions.items() if held.user == user]
            for key in mine:
                del self._sessions[key]
        return len(mine)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
