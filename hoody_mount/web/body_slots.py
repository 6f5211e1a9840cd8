"""How many requests with a body each user may have running at once.

A request with a body holds a worker thread for as long as the body takes to arrive;
40 uploads of one user sending a byte a second held every worker, and the whole HTTP
service stopped for everyone. Each user gets a bounded number of such requests at once
(a quarter of the workers by default); past it the request is answered 503 with
``Retry-After`` before its body is read, so one user's uploads can never take the
server. Bodies that stall altogether are dropped by the intake's minimum rate.
"""

from __future__ import annotations

import threading
from collections import Counter


class BodySlots:
    """Per-user counts of requests with a body in progress."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()

    def take(self, user: str) -> bool:
        """Take a slot for ``user``; False when all of theirs are taken."""
        with self._lock:
            if self._held[user] >= self.per_user:
                return False
            self._held[user] += 1
            return True

    def give_back(self, user: str) -> None:
        """Return a slot taken by ``user``."""
        with self._lock:
            self._held[user] -= 1
            if self._held[user] <= 0:
                del self._held[user]


def has_body(environ: dict[str, object]) -> bool:
    """Whether a request comes with a body (a length above 0, or chunked)."""
    length = str(environ.get("CONTENT_LENGTH") or "0")
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    return chunked or (length.isdigit() and int(length) > 0)
