"""The HTTP worker threads, shared fairly between clients.

A worker serves one request from its head to the last byte of its answer, so a client
that reads its downloads slowly (or not at all) holds a worker for as long as it
likes: 10 slow downloads of one read-only user held all 8 workers of a server, and
no one else got an answer for a minute. Each client (a user, or an address before it
has logged in) has a share of the workers, a quarter of them. It may go beyond its
share while more than a reserve (another quarter) of the workers is free, so a lone
client still has the whole server; past both, its request is answered 503 with
``Retry-After`` at once. Clients within their share always get in: the reserve is
theirs.
"""

from __future__ import annotations

import threading
from collections import Counter


class WorkerShare:
    """Counts of requests in progress, per client and in all."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.share = max(2, threads // 4)
        self.reserve = max(1, threads // 4)
        self._lock = threading.Lock()
        self._busy = 0
        self._held: Counter[str] = Counter()

    def take(self, client: str) -> bool:
        """Take a worker for one of ``client``'s requests; False when it may not."""
        with self._lock:
            beyond = self._held[client] >= self.share
            if beyond and self._busy >= self.threads - self.reserve:
                return False
            self._held[client] += 1
            self._busy += 1
            return True

    def give_back(self, client: str) -> None:
        """The request is done (its answer sent, or given up)."""
        with self._lock:
            self._busy -= 1
            self._held[client] -= 1
            if self._held[client] <= 0:
                del self._held[client]
