"""How many SFTP handles the whole server, and each user, may hold at once.

Each SFTP channel has its own cap (``max_handles``), but a user may open many channels
on many connections, and every open file is a descriptor of this one process: without
a shared cap, one user (read-only ones too) could take every descriptor the process may
have and lock everyone out, new connections included. OpenSSH's sftp-server runs a
process per session, each with its own descriptor limit.

The budget is only touched on the event loop, so it needs no lock.
"""

from __future__ import annotations

import errno
import resource
from collections import Counter


class HandleBudget:
    """Handles held (or being opened) per user, within a total and a per-user cap."""

    def __init__(self, total: int, per_user: int) -> None:
        self.total = total
        self.per_user = per_user
        self._held: Counter[str] = Counter()
        self._all = 0

    @classmethod
    def for_this_process(cls) -> HandleBudget:
        """Half the process's descriptors for handles (the rest stays for connections,
        web requests and the server's own files), a quarter of those for one user."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        total = max(64, (soft if soft != resource.RLIM_INFINITY else 1 << 20) // 2)
        return cls(total, max(16, total // 4))

    def take(self, user: str) -> None:
        """Count one more handle for ``user``, or EMFILE when a cap is reached."""
        if self._held[user] >= self.per_user:
            raise OSError(
                errno.EMFILE, f"Too many open handles for this user (at most {self.per_user})"
            )
        if self._all >= self.total:
            raise OSError(errno.EMFILE, "Too many open handles on the server; try again later")
        self._held[user] += 1
        self._all += 1

    def give(self, user: str, count: int = 1) -> None:
        """Count ``count`` handles of ``user`` as closed."""
        self._held[user] -= count
        self._all -= count
        if self._held[user] <= 0:
            del self._held[user]

    def held(self, user: str | None = None) -> int:
        """Handles held by ``user``, or by everyone."""
        return self._all if user is None else self._held[user]
