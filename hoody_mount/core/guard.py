"""Brute-force defence shared by every protocol: failed logins are counted per address.

After ``limit`` failures within ``window`` seconds an address is refused for ``ban``
seconds, whatever protocol it tries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

log = logging.getLogger("hoody_mount.guard")


class LoginGuard:
    """Counts failed logins per source address and bans the noisy ones for a while."""

    def __init__(self, limit: int = 10, window: float = 600.0, ban: float = 300.0) -> None:
        self.limit, self.window, self.ban = limit, window, ban
        self._failures: dict[str, deque[float]] = {}
        self._banned: dict[str, float] = {}
        self._lock = threading.Lock()

    def allowed(self, address: str) -> bool:
        """Whether a login attempt from ``address`` may be checked at all."""
        with self._lock:
            until = self._banned.get(address)
            if until is None:
                return True
            if time.monotonic() >= until:
                del self._banned[address]
                return True
            return False

    def failed(self, address: str, who: str, protocol: str) -> None:
        """Record a failure; ban the address once it has failed too often."""
        now = time.monotonic()
        log.warning("failed login for %r from %s over %s", who, address, protocol)
        with self._lock:
            times = self._failures.setdefault(address, deque())
            times.append(now)
            while times and times[0] < now - self.window:
                times.popleft()
            if len(times) >= self.limit:
                self._banned[address] = now + self.ban
                del self._failures[address]
                log.warning(
                    "banned %s for %.0f s after %d failed logins", address, self.ban, self.limit
                )

    def succeeded(self, address: str) -> None:
        """A good login clears the address's failures."""
        with self._lock:
            self._failures.pop(address, None)
