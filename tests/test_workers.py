"""The worker threads: results and errors reach the loop, threads start only when needed
and stay few, a deep queue never blocks the caller, and shutdown ends everything."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from hoody_mount.workers import Workers


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_call_returns_results_and_raises_errors() -> None:
    workers = Workers(4)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        assert await workers.call(loop, pow, 2, 10) == 1024
        with pytest.raises(FileNotFoundError):
            await workers.call(loop, os.stat, "/no/such/path")
        names = await asyncio.gather(
            *(workers.call(loop, lambda: threading.current_thread().name) for _ in range(50))
        )
        assert all(name.startswith("hoody-io-") for name in names)
        assert threading.current_thread().name not in names

    asyncio.run(body())
    workers.shutdown()


def test_submit_is_a_standard_executor() -> None:
    workers = Workers(2)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(workers, sum, [1, 2, 3]) == 6

    asyncio.run(body())
    assert workers.submit(str.upper, "x").result(timeout=5) == "X"
    failed = workers.submit(int, "not a number")
    with pytest.raises(ValueError):
        failed.result(timeout=5)
    workers.shutdown()
    with pytest.raises(RuntimeError):
        workers.submit(str, 1)


def test_threads_start_when_needed_and_never_exceed_the_limit() -> None:
    workers = Workers(3, "capped")
    before = threading.active_count()
    for _ in range(20):  # one after the other: one thread does them all
        workers.submit(time.sleep, 0).result(timeout=5)
    assert threading.active_count() - before == 1
    gate = threading.Event()
    running = []
    lock = threading.Lock()

    def wait() -> None:
        with lock:
            running.append(threading.current_thread().name)
        gate.wait(5)

    futures = [workers.submit(wait) for _ in range(10)]
    deadline = time.monotonic() + 5
    while len(running) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert len(running) == 3, "only as many jobs run at once as there are threads"
    assert threading.active_count() - before == 3
    gate.set()
    for future in futures:
        future.result(timeout=5)
    assert len(running) == 10
    workers.shutdown()
    assert threading.active_count() == before


def test_a_deep_queue_never_blocks_the_caller() -> None:
    """Far more queued jobs than a pipe holds bytes: posting stays instant."""
    workers = Workers(2)
    gate = threading.Event()
    blockers = [workers.submit(gate.wait, 300) for _ in range(2)]
    started = time.monotonic()
    futures = [workers.submit(int, "7") for _ in range(100_000)]
    assert time.monotonic() - started < 120  # (blocked, it would wait for the gate: 300 s)
    gate.set()
    for future in blockers + futures[-10:]:
        future.result(timeout=30)
    assert all(f.result(timeout=30) == 7 for f in futures)
    workers.shutdown()


def test_shutdown_cancels_queued_jobs_and_releases_the_pipe() -> None:
    fds = _fds()
    workers = Workers(1)
    gate = threading.Event()
    blocker = workers.submit(gate.wait, 10)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        queued = workers.call(loop, int, "1")
        waiting = workers.submit(int, "2")
        await asyncio.sleep(0.05)
        workers.shutdown(wait=False, cancel_futures=True)
        assert waiting.cancelled()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(queued, 5)

    asyncio.run(body())
    assert blocker.result(timeout=5) is True
    deadline = time.monotonic() + 5
    while _fds() > fds and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _fds() == fds
    unused = Workers(4)
    unused.shutdown()
    assert _fds() == fds


def test_shutdown_after_the_loop_closed_drops_its_jobs_quietly() -> None:
    """A job posted from an event loop that has closed since (start-up failed, the pool
    is shut down last) is dropped without an error: nobody waits for it."""
    workers = Workers(1)
    gate, running = threading.Event(), threading.Event()

    def block() -> bool:
        running.set()
        return gate.wait(10)

    blocker = workers.submit(block)
    assert running.wait(10)  # (the job runs: shutdown cannot drop it as a queued one)
    futures = []

    async def body() -> None:
        futures.append(workers.call(asyncio.get_running_loop(), int, "1"))

    asyncio.run(body())  # the loop is closed when this returns
    workers.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert blocker.result(timeout=5) is True
    assert not futures[0].done()  # its loop is gone: nothing could complete it


def test_the_system_shows_each_worker_by_its_pool_name() -> None:
    """``top -H`` and /proc show a worker thread under its pool's name (tests count the
    server's threads outside its bounded pools by it)."""
    workers = Workers(2, "hoody-test")

    def comm() -> str:
        return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

    try:
        assert workers.submit(comm).result(timeout=30) == "hoody-test"
    finally:
        workers.shutdown()
