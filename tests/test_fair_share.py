"""Long jobs in slices, served in turn (issue 18): two users with endless jobs that
take every long-job thread no longer keep a third user's job waiting."""

from __future__ import annotations

import asyncio
import time

from hoody_mount.fair_share import FairShare


def test_a_third_users_job_runs_while_two_users_hold_every_thread() -> None:
    """Users a and b each run 2 endless jobs (4 threads, 2 per user at once); c's job
    of 3 slices ends within a few slices' time. Held whole (before slicing), the four
    jobs kept every thread until they ended, and c waited for them."""

    async def scenario() -> float:
        share = FairShare(per_user=2, threads=4)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        running = {"a": 0, "b": 0}

        async def endless(user: str) -> None:
            while not stop.is_set():
                async with share.slot(user):
                    running[user] += 1
                    await loop.run_in_executor(None, time.sleep, 0.05)  # one slice

        async def short(user: str) -> float:
            started = loop.time()
            for _ in range(3):
                async with share.slot(user):
                    await loop.run_in_executor(None, time.sleep, 0.05)
            return loop.time() - started

        hogs = [asyncio.create_task(endless(user)) for user in ("a", "a", "b", "b")]
        await asyncio.sleep(0.3)  # (every thread is taken by a and b)
        took = await asyncio.wait_for(short("c"), 10)
        stop.set()
        await asyncio.gather(*hogs)
        assert running["a"] > 3 and running["b"] > 3  # (they ran all along)
        return took

    took = asyncio.run(scenario())
    assert took < 5.0, took  # (liveness: c's job ended while a and b went on)


def test_one_user_has_at_most_its_share_of_slices_at_once() -> None:
    """A user's 10 jobs run 2 slices at a time, however many wait."""

    async def scenario() -> int:
        share = FairShare(per_user=2, threads=4)
        loop = asyncio.get_running_loop()
        now = 0
        most = 0

        async def job() -> None:
            nonlocal now, most
            async with share.slot("a"):
                now += 1
                most = max(most, now)
                await loop.run_in_executor(None, time.sleep, 0.02)
                now -= 1

        await asyncio.gather(*(job() for _ in range(10)))
        return most

    assert asyncio.run(scenario()) == 2
