"""Running SFTP requests of one channel concurrently, with the results of running them in
order.

Clients keep many READ or WRITE requests in flight (sshfs 32 KiB each, OpenSSH's sftp
64 at a time); answering them one by one leaves the disk and the worker threads idle
between requests. Here consecutive READs run together, and so do consecutive WRITEs
whose byte ranges do not overlap; any other request is a barrier: it waits for
everything before it, runs alone, and everything after it waits for it. So no request
can observe a later one, exactly as with strictly sequential processing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

READ, WRITE, BARRIER = "read", "write", "barrier"
MAX_IN_FLIGHT = 32


@dataclass(frozen=True, slots=True)
class Span:
    """The bytes a READ or WRITE touches in one open file."""

    handle: bytes
    start: int
    end: int

    def overlaps(self, other: Span) -> bool:
        return self.handle == other.handle and self.start < other.end and other.start < self.end


class Pipeline:
    """Admits requests in arrival order and runs those that may overlap concurrently."""

    def __init__(self, limit: int = MAX_IN_FLIGHT) -> None:
        self._limit = limit
        self._kind: str | None = None
        self._tasks: dict[asyncio.Task[None], Span | None] = {}

    async def submit(
        self, kind: str, span: Span | None, run: Callable[[], Awaitable[None]]
    ) -> None:
        """Start ``run`` once it may run; return as soon as it has started (or finished,
        for a barrier), so the caller reads the next request only then."""
        if kind == BARRIER:
            await self.drain()
            await run()
            return
        if self._kind != kind or len(self._tasks) >= self._limit or (
            kind == WRITE and span is not None and any(
                other is not None and span.overlaps(other) for other in self._tasks.values()
            )
        ):  # fmt: skip
            await self.drain()
        self._kind = kind
        task = asyncio.ensure_future(run())
        self._tasks[task] = span
        task.add_done_callback(self._tasks.pop)

    @property
    def writing(self) -> bool:
        """Whether WRITEs are in flight (so a READ must wait for them)."""
        return self._kind == WRITE

    async def drain(self) -> None:
        """Wait until every started request has finished."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        self._kind = None


def classify(payload: bytes, read_type: int, write_type: int) -> tuple[str, Span | None]:
    """The kind of a raw SFTP request (type byte first) and, for READ/WRITE, its span."""
    kind = READ if payload[:1] == bytes([read_type]) else WRITE if (
        payload[:1] == bytes([write_type])
    ) else BARRIER  # fmt: skip
    if kind == BARRIER:
        return BARRIER, None
    try:
        handle_len = int.from_bytes(payload[5:9], "big")
        at = 9 + handle_len
        handle = payload[9:at]
        offset = int.from_bytes(payload[at : at + 8], "big")
        length = int.from_bytes(payload[at + 8 : at + 12], "big")
    except (IndexError, ValueError):
        return BARRIER, None
    if len(payload) < at + 12:
        return BARRIER, None  # malformed: let the ordinary path report it
    return kind, Span(handle, offset, offset + length)
