"""One SFTP channel, served from asyncssh's channel callbacks.

asyncssh's own SFTP server reads each request through a stream reader and serves it in
a task of its own; that costs the event loop more than the rest of a request together
(serial requests took 110 µs here, against 60 µs served from the callbacks, and a
hand-off to a worker took about 200 µs between tasks, against 30 µs). Here the bytes
of the channel arrive in ``data_received``; whole packets go to a queue; the request at
its head is answered at once when ``Requests`` can (most stat calls, cached READs,
names already read) or handed to a worker with a callback that sends the reply. No
task, future or coroutine is made per request.

Order: ``Pipeline`` decides when the request at the head of the queue may start (READs
together, non-overlapping WRITEs together, anything else alone, SETSTAT and FSETSTAT
behind running WRITEs in the queue that runs them in turn). Flow: reading from the
channel pauses while the queue is long or the client does not take our replies.

Each request is counted for the metrics (``core.operations``) by its name and how it
ended, from its arrival at the head of the queue to its reply.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import asyncssh
from asyncssh.constants import (
    FXP_FSETSTAT,
    FXP_INIT,
    FXP_READ,
    FXP_SETSTAT,
    FXP_VERSION,
    FXP_WRITE,
)
from asyncssh.packet import PacketDecodeError, SSHPacket
from asyncssh.sftp import SFTPError

from ..core import free_memory
from ..core.counters import COUNTERS
from ..core.listing import Listing
from ..core.live import Entry
from ..core.open_files import OpenFile
from ..core.operations import OPERATIONS
from ..core.resolution import OffLoop
from ..core.session import Session
from ..fair_share import FairShare
from ..workers import Workers
from . import wire
from .batches import Batches
from .framing import Framer
from .handle_budget import HandleBudget
from .pipeline import AFTER_WRITES, Pipeline, Span, classify
from .sftp_requests import EXTENSIONS, MORE, Job, Requests, operation

log = logging.getLogger("hoody_mount.sftp")

SFTP_VERSION = 3
FLUSH_AT = 256 * 1024  # queued reply bytes that are handed over without waiting
LARGE_REPLY = 32 * 1024  # a reply this long fills SSH packets alone: sent without a join
MAX_QUEUED = 64  # requests waiting their turn before reading from the channel pauses
CLOSE_CHECK = 1.0  # seconds between checks for a close while replies are held back
LOOP_SLICE = 0.002  # seconds of answering on the spot before other channels get a turn
# Always a job or an error with nothing done (``Requests._set_attrs``, ``_fsetstat``),
# never answered from a cache: they may queue behind running WRITEs (a job's ``on_loop``
# is made on the loop only when nothing of the channel runs).
_AFTER_WRITES = frozenset({FXP_SETSTAT, FXP_FSETSTAT})
_VERSION = wire.packet(
    FXP_VERSION,
    SFTP_VERSION.to_bytes(4, "big"),
    *(wire.string(name) + wire.string(data) for name, data in EXTENSIONS),
)


def _close_all(objects: list[OpenFile | Listing]) -> None:
    """On a worker: close what a client left open."""
    for obj in objects:
        try:
            obj.close()
        except OSError as exc:
            log.warning("closing %s at the end of a session: %s", getattr(obj, "path", obj), exc)


class SFTPChannel:
    """The SFTP subsystem on one SSH channel: framing, order, flow and the end."""

    def __init__(
        self,
        chan: asyncssh.SSHServerChannel[bytes],
        pool: Workers,
        max_packet: int,
        budget: HandleBudget,
        long_calls: Workers,
        long_share: FairShare,
    ):
        self._chan = chan
        self._pool = pool
        self._long_calls = long_calls  # a few threads of their own for copy-data
        self._long_share = long_share  # of which each user gets a fair share
        self._long_tasks: set[asyncio.Task[None]] = set()
        self._user = ""
        self._budget = budget
        self._loop = asyncio.get_running_loop()
        self._framer = Framer(max_packet)
        self._queue: deque[tuple[bytes, str, Span | None]] = deque()  # packet, kind, span
        self._pipeline = Pipeline()
        self._requests: Requests | None = None
        self._writes = Batches(pool, self._loop)
        self._outbox: list[bytes] = []
        self._outbox_size = 0
        self._reading_paused = False
        self._writing_paused = False
        self._close_check: asyncio.TimerHandle | None = None  # see ``_check_closed``
        self._next_turn: asyncio.Handle | None = None  # a ``_pump`` after a yield
        self._started = False  # INIT answered
        self._eof = False
        self._lost = False  # the channel is gone: nothing more is sent
        self._ending = False
        self._ended: asyncio.Future[None] = self._loop.create_future()

    async def serve(self, session: Session, limits: tuple[int, int, int]) -> None:
        """Serve requests as ``session``'s user until the client leaves; what it left
        open is closed by then. ``limits``: packet size, READ size and open handles."""
        version = str(self._chan.get_extra_info("client_version", ""))
        self._user = session.user.name
        self._requests = Requests(session, limits, version, self._pool.submit, self._budget)
        self._pump()
        await asyncio.shield(self._ended)

    entry: Entry | None = None  # the connection's among the live sessions

    def busy(self) -> bool:
        """Whether a file is open or a request is being served: a transfer in flight."""
        requests = self._requests
        return requests is not None and (bool(requests.files) or not self._pipeline.idle)

    # -- asyncssh's channel callbacks (forwarded by the session) ----------------------

    def data_received(self, data: bytes) -> None:
        """Queue the whole packets received so far and serve what may run."""
        if self._eof or self._lost:  # closing: what still arrives is not served
            return
        try:
            packets = self._framer.feed(data)
        except ValueError as exc:
            self._fail(str(exc))
            return
        for payload in packets:
            self._queue.append((payload, *classify(payload, FXP_READ, FXP_WRITE, _AFTER_WRITES)))
        self._pump()

    def eof_received(self) -> None:
        """The client will send no more: end once the queued requests are answered."""
        self._eof = True
        self._pump()

    def pause_writing(self) -> None:
        """The client is not taking our replies: hold back new requests."""
        self._writing_paused = True
        self._update_reading()
        if self._close_check is None:
            self._close_check = self._loop.call_later(CLOSE_CHECK, self._check_closed)

    def _check_closed(self) -> None:
        """While replies are held back, notice a channel the client has closed.

        asyncssh then drops the unsent replies without resuming our writing, and reports
        the close (``connection_lost``) only once it has delivered the data it holds for
        us, which it does only when reading resumes: without this the channel and its
        open files would stay until the whole connection ends.
        """
        self._close_check = None
        if not self._writing_paused or self._lost:
            return
        if not self._chan.is_closing():
            self._close_check = self._loop.call_later(CLOSE_CHECK, self._check_closed)
            return
        self._lose()
        self._chan.resume_reading()  # asyncssh drains to us, then reports the close
        self._pump()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._pump()

    def connection_lost(self) -> None:
        """The channel is closed: drop what is queued, end once nothing runs."""
        self._lose()
        self._pump()

    def _lose(self) -> None:
        """Nobody reads our replies any more: stop a long copy, drop what is queued."""
        self._lost = True
        self._queue.clear()
        if self._requests is not None:
            self._requests.ended = True

    # -- serving ----------------------------------------------------------------------

    def _pump(self) -> None:
        """Serve the requests at the head of the queue that may start now."""
        requests = self._requests
        if requests is not None and not self._ending:
            pipeline, queue = self._pipeline, self._queue
            turn_ends = time.perf_counter() + LOOP_SLICE
            while queue and not self._writing_paused:
                payload, kind, span = queue[0]
                if not pipeline.admits(kind, span):
                    break
                if time.perf_counter() > turn_ends:  # others' turn; this goes on after
                    if self._next_turn is None:
                        self._next_turn = self._loop.call_soon(self._take_turn)
                    break
                queue.popleft()
                self._serve(requests, payload, kind, span)
            if (self._eof or self._lost) and not queue and pipeline.idle and not self._ending:
                self._end()  # (``_ending`` again: serving may have ended the channel)
        self._update_reading()

    def _take_turn(self) -> None:
        self._next_turn = None
        self._pump()

    def _serve(self, requests: Requests, payload: bytes, kind: str, span: Span | None) -> None:
        if not self._started:
            self._start(payload)
            return
        pktid = payload[1:5]
        began = time.perf_counter()
        op = operation(payload)
        if self.entry is not None:
            self.entry.doing = op  # (for ``hoody-mount connections``)
        try:
            packet = SSHPacket(payload)
            request_type = packet.get_byte()
            packet.get_uint32()
            answer = requests.answer(request_type, pktid, packet)
        except Exception as exc:  # noqa: BLE001 - every error becomes a STATUS reply
            answer = self._error(pktid, exc)
            result = wire.result(exc)
        else:
            if isinstance(answer, Job):
                answered = self._on_loop(answer, pktid, kind, op)
                if answered is None:
                    self._run(answer, pktid, kind, span, (op, began))
                    return
                answer, result = answered
            else:
                result = "ok"
        OPERATIONS.record("sftp", op, result, time.perf_counter() - began)
        self._send(answer)

    def _on_loop(self, job: Job, pktid: bytes, kind: str, op: str) -> tuple[bytes, str] | None:
        """Make a job's call on the event loop when it may be (the jail lies on tmpfs,
        memory is plentiful, nothing of this channel runs): its reply and how it ended,
        or None to hand it to a worker (also when the call would leave the tmpfs)."""
        if job.on_loop is None or not self._pipeline.idle or not free_memory.plenty():
            return None
        try:
            reply = job.reply(job.on_loop())
        except OffLoop:
            return None
        except Exception as exc:  # noqa: BLE001 - every error becomes a STATUS reply
            if job.undo is not None:
                job.undo()
            reply, result = self._error(pktid, exc), wire.result(exc)
        else:
            result = "ok"
        COUNTERS.add("requests_on_loop", ("sftp", op))
        return reply, result

    def _start(self, payload: bytes) -> None:
        """INIT: answer with version 3 and our extensions (the client's are ignored)."""
        if payload[0] != FXP_INIT:
            self._fail("the first packet is not INIT")
            return
        self._started = True
        self._send(_VERSION)

    def _run(
        self, job: Job, pktid: bytes, kind: str, span: Span | None, timing: tuple[str, float]
    ) -> None:
        """Start a job; ``timing``: the request's name and when it began, for the metrics."""
        self._pipeline.started(kind, span)
        done = functools.partial(self._finished, job, pktid, span, timing)
        if job.in_order or kind == AFTER_WRITES:  # behind the WRITEs before it, if any
            self._writes.post(job.call, done)
        elif job.long:
            task = self._loop.create_task(self._run_long(job, done))
            self._long_tasks.add(task)
            task.add_done_callback(self._long_tasks.discard)
        else:
            self._pool.post(self._loop, done, job.call)

    async def _run_long(self, job: Job, done: Callable[[Any, BaseException | None], None]) -> None:
        """A long job (copy-data) on the long jobs' threads, a slice at a time in the
        user's turn (see ``fair_share``); it stops itself when the client goes."""
        result: Any = MORE
        while result is MORE:
            async with self._long_share.slot(self._user):
                try:
                    result = await self._long_calls.call(self._loop, job.call)
                except Exception as exc:  # (the request's error, answered as a status)
                    done(None, exc)
                    return
        done(result, None)

    def _finished(
        self,
        job: Job,
        pktid: bytes,
        span: Span | None,
        timing: tuple[str, float],
        result: Any,
        exc: BaseException | None,
    ) -> None:
        """On the loop: a job is done; send its reply and serve what may run now."""
        self._pipeline.finished(span)
        ended = "ok"
        if exc is None:
            try:
                reply = job.reply(result)
            except Exception as error:  # noqa: BLE001 - becomes a STATUS reply
                reply = self._error(pktid, error)
                ended = wire.result(error)
        else:
            if job.undo is not None:
                job.undo()
            reply = self._error(pktid, exc)
            ended = wire.result(exc)
        op, began = timing
        OPERATIONS.record("sftp", op, ended, time.perf_counter() - began)
        self._send(reply)
        self._pump()

    @staticmethod
    def _error(pktid: bytes, exc: BaseException) -> bytes:
        if not isinstance(exc, (OSError, SFTPError, PacketDecodeError)):
            log.error("SFTP request failed unexpectedly", exc_info=exc)
        return wire.error(pktid, exc)

    # -- sending and flow ---------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Queue a reply; the replies of one turn of the event loop leave together.

        A burst of small answers (32 WRITE statuses) then fills whole SSH packets, and
        each packet costs asyncssh one encryption and one socket write.
        """
        if self._lost:
            return
        if not self._outbox:
            self._loop.call_soon(self._flush)
        self._outbox.append(data)
        self._outbox_size += len(data)
        if self._outbox_size >= FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        """Hand the queued replies to the channel: small ones joined, so that they fill
        SSH packets together, and large ones (READ data) as they are, uncopied."""
        if not self._outbox:
            return
        replies, self._outbox, self._outbox_size = self._outbox, [], 0
        if self._lost or self._chan.is_closing():
            return
        small: list[bytes] = []
        for reply in replies:
            if len(reply) < LARGE_REPLY:
                small.append(reply)
                continue
            if small:
                self._chan.write(b"".join(small))
                small = []
            self._chan.write(reply)
        if small:
            self._chan.write(b"".join(small))

    def _update_reading(self) -> None:
        """Pause reading from the channel while requests pile up or replies cannot leave."""
        pause = self._writing_paused or len(self._queue) >= MAX_QUEUED
        if pause == self._reading_paused or self._lost:
            return
        self._reading_paused = pause
        if pause:
            self._chan.pause_reading()
        else:  # resuming delivers buffered data at once: not from inside ``_pump``
            self._loop.call_soon(self._resume_reading)

    def _resume_reading(self) -> None:
        if not self._reading_paused and not self._lost:
            self._chan.resume_reading()

    # -- the end ------------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        """A protocol violation: close this channel (the connection lives on)."""
        log.warning("closing an SFTP channel: %s", reason)
        self._queue.clear()
        self._framer.clear()
        self._eof = True
        self._chan.close()
        self._pump()

    def _end(self) -> None:
        """Close what the client left open; report exit status 0 as OpenSSH's server does."""
        self._ending = True
        self._flush()
        objects = self._requests.open_objects() if self._requests is not None else []
        if objects:
            self._pool.post(self._loop, self._closed, _close_all, objects)
        else:
            self._closed(None, None)

    def _closed(self, _result: object, _exc: BaseException | None) -> None:
        if not self._lost and not self._chan.is_closing():
            self._chan.exit(0)
        if not self._ended.done():
            self._ended.set_result(None)
