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
import functools
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from ..workers import settle

T = TypeVar("T")
MAX_BATCH = 16  # results go back at least this often, so replies keep flowing

Done = Callable[[Any, "BaseException | None"], None]


class Batches:
    """Runs blocking calls in submission order, on one worker at a time, in batches."""

    def __init__(self, pool: Executor, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._waiting: deque[tuple[Callable[[], Any], Done]] = deque()
        self._busy = False  # a batch is running (read and written on the loop only)

    def run(self, call: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``call``; the future gets its result or exception."""
        future: asyncio.Future[T] = self._loop.create_future()
        self.post(call, functools.partial(settle, future))
        return future

    def post(self, call: Callable[[], Any], done: Done) -> None:
        """Queue ``call``; ``done(result, error)`` runs on the loop when it has run."""
        self._waiting.append((call, done))
        if not self._busy:
            self._busy = True
            self._pool.submit(self._run_batch)

    def _run_batch(self) -> None:
        """On a worker: run what is waiting, then report back to the loop."""
        results: list[tuple[Done, Any, Exception | None]] = []
        while self._waiting and len(results) < MAX_BATCH:
            call, done = self._waiting.popleft()
            try:
                results.append((done, call(), None))
            except Exception as exc:  # handed to the request's callback
                results.append((done, None, exc))
        self._loop.call_soon_threadsafe(self._finish, results)

    def _finish(self, results: list[tuple[Done, Any, Exception | None]]) -> None:
        """On the loop: report the results; start the next batch if calls are waiting."""
        for done, result, exc in results:
            done(result, exc)
        if self._waiting:
            self._pool.submit(self._run_batch)
        else:
            self._busy = False
