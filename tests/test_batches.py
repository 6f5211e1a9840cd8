"""The batched worker hand-off of SFTP WRITEs: order, results, errors, long queues."""

from __future__ import annotations

import asyncio
import threading

import pytest

from hoody_mount.ssh.batches import MAX_BATCH, Batches
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
