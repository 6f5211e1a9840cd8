"""The worker threads that run the blocking filesystem calls of the event loop.

A hand-off costs two thread wake-ups (loop to worker, worker to loop), and on a
virtual machine a wake-up that lands on another, idle CPU is slow: the standard
``ThreadPoolExecutor`` wakes its workers through a futex and measured about 95 µs per
round trip here. An idle worker here sleeps in ``read`` on a pipe instead. A pipe write
is a *synchronous* wake-up for the scheduler (the writer is about to sleep), so the
worker may run on the CPU the event loop is leaving, and the loop is woken back the
same way (asyncio's self-pipe): about 40 µs per round trip on the same machine. When
both threads have work, the scheduler still spreads them over the CPUs.

``call`` hands a job over and completes an asyncio future directly, skipping the
``concurrent.futures`` future and its wrapper that ``run_in_executor`` adds; ``submit``
keeps the standard ``Executor`` interface for everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from hoody_mount.core.syscalls import name_this_thread

T = TypeVar("T")


class _Job:
    """A job: ``run`` on a worker, or ``cancel`` if it is dropped at shutdown."""

    __slots__ = ("run", "cancel")

    def __init__(self, run: Callable[[], None], cancel: Callable[[], Any]) -> None:
        self.run = run
        self.cancel = cancel


class Workers(Executor):
    """Up to ``threads`` worker threads, started as needed and kept for the next job."""

    def __init__(self, threads: int, name: str = "hoody-io") -> None:
        self._max = threads
        self._name = name
        self._jobs: deque[_Job | None] = deque()  # None: a worker is to exit
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._live = 0  # threads started and not yet ended
        self._idle = 0  # workers asleep on the pipe or about to be
        self._wakes = 0  # bytes in the pipe: never more than idle workers, so never full
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        self._posted = 0  # jobs handed over with ``post``: the event loop waits for these
        self._settled = 0  # of those, the ones done (their ``done`` is on its way) or dropped

    # -- handing work over -----------------------------------------------------------

    def call(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on a worker; the returned future settles on ``loop``."""
        future: asyncio.Future[T] = loop.create_future()
        self.post(loop, functools.partial(settle, future), fn, *args)
        return future

    def post(
        self,
        loop: asyncio.AbstractEventLoop,
        done: Callable[[Any, BaseException | None], None],
        fn: Callable[..., Any],
        *args: Any,
    ) -> None:
        """Run ``fn(*args)`` on a worker, then ``done(result, error)`` on ``loop``
        (``done(None, CancelledError())`` if the job is dropped at shutdown)."""

        def job() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's callback
                error = exc
            self._settle()  # before the loop hears of it, so that it may poll at once
            loop.call_soon_threadsafe(done, result, error)

        def cancel() -> None:
            self._settle()
            loop.call_soon_threadsafe(done, None, asyncio.CancelledError())

        self._post(_Job(job, cancel), awaited=True)

    def load(self) -> tuple[int, int]:
        """Workers running a job now, and jobs waiting for one."""
        with self._lock:
            queued = sum(job is not None for job in self._jobs)
            return self._live - self._idle, queued

    def quiet(self) -> bool:
        """Whether no job handed over with ``post`` (or ``call``) is waiting or running:
        then no worker needs the GIL for something the event loop waits for."""
        return self._settled == self._posted

    def _settle(self) -> None:
        with self._lock:
            self._settled += 1

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """The ``Executor`` interface: run ``fn`` on a worker, a ``Future`` for its result."""
        future: Future[T] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the future's owner
                future.set_exception(exc)

        self._post(_Job(job, future.cancel))
        return future

    def _post(self, job: _Job, awaited: bool = False) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the workers are shut down")
            self._jobs.append(job)
            self._posted += awaited
            wake = self._wakes < self._idle
            if wake:
                self._wakes += 1
            start = not wake and len(self._threads) < self._max
            if start:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                self._live += 1
        if wake:
            os.write(self._wake_w, b"\0")
        elif start:
            thread.start()

    # -- the workers -----------------------------------------------------------------

    def _work(self) -> None:
        name_this_thread(self._name)  # one name per pool: tools count its threads by it
        while True:
            with self._lock:
                job = self._jobs.popleft() if self._jobs else _SLEEP
                if job is _SLEEP:
                    self._idle += 1
            if job is _SLEEP:
                os.read(self._wake_r, 1)
                with self._lock:
                    self._idle -= 1
                    self._wakes -= 1
                continue
            if job is None:
                self._exit()
                return
            job.run()

    def _exit(self) -> None:
        """A worker leaves; the last one closes the pipe."""
        with self._lock:
            self._live -= 1
            last = self._live == 0
        if last:
            os.close(self._wake_r)
            os.close(self._wake_w)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking jobs; drop queued ones if asked; end the threads when idle."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            dropped = [job for job in self._jobs if job is not None] if cancel_futures else []
            if cancel_futures:
                self._jobs.clear()
            self._jobs.extend([None] * len(self._threads))
            wakes = self._idle - self._wakes
            self._wakes += wakes
            threads = list(self._threads)
            unused = not threads
        if unused:
            os.close(self._wake_r)
            os.close(self._wake_w)
        for job in dropped:
            with contextlib.suppress(RuntimeError):  # its event loop is closed: nobody waits
                job.cancel()
        if wakes:
            os.write(self._wake_w, b"\0" * wakes)
        if wait:
            for thread in threads:
                thread.join()


_SLEEP = _Job(lambda: None, lambda: None)  # a marker: no job was waiting


def settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """On the loop: give a future its result or exception, unless it was cancelled
    (a job dropped at shutdown cancels it)."""
    if future.cancelled():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    elif exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)
