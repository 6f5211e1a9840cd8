"""HTTP authentication for the web fronts: Basic (and, through a token check, Bearer),
and the password a share link may ask for.

Basic credentials travel in clear text, so they are accepted over plain HTTP only from
loopback clients or where the configuration says so. Verified passwords are remembered
for a few minutes (by a keyed digest, never in clear), since WebDAV clients send them
with every request and scrypt is deliberately slow.

Logins go to ``hoody_mount.access``: a password when scrypt really checked it (not when
remembered), a token at most once per ``_CACHE_SECONDS``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..core import logs
from ..core.counters import COUNTERS
from ..core.guard import Ban, LoginGuard
from ..core.log_limit import Throttled
from ..core.shares import PREFIX as SHARE_PREFIX
from ..core.turns import stepped_aside
from ..core.users import UNKNOWN_SECRET, User, stored_for, verify_password
from ..http_names import PEER
from .login_sessions import LoginSession

access = logging.getLogger("hoody_mount.access")
log = logging.getLogger("hoody_mount.web")

_CACHE_SECONDS = 300.0
_CACHE_SIZE = 1024

TokenCheck = Callable[[str], "Grant | None"]


lapsed = Throttled(logging.getLogger("hoody_mount.guard"), "logins as shares not in force")


@dataclass(frozen=True)
class Grant:
    """Who a request acts as, and whether this credential may only read."""

    user: User
    read_only: bool = False


class AuthError(Exception):
    """Authentication failed or is missing: answer with ``status``."""

    def __init__(self, status: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @classmethod
    def banned(cls, ban: Ban) -> AuthError:
        """429 with Retry-After, saying why."""
        COUNTERS.add("logins", ("http", "password", "banned"))
        return cls("429 Too Many Requests", ban.message, ban.seconds)


def is_loopback(address: str) -> bool:
    """Whether the client address is on this machine."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Checks the Authorization header of a request against the users (and tokens)."""

    def __init__(
        self,
        users: Mapping[str, User],
        guard: LoginGuard,
        allow_basic_over_http: bool = False,
        tokens: TokenCheck | None = None,
    ) -> None:
        self.users = users
        self.guard = guard
        self.allow_basic_over_http = allow_basic_over_http
        self.tokens = tokens
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._checking: dict[bytes, _Check] = {}  # credentials being verified right now
        self._tokens_logged: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def authenticate(
        self, environ: dict[str, Any], header: str | None = None, page: bool = False
    ) -> Grant:
        """The grant of the request, or AuthError (401, 403 or 429). ``header`` stands
        for the request's Authorization (the login page's credentials, with ``page``:
        the page logs its logins itself)."""
        address = str(environ.get("REMOTE_ADDR", ""))
        if header is None:
            header = str(environ.get("HTTP_AUTHORIZATION", ""))
        scheme, _, value = header.partition(" ")
        if not header:
            raise AuthError("401 Unauthorized", "authentication required")
        ban = self.guard.banned(address)
        if scheme.lower() == "bearer" and self.tokens is not None:
            # A valid token passes during a ban, as an SSH key does: its secret is 256
            # random bits, nothing to guess. A wrong one counts and meets the ban.
            grant = self.tokens(value.strip())
            if grant is None:
                if ban is not None:
                    raise AuthError.banned(ban)
                raise self._failed(address, "<token>", "invalid or expired token")
            self._admit(grant.user, address, "<token>")
            if not page:
                self._log_token(value.strip(), grant, address)
            return grant
        if ban is not None:
            raise AuthError.banned(ban)
        if scheme.lower() != "basic":
            raise AuthError("401 Unauthorized", f"unsupported authorization scheme {scheme!r}")
        if self.clear_text_refusal(environ) is not None:
            raise AuthError(
                "403 Forbidden", "Basic authentication is accepted only over HTTPS from here"
            )
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except ValueError:  # (not base64, not UTF-8, or not ASCII to begin with)
            raise AuthError("401 Unauthorized", "malformed Basic credentials") from None
        name, _, password = decoded.partition(":")
        ban = self.guard.banned(address, name)
        if ban is not None:
            raise AuthError.banned(ban)
        user = self.users.get(name)
        if user is not None:
            self._admit(user, address, name)
        # an unknown user costs the same scrypt check as a wrong password
        stored = stored_for(user, name, SHARE_PREFIX)
        ok, counted = self._check(name, stored, password, address, log=not page)
        if not ok or user is None:
            if counted or stored == UNKNOWN_SECRET:  # (counted, or no guess: see _check)
                raise AuthError("401 Unauthorized", "wrong user name or password")
            raise self._failed(address, name, "wrong user name or password")
        self.guard.succeeded(address, name)
        return Grant(user)

    def clear_text_refusal(self, environ: dict[str, Any]) -> str | None:
        """Why a password may not come over this connection (plain HTTP from a client
        that is not on this machine, unless the configuration allows it), or None."""
        # (loopback: the client and the connection both, so that a client a remote
        # proxy names as 127.0.0.1 is not taken for one on this machine)
        address = str(environ.get("REMOTE_ADDR", ""))
        local = is_loopback(address) and is_loopback(str(environ.get(PEER, address)))
        if environ.get("wsgi.url_scheme") == "https" or self.allow_basic_over_http or local:
            return None
        return "passwords are accepted only over HTTPS from here"

    def credential(self, user: User) -> bytes:
        """What a password session is bound to: a keyed digest of the user's password
        hash (a new hash has a new salt, so a new password, or a user removed and made
        again under the same name, never matches an old one)."""
        return hmac.new(self._key, (user.password_hash or "").encode(), hashlib.sha256).digest()

    def resumed(self, environ: dict[str, Any], session: LoginSession) -> Grant | None:
        """The grant of a request that brings the login page's cookie of ``session``:
        its user as configured now (None when the user is gone, or the token it was made
        with no longer holds), admitted from the request's address (AuthError 403)."""
        if session.token is not None:
            grant = self.tokens(session.token) if self.tokens is not None else None
            if grant is None or grant.user.name != session.user:
                return None
        else:
            user = self.users.get(session.user)
            if user is None or not hmac.compare_digest(session.credential, self.credential(user)):
                return None  # (gone, or its password changed, or another user of that name)
            grant = Grant(user, session.read_only)
        self._admit(grant.user, str(environ.get("REMOTE_ADDR", "")), grant.user.name)
        return grant

    def link(self, environ: dict[str, Any], user: User, password_hash: str | None) -> Grant:
        """The grant of a request made through a share link (``user`` is the share's):
        its address must be admitted and, when the link has a password, the request
        must bring it as Basic credentials (any user name). AuthError otherwise."""
        address = str(environ.get("REMOTE_ADDR", ""))
        self._admit(user, address, user.name)
        if password_hash is None:
            return Grant(user)
        ban = self.guard.banned(address, user.name)
        if ban is not None:
            raise AuthError.banned(ban)
        scheme, _, value = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
        if scheme.lower() != "basic":
            raise AuthError("401 Unauthorized", "this link asks for its password")
        if environ.get("wsgi.url_scheme") != "https" and not (
            self.allow_basic_over_http or is_loopback(address)
        ):
            raise AuthError(
                "403 Forbidden", "Basic authentication is accepted only over HTTPS from here"
            )
        try:
            password = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except ValueError:
            raise AuthError("401 Unauthorized", "malformed Basic credentials") from None
        ok, counted = self._check(user.name, password_hash, password, address)
        if not ok:
            if counted:
                raise AuthError("401 Unauthorized", "wrong password")
            raise self._failed(address, user.name, "wrong password")
        self.guard.succeeded(address, user.name)
        return Grant(user)

    def _admit(self, user: User, address: str, who: str) -> None:
        """Refuse (403, counted as a failed login) a user its ``allow`` ranges keep out."""
        refusal = user.address_refusal(address)
        if refusal is not None:
            log.warning("refused login for %s from %s: %s", user.name, address, refusal)
            self._failed(address, who if who == "<token>" else user.name, refusal)
            raise AuthError("403 Forbidden", refusal)

    def _failed(self, address: str, who: str, message: str) -> AuthError:
        """Count the failure (the guard may ban the client from the next attempt on)."""
        method = "token" if who == "<token>" else "password"
        COUNTERS.add("logins", ("http", method, "failed"))
        self.guard.failed(address, who, "http")
        return AuthError("401 Unauthorized", message)

    def _log_token(self, token: str, grant: Grant, address: str) -> None:
        """Log a token login, at most once per token per ``_CACHE_SECONDS``."""
        digest = hmac.new(self._key, token.encode(), hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            if self._tokens_logged.get(digest, 0.0) > now:
                return
            self._tokens_logged[digest] = now + _CACHE_SECONDS
            self._tokens_logged.move_to_end(digest)
            while len(self._tokens_logged) > _CACHE_SIZE:
                self._tokens_logged.popitem(last=False)
        COUNTERS.add("logins", ("http", "token", "ok"))
        mode = "read-only token" if grant.read_only else "token"
        logs.later(access, "login %s from %s over http (%s)", grant.user.name, address, mode)

    def _check(
        self, name: str, stored: str | None, password: str, address: str, log: bool = True
    ) -> tuple[bool, bool]:
        """Verify a password, once for all requests that bring the same one at once:
        a WebDAV client opens several connections together, and each scrypt check costs
        32 MiB and a tenth of a second. Only good passwords are remembered. Returns
        whether the password is good and whether this call already counted its failure."""
        digest = hmac.new(
            self._key, f"{name}\0{stored}\0{password}".encode(), hashlib.sha256
        ).digest()
        now = time.monotonic()
        with self._lock:
            expiry = self._cache.get(digest)
            if expiry is not None and expiry > now:
                return True, False
            check = self._checking.get(digest)
            first = check is None
            if check is None:
                check = self._checking[digest] = _Check()
        if not first:
            with stepped_aside():  # (the first one needs a turn to finish)
                check.done.wait()
            if check.refused is not None:
                raise AuthError.banned(check.refused)
            return check.ok, False
        try:
            # Only a check that really runs takes a place: the same credentials arriving
            # together wait for this one, and remembered ones are checked no more.
            with stepped_aside():  # (it may wait for the address's other checks)
                check.refused = self.guard.reserve_within(address, name)
            if check.refused is not None:
                raise AuthError.banned(check.refused)
            try:
                check.ok = verify_password(password, stored)
                if not check.ok and stored == UNKNOWN_SECRET:
                    # (a share not in force: revoked or expired. Its secret is no guess,
                    # and a mount that keeps trying it must not ban its whole address)
                    COUNTERS.add("logins", ("http", "password", "failed"))
                    lapsed.note(address, f"{name} is revoked or expired (or never was)")
                elif not check.ok:
                    COUNTERS.add("logins", ("http", "password", "failed"))
                    self.guard.failed(address, name, "http")  # before the place is given back
                    check.counted = True
            finally:
                self.guard.release(address)
        finally:
            with self._lock:
                del self._checking[digest]
                if check.ok:
                    self._cache[digest] = now + _CACHE_SECONDS
                    self._cache.move_to_end(digest)
                    while len(self._cache) > _CACHE_SIZE:
                        self._cache.popitem(last=False)
            check.done.set()
        if check.ok and log:
            COUNTERS.add("logins", ("http", "password", "ok"))
            logs.later(access, "login %s from %s over http (password)", name, address)
        return check.ok, check.counted


class _Check:
    """A password check in flight; requests with the same credentials wait for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.counted = False  # its failure is counted already
        self.refused: Ban | None = None  # no place to check it (see LoginGuard.reserve)
