"""Running one SFTP session's WRITEs on the worker pool a batch at a time.

``run_in_executor`` costs a wake-up of a worker and a wake-up of the event loop for every
call, plus three futures. sshfs keeps 32 WRITEs in flight and OpenSSH's sftp 64, so the
event loop spent more on the hand-offs than the worker spent writing. Here the calls of
a session queue up; one worker takes all that are waiting, runs them in order, and hands
the results back in one ``call_soon_threadsafe``: a busy session pays one round trip per
batch instead of one per request.

WRITEs that continue one another in one file (a sequential upload) are written with one
``pwritev``. Each system call lets the event loop's thread take the GIL, and the worker
then waits for it to take it back: one call per batch instead of one per WRITE. If the
joined write fails, the WRITEs whose bytes were all written succeed, the one it
stopped in gets the error, and those after it run one by one: the results of
sequential WRITEs, and no byte written twice (which would repeat it on an append-only
handle).
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..core.open_files import ShortWrite
from ..workers import Workers, settle

T = TypeVar("T")
MAX_BATCH = 16  # results go back at least this often, so replies keep flowing

Done = Callable[[Any, "BaseException | None"], None]
Results = list[tuple[Done, Any, "BaseException | None"]]  # in order: a call's done, result, error


@dataclass(slots=True)
class Write:
    """A call that writes ``data`` at ``offset`` of ``file``; ``write_many(file, offset,
    pieces)`` writes several that continue one another."""

    file: object
    offset: int
    data: memoryview
    write_many: Callable[[Any, int, list[memoryview]], None]

    def __call__(self) -> None:
        try:
            self.write_many(self.file, self.offset, [self.data])
        except ShortWrite as stop:  # alone, the error is all there is to say
            raise stop.error from None

    def continued_by(self, other: Write) -> bool:
        """Whether ``other`` writes to the same file from where this one ends."""
        return other.file is self.file and other.offset == self.offset + len(self.data)


class Batches:
    """Runs blocking calls in submission order, on one worker at a time, in batches."""

    def __init__(self, pool: Workers, loop: asyncio.AbstractEventLoop) -> None:
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
            self._pool.post(self._loop, self._finish, self._run_batch)

    def _run_batch(self) -> Results:
        """On a worker: run what is waiting (at most ``MAX_BATCH``); the results go back
        to the loop together."""
        results: Results = []
        while self._waiting and len(results) < MAX_BATCH:
            call, done = self._waiting.popleft()
            if isinstance(call, Write) and self._waiting:
                results += self._run_writes(call, done, MAX_BATCH - len(results))
            else:
                results.append(_outcome(call, done))
        return results

    def _run_writes(self, first: Write, done: Done, limit: int) -> Results:
        """On a worker: ``first`` and the waiting Writes that continue it (``limit`` in
        all), written together."""
        group: list[tuple[Write, Done]] = [(first, done)]
        while self._waiting and len(group) < limit:
            call, next_done = self._waiting[0]
            if not isinstance(call, Write) or not group[-1][0].continued_by(call):
                break
            self._waiting.popleft()
            group.append((call, next_done))
        try:
            first.write_many(first.file, first.offset, [write.data for write, _ in group])
            return [(done, None, None) for _, done in group]
        except ShortWrite as stop:
            written, error = stop.written, stop.error
        except BaseException as exc:  # noqa: BLE001 - nothing written: the same for all
            return [(done, None, exc) for _, done in group]
        results: Results = []
        for index, (write, done) in enumerate(group):
            if written >= len(write.data):  # on the disk
                written -= len(write.data)
                results.append((done, None, None))
                continue
            results.append((done, None, error))  # alone, it would have failed the same
            results += [_outcome(call, done) for call, done in group[index + 1 :]]
            break
        return results

    def _finish(self, results: Results | None, error: BaseException | None) -> None:
        """On the loop: report the results; start the next batch if calls are waiting.
        A batch that never ran (dropped at shutdown) fails every waiting call."""
        if error is not None:
            self._busy = False
            waiting, self._waiting = list(self._waiting), deque()
            for _, done in waiting:
                done(None, error)
            return
        for done, result, exc in results or []:
            done(result, exc)
        if self._waiting:
            self._pool.post(self._loop, self._finish, self._run_batch)
        else:
            self._busy = False


def _outcome(call: Callable[[], Any], done: Done) -> tuple[Done, Any, BaseException | None]:
    """On a worker: run ``call``; its result or error, for ``done``."""
    try:
        return done, call(), None
    except BaseException as exc:  # noqa: BLE001 - handed to the request's callback
        return done, None, exc
