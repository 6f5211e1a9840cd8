"""Turns: a bounded number of threads run at once, handed over first come, first served."""

from __future__ import annotations

import threading
import time

import pytest

from hoody_mount.core.turns import Turns, stepped_aside


def _wait_until(check: object, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_at_most_count_hold_a_turn_and_the_others_queue_in_order() -> None:
    turns = Turns(2)
    order: list[int] = []
    leave = [threading.Event() for _ in range(6)]

    def worker(n: int) -> None:
        with turns.held():
            order.append(n)
            leave[n].wait(10)

    threads = []
    for n in range(6):
        thread = threading.Thread(target=worker, args=(n,))
        thread.start()
        threads.append(thread)
        _wait_until(lambda n=n: len(order) == n + 1 if n < 2 else turns.waiting() == n - 1)
    assert order == [0, 1] and turns.waiting() == 4
    for n in range(4):  # each one leaving lets the next in line in, and only that one
        leave[n].set()
        _wait_until(lambda n=n: len(order) == n + 3)
        assert order == list(range(n + 3))
        assert turns.waiting() == 3 - n
    for event in leave:
        event.set()
    for thread in threads:
        thread.join(10)


def test_a_thread_that_steps_aside_lets_a_waiting_one_in_then_queues_behind_it() -> None:
    turns = Turns(1)
    events: list[str] = []
    second_in = threading.Event()
    go_on = threading.Event()

    def first() -> None:
        with turns.held():
            events.append("first in")
            _wait_until(lambda: turns.waiting() == 1)
            with stepped_aside():
                events.append("first aside")
                second_in.wait(10)
                go_on.wait(10)
            events.append("first back")

    def second() -> None:
        with turns.held():
            events.append("second in")
            second_in.set()
            _wait_until(lambda: turns.waiting() == 1)  # the first queues behind us
            events.append("second out")

    a = threading.Thread(target=first)
    a.start()
    _wait_until(lambda: events == ["first in"])
    b = threading.Thread(target=second)
    b.start()
    second_in.wait(10)
    go_on.set()
    a.join(10)
    b.join(10)
    assert events == ["first in", "first aside", "second in", "second out", "first back"]


def test_stepping_aside_without_a_turn_does_nothing_and_turns_are_not_nested() -> None:
    turns = Turns(1)
    with stepped_aside():
        pass
    with turns.held():
        with pytest.raises(RuntimeError), turns.held():
            pass
        assert turns.waiting() == 0
    with turns.held():  # the turn came back after all that
        pass
