"""The batched worker hand-off of SFTP WRITEs: order, results, errors, long queues."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from hoody_mount.core.open_files import OpenFile, ShortWrite
from hoody_mount.ssh.batches import MAX_BATCH, Batches, Write
from hoody_mount.workers import Workers


def test_calls_run_in_order_off_the_loop_with_results_and_errors() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        order: list[int] = []
        threads: set[int] = set()

        def call(n: int) -> int:
            threads.add(threading.get_ident())
            order.append(n)
            if n == 7:
                raise OSError(28, "No space left on device")
            return n * 10

        with Workers(4) as pool:
            batches = Batches(pool, loop)
            count = 3 * MAX_BATCH + 5  # several batches
            futures = [batches.run(lambda n=n: call(n)) for n in range(count)]
            results = await asyncio.gather(*futures, return_exceptions=True)
            # Queued while idle again: a new batch starts.
            assert await batches.run(lambda: 42) == 42
        assert order == list(range(count))
        assert threading.get_ident() not in threads
        for n, result in enumerate(results):
            if n == 7:
                assert isinstance(result, OSError) and result.errno == 28
            else:
                assert result == n * 10

    asyncio.run(body())


def test_a_cancelled_request_does_not_break_the_others() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        gate = threading.Event()
        with Workers(2) as pool:
            batches = Batches(pool, loop)
            first = batches.run(gate.wait)
            second = batches.run(lambda: "second")
            first.cancel()
            gate.set()
            assert await second == "second"
            with pytest.raises(asyncio.CancelledError):
                await first

    asyncio.run(body())


class _File:
    """Records the joined writes it gets; refuses any that reaches ``full_at``."""

    def __init__(self, full_at: int | None = None) -> None:
        self.calls: list[tuple[int, int]] = []  # (offset, number of pieces)
        self.data = bytearray()
        self.full_at = full_at

    def write_many(self, file: _File, offset: int, pieces: list[memoryview]) -> None:
        assert file is self
        self.calls.append((offset, len(pieces)))
        joined = b"".join(pieces)
        room = len(joined) if self.full_at is None else max(0, self.full_at - offset)
        self.data.extend(bytes(max(0, offset - len(self.data))))  # a hole reads as zeros
        self.data[offset : offset + min(room, len(joined))] = joined[:room]
        if room < len(joined):
            raise ShortWrite(room, OSError(28, "No space left on device"))


def _writes(batches: Batches, file: _File, spans: list[tuple[int, bytes]]) -> list[asyncio.Future]:
    return [
        batches.run(Write(file, offset, memoryview(data), file.write_many))
        for offset, data in spans
    ]


def test_writes_that_continue_one_another_are_written_together() -> None:
    """Queued behind a running batch, WRITEs that continue one another in one file go to
    the file in one call; a gap, another file or another kind of call ends the run."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        gate = threading.Event()
        one, two = _File(), _File()
        with Workers(2) as pool:
            batches = Batches(pool, loop)
            blocker = batches.run(gate.wait)  # the rest queue up behind it
            first = _writes(batches, one, [(0, b"aa"), (2, b"bb"), (4, b"cc")])
            gap = _writes(batches, one, [(10, b"dd"), (12, b"ee")])
            other = _writes(batches, two, [(14, b"ff")])  # continues, but another file
            barrier = batches.run(lambda: "stat")
            last = _writes(batches, one, [(14, b"gg"), (16, b"hh")])
            gate.set()
            await blocker
            results = await asyncio.gather(*first, *gap, *other, barrier, *last)
        assert results == [None] * 6 + ["stat", None, None]
        assert one.calls == [(0, 3), (10, 2), (14, 2)]
        assert two.calls == [(14, 1)]
        assert bytes(one.data) == b"aabbcc\0\0\0\0ddeegghh"

    asyncio.run(body())


