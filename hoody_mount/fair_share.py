"""Long jobs shared fairly between users, and stopped when their client goes away.

Hashing a file or copying one with copy-data can take minutes (a sparse file of 1 TiB
hashes for half an hour). Such jobs run on a few threads of their own, never on the
pool that answers every short request, and they run in slices (``SLICE`` bytes): after
each, a job gives its thread back and queues again behind the others. Each user has
at most ``per_user`` slices queued or running, so the queue serves users in turn: a
user's next hash starts within a few slices whoever else is hashing (two users with
two endless hashes each held all four threads, and everyone else's waited for them),
and a user who starts 70 hashes and leaves holds nothing once the running slices end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

SLICE = 64 << 20  # bytes a long job handles before it queues again


class FairShare:
    """At most ``per_user`` slices per user at once, and ``threads`` in all, in turn."""

    def __init__(self, per_user: int, threads: int) -> None:
        self.per_user = per_user
        self._threads = asyncio.Semaphore(threads)  # (first come, first served)
        self._gates: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}  # jobs running or waiting, per user

    @asynccontextmanager
    async def slot(self, user: str) -> AsyncIterator[None]:
        """Wait (on the event loop, without a thread) for one of the user's slots and a
        thread's turn; hold them for one slice."""
        gate = self._gates.setdefault(user, asyncio.Semaphore(self.per_user))
        self._users[user] = self._users.get(user, 0) + 1
        try:
            async with gate, self._threads:
                yield
        finally:
            self._users[user] -= 1
            if not self._users[user]:
                del self._users[user]
                del self._gates[user]


Cancelled = Callable[[], bool]
