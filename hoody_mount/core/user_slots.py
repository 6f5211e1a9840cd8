"""Bounded numbers of costly things per user at once, so that no user takes a server.

- Requests with a body (the web listener): a body holds a worker thread for as long as
  it takes to arrive; 40 uploads of one user sending a byte a second held every worker
  and the HTTP service stopped for everyone. Past a user's share (a quarter of the
  workers by default) a request is answered 503 with ``Retry-After`` before its body
  is read. Bodies that stall altogether are dropped by the intake's minimum rate.
- Digests of whole files (the file API): hashing a large file holds a worker for
  seconds or, for a sparse file of a terabyte, half an hour. Past a user's share, a
  download goes without its ``Repr-Digest`` and an explicit ``?sha256`` gets 503.
"""

from __future__ import annotations

import threading
from collections import Counter


class UserSlots:
    """Per-user counts of things in progress, at most ``per_user`` each."""

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