def test_a_joined_write_that_fails_gives_each_write_its_own_result() -> None:
    """The disk fills at byte 5 of a joined write: the two WRITEs before succeed, the one
    it stopped in fails, the one after is run alone and fails too; no byte twice."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        gate = threading.Event()
        file = _File(full_at=5)
        with Workers(2) as pool:
            batches = Batches(pool, loop)
            blocker = batches.run(gate.wait)
            writes = _writes(batches, file, [(0, b"ab"), (2, b"cd"), (4, b"ef"), (6, b"gh")])
            gate.set()
            await blocker
            results = await asyncio.gather(*writes, return_exceptions=True)
        assert results[:2] == [None, None]
        assert all(isinstance(r, OSError) and r.errno == 28 for r in results[2:])
        assert file.calls == [(0, 4), (6, 1)]
        assert bytes(file.data) == b"abcde\0"

    asyncio.run(body())


def test_a_long_run_of_writes_is_cut_at_the_batch_size() -> None:
    """A run longer than MAX_BATCH is written in several calls, all bytes in place."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        gate = threading.Event()
        file = _File()
        count = 2 * MAX_BATCH + 3
        with Workers(2) as pool:
            batches = Batches(pool, loop)
            blocker = batches.run(gate.wait)
            writes = _writes(batches, file, [(4 * n, b"%04d" % n) for n in range(count)])
            gate.set()
            await blocker
            await asyncio.gather(*writes)
        assert all(pieces <= MAX_BATCH for _, pieces in file.calls)
        assert sum(pieces for _, pieces in file.calls) == count
        assert bytes(file.data) == b"".join(b"%04d" % n for n in range(count))

    asyncio.run(body())


def test_an_append_handle_never_gets_a_byte_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an O_APPEND file a failed joined write is not written again: the kernel takes
    3 bytes, then the disk is full. The first WRITE succeeds, the rest fail, and the
    file holds those 3 bytes once."""
    real = os.pwritev
    calls: list[int] = []

    def filling(fd: int, buffers: list[memoryview], offset: int) -> int:
        calls.append(sum(len(b) for b in buffers))
        if len(calls) == 1:
            return real(fd, [b"".join(bytes(b) for b in buffers)[:3]], offset)
        raise OSError(28, "No space left on device")

    path = tmp_path / "log.txt"
    path.write_bytes(b"old:")
    file = OpenFile(os.open(path, os.O_WRONLY | os.O_APPEND), "/log.txt")

    def write_many(target: OpenFile, offset: int, pieces: list[memoryview]) -> None:
        target.write_many(offset, pieces)

    async def body() -> list[object]:
        loop = asyncio.get_running_loop()
        gate = threading.Event()
        with Workers(2) as pool:
            batches = Batches(pool, loop)
            blocker = batches.run(gate.wait)
            writes = [
                batches.run(Write(file, offset, memoryview(data), write_many))
                for offset, data in [(0, b"ab"), (2, b"cd"), (4, b"ef")]
            ]
            monkeypatch.setattr(os, "pwritev", filling)
            gate.set()
            await blocker
            return await asyncio.gather(*writes, return_exceptions=True)

    try:
        results = asyncio.run(body())
    finally:
        file.close()
    assert results[0] is None
    assert all(isinstance(r, OSError) and r.errno == 28 for r in results[1:])
    assert calls == [6, 3, 2]  # joined; what was left of it; the last WRITE alone
    assert path.read_bytes() == b"old:abc"


def test_empty_writes_and_writes_ending_on_the_failure(tmp_path: Path) -> None:
    """Zero-length WRITEs succeed, alone, in a run or before another call; a run whose
    failure falls exactly where a WRITE starts fails that WRITE and those after it."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"")
    file = OpenFile(os.open(path, os.O_WRONLY), "/f.bin")

    def write_many(target: OpenFile, offset: int, pieces: list[memoryview]) -> None:
        target.write_many(offset, pieces)

    full = _File(full_at=4)

    async def body() -> tuple[list[object], list[object]]:
        loop = asyncio.get_running_loop()
        gate = threading.Event()
        with Workers(2) as pool:
            batches = Batches(pool, loop)
            alone = await batches.run(Write(file, 0, memoryview(b""), write_many))
            blocker = batches.run(gate.wait)
            spans = [(0, b""), (0, b""), (0, b"ab"), (2, b""), (2, b"cd")]
            run = [batches.run(Write(file, o, memoryview(d), write_many)) for o, d in spans]
            empty_then_stat = batches.run(Write(file, 4, memoryview(b""), write_many))
            stat = batches.run(lambda: "stat")
            edge = _writes(batches, full, [(0, b"ab"), (2, b"cd"), (4, b"ef"), (6, b"gh")])
            gate.set()
            await blocker
            first = await asyncio.gather(*run, empty_then_stat, stat)
            return [alone, *first], await asyncio.gather(*edge, return_exceptions=True)

    try:
        results, edge = asyncio.run(body())
    finally:
        file.close()
    assert results == [None] * 7 + ["stat"]
    assert path.read_bytes() == b"abcd"
    assert edge[:2] == [None, None]
    assert all(isinstance(r, OSError) and r.errno == 28 for r in edge[2:])
    assert full.calls == [(0, 4), (6, 1)]
    assert bytes(full.data).rstrip(b"\0") == b"abcd"  # (the fake pads a hole before failing)
