"""Running one SFTP session's WRITEs on the worker pool a batch at a time.

``run_in_executor`` costs a wake-up of a worker and a wake-up of the event loop for every
call, plus three futures. sshfs keeps 32 WRITEs in flight and OpenSSH's sftp 64, so the
event loop spent more on the hand-offs than the worker spent writing. Here the calls of
a session queue up; one worker takes all that are waiting, runs them in order, and hands
the results back in one ``call_soon_threadsafe``: a busy session pays one round trip per
batch instead of one per request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from ..workers import settle

T = TypeVar("T")
MAX_BATCH = 16  # results go back at least this often, so replies keep flowing

_Done = list[tuple["asyncio.Future[Any]", Any, Exception | None]]


class Batches:
    """Runs blocking calls in submission order, on one worker at a time, in batches."""

    def __init__(self, pool: Executor, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._waiting: deque[tuple[Callable[[], Any], asyncio.Future[Any]]] = deque()
        self._busy = False  # a batch is running (read and written on the loop only)

    def run(self, call: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``call``; the future gets its result or exception."""
        future: asyncio.Future[T] = self._loop.create_future()
        self._waiting.append((call, future))
        if not self._busy:
            self._busy = True
            self._pool.submit(self._run_batch)
        return future

    def _run_batch(self) -> None:
        """On a worker: run what is waiting, then report back to the loop."""
        done: _Done = []
        while self._waiting and len(done) < MAX_BATCH:
            call, future = self._waiting.popleft()
            try:
                done.append((future, call(), None))
            except Exception as exc:  # handed to the awaiting request
                done.append((future, None, exc))
        self._loop.call_soon_threadsafe(self._finish, done)

    def _finish(self, done: _Done) -> None:
        """On the loop: settle the futures; start the next batch if calls are waiting."""
        for future, result, exc in done:
            settle(future, result, exc)
        if self._waiting:
            self._pool.submit(self._run_batch)
        else:
            self._busy = False
