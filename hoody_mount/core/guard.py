"""Brute-force defence shared by every protocol: failed logins counted per address and
per (address, user).

- An address is refused for ``ban`` seconds after ``limit`` failures within ``window``
  seconds, whatever the user names. A good login never clears this count: it only ages
  out, so good logins as one user cannot buy more guesses at another.
- One user from one address is refused for ``user_ban`` seconds after ``limit``
  failures within ``user_window`` seconds (longer than ``window``: a slow guesser that
  stays under the address limit still runs into it). A good login of that user from
  that address clears this count.

Only password and token checks are refused; SSH key logins stay allowed during a ban.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import NamedTuple, TypeVar

from .addresses import client_of

log = logging.getLogger("hoody_mount.guard")

_MAX_TRACKED = 4096  # counts kept before aged ones are dropped
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


QUEUE_WAIT = 10.0  # seconds a login may wait for a place among its address's checks


def _settled(ban: Ban | None, left: float) -> bool:
    """Whether a login stops waiting in the queue: it has a place (None), is refused
    for another reason than a full queue, or has waited its time."""
    return ban is None or not ban.busy or left <= 0


class Ban(NamedTuple):
    """A refusal: whole seconds until the next attempt is checked, and why; ``busy`` when
    it is only that the address has as many checks running as it may."""

    seconds: int
    message: str
    busy: bool = False


class LoginGuard:
    """Counts failed logins per address and per (address, user); bans the noisy ones."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 600.0,
        ban: float = 300.0,
        user_window: float = 3600.0,
        user_ban: float = 900.0,
    ) -> None:
        self.limit, self.window, self.ban = limit, window, ban
        self.user_window, self.user_ban = user_window, user_ban
        self._failures: dict[str, deque[float]] = {}
        self._user_failures: dict[tuple[str, str], deque[float]] = {}
        self._banned: dict[str, float] = {}
        self._users_banned: dict[tuple[str, str], float] = {}
        self._checking: collections.Counter[str] = collections.Counter()  # checks running
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)  # a place was given back

    def banned_addresses(self) -> int:
        """How many addresses are refused now (whatever the user)."""
        now = time.monotonic()
        with self._lock:
            return sum(1 for until in self._banned.values() if until > now)

    def banned(self, address: str, user: str | None = None) -> Ban | None:
        """Why a login from ``address`` (as ``user``, when known) is not checked now."""
        address = client_of(address)  # (an IPv6 host by its /64, see ``addresses``)
        now = time.monotonic()
        with self._lock:
            until = _active(self._banned, address, now)
            if until:
                return _ban(until - now, f"from {address}")
            if user is None:
                return None
            until = _active(self._users_banned, (address, user), now)
            return _ban(until - now, f"as {user!r} from {address}") if until else None

    def reserve(self, address: str, user: str) -> Ban | None:
        """Take a place for one password check from ``address``, or say why not: a ban,
        or as many checks already running as failures are still allowed (so a burst of
        parallel guesses cannot all be checked before the first failures are counted).
        Give the place back with ``release`` once the outcome is recorded."""
        address = client_of(address)  # (an IPv6 host by its /64, see ``addresses``)
        ban = self.banned(address, user)
        if ban is not None:
            return ban
        now = time.monotonic()
        with self._lock:
            recent = _recent(self._failures, address, now, self.window)
            if recent + self._checking[address] >= self.limit:
                return Ban(1, f"too many logins at once from {address}, retry in 1 s", True)
            self._checking[address] += 1
        return None

    def reserve_within(self, address: str, user: str, seconds: float = QUEUE_WAIT) -> Ban | None:
        """``reserve``, waiting up to ``seconds`` for a place while the address's checks
        are all taken (20 good logins at once from one address, a team behind one NAT,
        had 10 refused): the logins queue, the failures still count before the next
        guesses are checked."""
        deadline = time.monotonic() + seconds
        while True:
            ban = self.reserve(address, user)
            left = deadline - time.monotonic()
            if _settled(ban, left):
                return ban
            with self._released:
                self._released.wait(min(left, 0.25))

    async def reserve_soon(
        self, address: str, user: str, seconds: float = QUEUE_WAIT
    ) -> Ban | None:
        """``reserve_within`` for an event loop: the same queue, waited for without
        blocking the loop (a look every 50 ms: the checks ahead end in a fraction of a
        second)."""
        deadline = time.monotonic() + seconds
        while True:
            ban = self.reserve(address, user)
            if _settled(ban, deadline - time.monotonic()):
                return ban
            await asyncio.sleep(0.05)

    def release(self, address: str) -> None:
        """Give back a place taken by ``reserve``."""
        address = client_of(address)  # (an IPv6 host by its /64, see ``addresses``)
        with self._lock:
            self._checking[address] -= 1
            if self._checking[address] <= 0:
                del self._checking[address]
            self._released.notify_all()

    def allowed(self, address: str, user: str | None = None) -> bool:
        """Whether a login attempt from ``address`` (as ``user``) may be checked at all."""
        return self.banned(address, user) is None

    def failed(self, address: str, who: str, protocol: str) -> Ban | None:
        """Record a failure; the ban it caused, if any."""
        address = client_of(address)  # (an IPv6 host by its /64, see ``addresses``)
        now = time.monotonic()
        log.warning('failed login for "%s" from %s over %s', who, address, protocol)
        pair = (address, who)
        with self._lock:
            if len(self._failures) + len(self._user_failures) > _MAX_TRACKED:
                self._prune(now)
            if _count(self._failures, address, now, self.window) >= self.limit:
                self._banned[address] = now + self.ban
                del self._failures[address]
                log.warning("banned %s for %.0f s after %d failed logins",
                            address, self.ban, self.limit)  # fmt: skip
            if _count(self._user_failures, pair, now, self.user_window) >= self.limit:
                self._users_banned[pair] = now + self.user_ban
                del self._user_failures[pair]
                log.warning("banned %r from %s for %.0f s after %d failed logins",
                            who, address, self.user_ban, self.limit)  # fmt: skip
        return self.banned(address, who)

    def succeeded(self, address: str, who: str) -> None:
        """A good login clears its own (address, user) count, never the address's."""
        address = client_of(address)  # (an IPv6 host by its /64, see ``addresses``)
        with self._lock:
            self._user_failures.pop((address, who), None)

    def _prune(self, now: float) -> None:
        """Drop counts and bans that have aged out (under the lock)."""
        _drop(self._failures, lambda times: times[-1] < now - self.window)
        _drop(self._user_failures, lambda times: times[-1] < now - self.user_window)
        _drop(self._banned, lambda until: until <= now)
        _drop(self._users_banned, lambda until: until <= now)


def _active(bans: dict[K, float], key: K, now: float) -> float:
    """The end of the ban on ``key``, or 0 (an expired ban is forgotten)."""
    until = bans.get(key, 0.0)
    if until and now >= until:
        del bans[key]
        return 0.0
    return until


def _recent(failures: dict[K, deque[float]], key: K, now: float, window: float) -> int:
    """How many of ``key``'s failures lie within ``window``."""
    return sum(1 for when in failures.get(key, ()) if when >= now - window)


def _count(failures: dict[K, deque[float]], key: K, now: float, window: float) -> int:
    """Add a failure at ``now`` to ``key``'s count; the failures within ``window``."""
    times = failures.setdefault(key, deque())
    times.append(now)
    while times and times[0] < now - window:
        times.popleft()
    return len(times)


def _drop(entries: dict[K, V], old: Callable[[V], bool]) -> None:
    for key in [key for key, value in entries.items() if old(value)]:
        del entries[key]


def _ban(seconds: float, who: str) -> Ban:
    whole = max(1, math.ceil(seconds))
    return Ban(whole, f"too many failed logins {who}, retry in {whole} s")
