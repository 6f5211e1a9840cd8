"""The SFTP request pipeline: concurrency only where order cannot be observed."""

from __future__ import annotations

import asyncio

from hoody_mount.ssh.pipeline import BARRIER, READ, WRITE, Pipeline, Span, classify

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


def test_order_is_kept_around_barriers() -> None:
    """Reads overlap each other; a barrier starts only after them and runs alone."""
    events: list[str] = []

    async def job(name: str, delay: float) -> None:
        events.append(f"start {name}")
        await asyncio.sleep(delay)
        events.append(f"end {name}")

    async def scenario() -> None:
        pipe = Pipeline()
        await pipe.submit(READ, Span(b"h", 0, 10), lambda: job("r1", 0.05))
        await pipe.submit(READ, Span(b"h", 10, 20), lambda: job("r2", 0.01))
        await pipe.submit(BARRIER, None, lambda: job("close", 0.01))
        await pipe.submit(WRITE, Span(b"h", 0, 10), lambda: job("w1", 0.03))
        await pipe.submit(WRITE, Span(b"h", 5, 15), lambda: job("w2", 0.01))  # overlaps w1
        await pipe.drain()

    asyncio.run(scenario())
    assert events.index("start r2") < events.index("end r1")  # the reads overlapped
    assert events.index("start close") > max(events.index("end r1"), events.index("end r2"))
    assert events.index("start w1") > events.index("end close")
    assert events.index("start w2") > events.index("end w1")  # overlapping writes in order


def test_reads_and_writes_never_mix() -> None:
    """A write waits for the reads before it, and a read for the writes before it."""
    events: list[str] = []

    async def job(name: str) -> None:
        events.append(f"start {name}")
        await asyncio.sleep(0.01)
        events.append(f"end {name}")

    async def scenario() -> None:
        pipe = Pipeline()
        await pipe.submit(READ, Span(b"a", 0, 1), lambda: job("r"))
        await pipe.submit(WRITE, Span(b"b", 0, 1), lambda: job("w"))
        await pipe.submit(READ, Span(b"a", 0, 1), lambda: job("r2"))
        await pipe.drain()

    asyncio.run(scenario())
    assert events == ["start r", "end r", "start w", "end w", "start r2", "end r2"]
