"""The SFTP request pipeline: concurrency only where order cannot be observed."""

from __future__ import annotations

from hoody_mount.ssh.pipeline import (
    AFTER_WRITES,
    BARRIER,
    READ,
    WRITE,
    Pipeline,
    Span,
    classify,
)

READ_TYPE, WRITE_TYPE = 5, 6


def _request(kind: int, handle: bytes, offset: int, length: int) -> bytes:
    return (
        bytes([kind]) + (7).to_bytes(4, "big") + len(handle).to_bytes(4, "big") + handle
        + offset.to_bytes(8, "big") + length.to_bytes(4, "big")
    )  # fmt: skip


def test_classify() -> None:
    """READ and WRITE get their span; anything else, or a short packet, is a barrier."""
    assert classify(_request(READ_TYPE, b"h1", 100, 50), READ_TYPE, WRITE_TYPE) == (
        READ, Span(b"h1", 100, 150)
    )  # fmt: skip
    assert classify(_request(WRITE_TYPE, b"h", 0, 8) + b"data", READ_TYPE, WRITE_TYPE) == (
        WRITE, Span(b"h", 0, 8)
    )  # fmt: skip
    assert classify(b"\x03\x00\x00\x00\x01", READ_TYPE, WRITE_TYPE) == (BARRIER, None)
    assert classify(b"\x05\x00\x00\x00\x01\x00", READ_TYPE, WRITE_TYPE) == (BARRIER, None)
    setstat = b"\x09\x00\x00\x00\x01"
    assert classify(setstat, READ_TYPE, WRITE_TYPE, frozenset({9})) == (AFTER_WRITES, None)
    assert classify(setstat, READ_TYPE, WRITE_TYPE) == (BARRIER, None)


def test_a_barrier_after_writes_joins_running_writes_only() -> None:
    """AFTER_WRITES starts at once when idle or while WRITEs run (the caller queues it
    behind them), never while READs or a barrier run; once started, nothing joins it."""
    pipe = Pipeline()
    assert pipe.admits(AFTER_WRITES, None)
    w1, w2 = Span(b"h", 0, 10), Span(b"h", 10, 20)
    pipe.started(WRITE, w1)
    pipe.started(WRITE, w2)
    assert pipe.admits(AFTER_WRITES, None)
    pipe.started(AFTER_WRITES, None)
    for kind, span in ((WRITE, Span(b"h", 20, 30)), (READ, w1), (BARRIER, None)):
        assert not pipe.admits(kind, span)
    assert not pipe.admits(AFTER_WRITES, None)
    pipe.finished(w1)
    pipe.finished(w2)
    assert not pipe.idle and not pipe.admits(WRITE, Span(b"h", 20, 30))
    pipe.finished(None)
    assert pipe.idle
    pipe.started(READ, w1)
    assert not pipe.admits(AFTER_WRITES, None)
    pipe.finished(w1)
    pipe.started(BARRIER, None)
    assert not pipe.admits(AFTER_WRITES, None)


def test_a_barrier_after_writes_waits_at_the_limit() -> None:
    """With as many WRITEs running as the pipeline allows, AFTER_WRITES waits too."""
    pipe = Pipeline(limit=2)
    spans = [Span(b"h", 0, 10), Span(b"h", 10, 20)]
    for span in spans:
        pipe.started(WRITE, span)
    assert not pipe.admits(AFTER_WRITES, None)
    pipe.finished(spans[0])
    assert pipe.admits(AFTER_WRITES, None)


def test_reads_run_together_and_a_barrier_runs_alone() -> None:
    """Reads join running reads; a barrier waits for them, and nothing joins a barrier."""
    pipe = Pipeline()
    r1, r2 = Span(b"h", 0, 10), Span(b"h", 10, 20)
    assert pipe.idle and pipe.admits(READ, r1)
    pipe.started(READ, r1)
    assert pipe.admits(READ, r2)
    pipe.started(READ, r2)
    assert not pipe.admits(BARRIER, None)
    assert not pipe.admits(WRITE, Span(b"h", 100, 110))  # reads and writes never mix
    pipe.finished(r1)
    assert not pipe.admits(BARRIER, None) and not pipe.idle
    pipe.finished(r2)
    assert pipe.idle and pipe.admits(BARRIER, None)
    pipe.started(BARRIER, None)
    for kind, span in ((BARRIER, None), (READ, r1), (WRITE, Span(b"h", 0, 1))):
        assert not pipe.admits(kind, span)
    pipe.finished(None)
    assert pipe.idle


def test_writes_run_together_unless_they_overlap() -> None:
    """Writes to distinct bytes (or other files) run together; an overlapping one waits."""
    pipe = Pipeline()
    w1 = Span(b"h", 0, 10)
    pipe.started(WRITE, w1)
    assert pipe.admits(WRITE, Span(b"h", 10, 20))  # adjacent, not overlapping
    assert pipe.admits(WRITE, Span(b"other", 0, 10))
    assert not pipe.admits(WRITE, Span(b"h", 5, 15))
    assert not pipe.admits(READ, Span(b"h", 50, 60))  # a read waits for the writes
    pipe.finished(w1)
    assert pipe.admits(WRITE, Span(b"h", 5, 15))


def test_writes_inside_the_reach_of_a_run_are_compared_one_by_one() -> None:
    """Writes beyond all running ones are admitted at once; one that lands between them
    is compared with each (a gap may be filled, an overlap may not); an idle pipeline
    forgets the run."""
    pipe = Pipeline()
    w1, w2 = Span(b"h", 20, 30), Span(b"h", 0, 10)  # the second lies below the first
    for span in (w1, w2):
        assert pipe.admits(WRITE, span)
        pipe.started(WRITE, span)
    assert pipe.admits(WRITE, Span(b"h", 30, 40)) and pipe.admits(WRITE, Span(b"h", -5, 0))
    assert not pipe.admits(WRITE, Span(b"h", -5, 5))
    assert pipe.admits(WRITE, Span(b"h", 10, 20))  # the gap between them
    assert not pipe.admits(WRITE, Span(b"h", 25, 35))
    assert not pipe.admits(WRITE, Span(b"h", 5, 25))
    pipe.finished(w1)
    assert pipe.admits(WRITE, Span(b"h", 15, 25))  # w1 is done, though the reach holds it
    assert not pipe.admits(WRITE, Span(b"h", 5, 15))
    pipe.finished(w2)
    assert pipe.idle and not pipe._reach  # a new run starts with nothing in reach


def test_at_most_the_limit_run_at_once() -> None:
    """The limit caps how many requests run; a finished one makes room."""
    pipe = Pipeline(limit=3)
    spans = [Span(b"h", i, i + 1) for i in range(3)]
    for span in spans:
        assert pipe.admits(READ, span)
        pipe.started(READ, span)
    assert not pipe.admits(READ, Span(b"h", 9, 10))
    pipe.finished(spans[1])
    assert pipe.admits(READ, Span(b"h", 9, 10))
