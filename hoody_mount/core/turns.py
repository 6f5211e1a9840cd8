"""How many HTTP workers run Python at once: a few, in turn, so SSH keeps its speed.

All fronts share one process and so one GIL. With 16 busy HTTP clients, 16 workers
wanted the GIL at every switch, and the event loop that serves every SSH client got it
a sixteenth of the time: one SFTP client beside them did 30 operations a second
instead of 346. CPython gives threads no priorities, so the HTTP workers take turns
instead: at most ``count`` of them serve a request at once, and each gives its turn
back while it waits on the network (a body's next bytes, a slow reader's window), so
a slow client never holds one. Waiting workers queue first come, first served: a
worker that gives its turn back behind others queues behind them (each send of an
answer is a turn), so a long answer never keeps the short ones waiting. On two CPUs a
few workers run Python as fast as 32 do; the others wait off the GIL.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_held = threading.local()  # .turns: the Turns whose turn this thread holds, if any


class Turns:
    """``count`` turns, handed to waiting threads in the order they asked."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._lock = threading.Lock()
        self._waiting: deque[threading.Lock] = deque()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold a turn for the block (waiting for one first)."""
        if getattr(_held, "turns", None) is not None:
            raise RuntimeError("this thread holds a turn already")
        self._take()
        _held.turns = self
        try:
            yield
        finally:
            _held.turns = None
            self._give()

    def _take(self) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            handed = threading.Lock()
            handed.acquire()
            self._waiting.append(handed)
        handed.acquire()  # released by ``_give``: the turn is ours

    def _give(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().release()  # straight to the first in line
            else:
                self._free += 1

    def waiting(self) -> int:
        """How many threads wait for a turn now."""
        return len(self._waiting)


@contextmanager
def stepped_aside() -> Iterator[None]:
    """Give this thread's turn back for the block (a wait on the network), and queue
    for one after it. Without a turn held, nothing happens."""
    turns: Turns | None = getattr(_held, "turns", None)
    if turns is None:
        yield
        return
    _held.turns = None
    turns._give()
    try:
        yield
    finally:
        turns._take()
        _held.turns = turns


def without_turn(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` stepped aside: a long job whose time goes to the disk or to C
    code (a copy, a hash, a tree's removal) holds no turn while it runs."""

    @wraps(function)
    def stepping_aside(*args: P.args, **kwargs: P.kwargs) -> R:
        with stepped_aside():
            return function(*args, **kwargs)

    return stepping_aside
