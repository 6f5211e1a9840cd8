"""Long jobs shared fairly between users, and stopped when their client goes away.

Hashing a file, copying one with copy-data or computing a digest can take minutes (a
sparse file of 1 TiB hashes for half an hour). Such jobs run on a few threads of their
own, never on the pool that answers every short request, and each user may have only
``per_user`` of them running at once: the rest wait their turn without holding a
thread. A user who starts 70 hashes and goes away therefore holds at most
``per_user`` threads, and only until the running jobs see that their client is gone.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class FairShare:
    """At most ``per_user`` long jobs per user at once."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._gates: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}  # jobs running or waiting, per user

    @asynccontextmanager
    async def slot(self, user: str) -> AsyncIterator[None]:
        """Wait (on the event loop, without a thread) for one of the user's slots."""
        gate = self._gates.setdefault(user, asyncio.Semaphore(self.per_user))
        self._users[user] = self._users.get(user, 0) + 1
        try:
            async with gate:
                yield
        finally:
            self._users[user] -= 1
            if not self._users[user]:
                del self._users[user]
                del self._gates[user]


def gone_error() -> OSError:
    """What a long job raises when its client has gone away."""
    return OSError(errno.ECANCELED, "the client went away")


Cancelled = Callable[[], bool]
