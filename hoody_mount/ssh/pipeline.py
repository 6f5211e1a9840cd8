"""Which SFTP requests of one channel may run at the same time.

Clients keep many READ or WRITE requests in flight (sshfs 32 KiB each, OpenSSH's sftp
64 at a time); answering them one by one leaves the disk and the worker threads idle
between requests. Here consecutive READs run together, and so do consecutive WRITEs
whose byte ranges do not overlap; any other request is a barrier: it waits for
everything before it, runs alone, and everything after it waits for it. So no request
can observe a later one, exactly as with strictly sequential processing.

``Pipeline`` only keeps the count; the channel asks ``admits`` for the request at the
head of its queue, and reports ``started`` and ``finished`` for those it hands to a
worker (a request answered on the spot never counts as running).

A SETSTAT or FSETSTAT right behind a file's WRITEs (sshfs sends one as soon as a file
is written, with its WRITEs still in flight) is a barrier too, but one that may start
while WRITEs run: it goes to the same worker queue, which runs calls in the order they
came, so it still runs after every WRITE before it and nothing after it starts until it
is done. That saves a hand-off to a worker and back per file.

A sequential upload keeps WRITEs running without a break, each beyond all the others:
for each file, the lowest and highest bytes written since the pipeline was last idle
admit such a WRITE at once; only one that lands inside them is compared with each
running WRITE.
"""

from __future__ import annotations

from dataclasses import dataclass

READ, WRITE, BARRIER = "read", "write", "barrier"
AFTER_WRITES = "after-writes"  # a barrier that may queue behind running WRITEs
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
    """The requests of one channel that are running, and whether another may join them."""

    def __init__(self, limit: int = MAX_IN_FLIGHT) -> None:
        self._limit = limit
        self._kind: str | None = None  # the kind of those running; None when idle
        self._spans: list[Span | None] = []
        self._reach: dict[bytes, tuple[int, int]] = {}  # per file, since last idle

    @property
    def idle(self) -> bool:
        """Whether nothing is running."""
        return self._kind is None

    def admits(self, kind: str, span: Span | None) -> bool:
        """Whether a request may start now, given those running."""
        if self._kind is None:
            return True
        if kind == AFTER_WRITES:
            return self._kind == WRITE and len(self._spans) < self._limit
        if kind != self._kind or kind == BARRIER or len(self._spans) >= self._limit:
            return False
        if kind == READ or span is None:
            return True
        reach = self._reach.get(span.handle)
        if reach is None or span.start >= reach[1] or span.end <= reach[0]:
            return True
        return not any(other is not None and span.overlaps(other) for other in self._spans)

    def started(self, kind: str, span: Span | None) -> None:
        """Count an admitted request as running."""
        self._kind = BARRIER if kind == AFTER_WRITES else kind
        self._spans.append(span)
        if kind == WRITE and span is not None:
            low, high = self._reach.get(span.handle, (span.start, span.end))
            self._reach[span.handle] = (min(low, span.start), max(high, span.end))

    def finished(self, span: Span | None) -> None:
        """A running request has finished."""
        self._spans.remove(span)
        if not self._spans:
            self._kind = None
            self._reach.clear()


def classify(
    payload: bytes, read_type: int, write_type: int, after_writes: frozenset[int] = frozenset()
) -> tuple[str, Span | None]:
    """The kind of a raw SFTP request (type byte first) and, for READ/WRITE, its span.
    Requests of the ``after_writes`` types are AFTER_WRITES: the caller runs them on the
    queue that runs the WRITEs."""
    kind = READ if payload[0] == read_type else WRITE if payload[0] == write_type else BARRIER
    if kind == BARRIER:
        return (AFTER_WRITES if payload[0] in after_writes else BARRIER), None
    handle_len = int.from_bytes(payload[5:9], "big")
    at = 9 + handle_len
    if len(payload) < at + 12:
        return BARRIER, None  # malformed: let the ordinary path report it
    handle = payload[9:at]
    offset = int.from_bytes(payload[at : at + 8], "big")
    length = int.from_bytes(payload[at + 8 : at + 12], "big")
    return kind, Span(handle, offset, offset + length)
