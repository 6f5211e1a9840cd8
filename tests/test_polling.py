"""The event loop's selector polls a moment before it sleeps, never while a worker job the
loop waits for is out, never past a timer; and the worker pool says when it is quiet."""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
import time
from pathlib import Path

import pytest

from hoody_mount.config import ConfigError, load
from hoody_mount.polling import PollingSelector
from hoody_mount.workers import Workers


def _cpu_while(selector: PollingSelector, timeout: float) -> tuple[float, float, list[object]]:
    """This thread's CPU time and the wall time of one ``select``, and what it returned."""
    cpu, wall = time.thread_time(), time.monotonic()
    ready = selector.select(timeout)
    return time.thread_time() - cpu, time.monotonic() - wall, list(ready)


@pytest.fixture
def pair() -> tuple[socket.socket, socket.socket]:
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def test_it_polls_before_sleeping_when_quiet(pair: tuple[socket.socket, socket.socket]) -> None:
    selector = PollingSelector(0.2)
    selector.register(pair[0], selectors.EVENT_READ)
    _, wall, ready = _cpu_while(selector, 0.5)
    assert ready == []
    assert 0.45 < wall < 10.0  # (it slept its timeout; then liveness)
    # it looked again and again before it slept (its CPU time is no measure: it yields
    # to every runnable thread between looks, and on a busy machine it gets little)
    assert selector.polls > 2, selector.polls
    selector.close()


def test_it_sleeps_at_once_while_a_job_is_out(pair: tuple[socket.socket, socket.socket]) -> None:
    selector = PollingSelector(0.2, quiet=lambda: False)
    selector.register(pair[0], selectors.EVENT_READ)
    cpu, wall, ready = _cpu_while(selector, 0.5)
    assert ready == [] and 0.45 < wall < 10.0  # (as above)
    assert selector.polls == 0, f"polled {selector.polls} times although a worker needed the GIL"
    assert cpu < 0.02, f"polled ({cpu:.3f} s of CPU) although a worker needed the GIL"
    selector.close()


def test_events_and_timers_are_on_time(pair: tuple[socket.socket, socket.socket]) -> None:
    # (a spin of 5 s: returning in 3 s proves the select did not spin it out, with room
    # for a loaded machine; it returned in 0.05 s alone)
    selector = PollingSelector(5.0)
    selector.register(pair[0], selectors.EVENT_READ)
    _, wall, ready = _cpu_while(selector, 0.05)  # a timer due before the spin would end
    assert ready == [] and wall < 3.0
    sender = threading.Timer(0.05, pair[1].send, (b"x",))
    sender.start()
    _, wall, ready = _cpu_while(selector, 5.0)
    sender.join()
    assert len(ready) == 1 and wall < 3.0
    pair[0].recv(1)
    threading.Timer(0.3, pair[1].send, (b"y",)).start()  # after the spin: found asleep
    selector.spin = 0.05
    _, wall, ready = _cpu_while(selector, 5.0)
    assert len(ready) == 1 and 0.25 < wall < 4.5  # (woken by the event, not the timeout)
    selector.close()


def test_an_event_loop_runs_on_it() -> None:
    selector = PollingSelector(0.001)
    loop = asyncio.SelectorEventLoop(selector)
    try:
        assert loop.run_until_complete(asyncio.sleep(0.01, "done")) == "done"
    finally:
        loop.close()


def test_workers_are_quiet_when_no_posted_job_is_out() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        with Workers(2) as pool:
            assert pool.quiet()
            gate = threading.Event()
            running = pool.call(loop, gate.wait, 5)
            await asyncio.sleep(0.05)
            assert not pool.quiet()
            gate.set()
            assert await running is True
            assert pool.quiet()  # settled before the loop heard of the result
            with pytest.raises(OSError):
                await pool.call(loop, _fail)
            assert pool.quiet()
            pool.submit(time.sleep, 0.2)  # fire and forget: nothing the loop waits for
            assert pool.quiet()

    asyncio.run(body())


def _fail() -> None:
    raise OSError("no")


@pytest.mark.parametrize("value", [-1, 10_001, "200"])
def test_busy_poll_must_be_a_sane_number(tmp_path: Path, value: object) -> None:
    config = tmp_path / "c.toml"
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    config.write_text(f'root = "."\n[ssh]\nbusy_poll_us = {text}\n')
    with pytest.raises(ConfigError, match="busy_poll_us"):
        load(config)


USER = "[users.root]\n"


def test_busy_poll_defaults_and_can_be_off(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('root = "."\n' + USER)
    assert load(config).ssh_limits.busy_poll_us == 200
    config.write_text('root = "."\n[ssh]\nbusy_poll_us = 0\n' + USER)
    assert load(config).ssh_limits.busy_poll_us == 0
