"""The HTTP intake: accepts connections, shakes TLS hands and gathers request heads
without ever holding a worker, then hands whole requests to cheroot's workers.

cheroot's own loop (its ConnectionManager) hands a connection to a worker as soon as
it is accepted or shows one readable byte, and shakes TLS hands in the accepting
thread. A client that sends its head a byte every few seconds then holds a worker for
as long as it likes (40 of them held all 32), and one that never sends its ClientHello
stalls every other HTTPS client for a minute. The intake takes that loop's place (see
``cheroot_glue``) and keeps everything before a complete request head to itself:

- accepting is non-blocking, and connections are counted per address and in total;
  past either cap the client gets ``503`` with ``Retry-After`` (never silence);
- a connection from a trusted proxy first gives its PROXY header (within
  ``head_timeout``, before any TLS), and from then on the client it names is the
  connection's address everywhere: the caps, ``REMOTE_ADDR``, the logs; without a
  valid header it is closed;
- a TLS handshake is stepped as bytes arrive, within ``HANDSHAKE_TIMEOUT``; plain HTTP
  sent to a TLS port gets a plain ``400`` saying so;
- a request head is read ahead, without blocking, into the connection's ``Inbox``; a
  worker gets the connection only once the whole head is there. A head must arrive
  within ``head_timeout`` of its first byte (``408``), an idle connection waits at
  most the server's timeout;
- a whole request goes to a worker only when one is free; otherwise it waits here, in
  order, for at most ``head_timeout`` seconds (then ``503``: slow downloads of two users
  held every worker, and a third user's request waited, unanswered, for as long as
  they did), and past ``QUEUE_LIMIT`` waiting requests a new one gets ``503`` at once;
- a worker reading a body gets ``TimeoutError`` (cheroot and the fronts answer ``408``,
  an upload is thrown away) when less than ``MIN_RATE_BYTES`` arrive in
  ``body_timeout`` seconds.

Kept-alive connections come back here between requests (``put``), so an idle client
holds a file descriptor, never a thread.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import re
import selectors
import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import HTTPOptions
from ..core.addresses import client_of
from ..core.log_limit import Throttled
from ..core.turns import stepped_aside
from ..proxy_protocol import Network, ProxyHeaderError, is_trusted, take
from . import cheroot_glue

log = logging.getLogger("hoody_mount.web")

HANDSHAKE_TIMEOUT = 10.0
QUEUE_LIMIT = 256  # whole requests waiting for a worker before new ones get 503
QUEUE_TICK = 0.02  # how often waiting requests look for a free worker
RETRY_AFTER = 5
REPLY_LINGER = 2.0  # after a refusal: read (and drop) what the client still sends
HEAD_LIMIT = 64 * 1024 + 4 * 1024  # past this without an end, cheroot answers 431
MIN_RATE_BYTES = 16 * 1024  # a body must bring at least this much in each window
ACCEPTS_PER_WAKEUP = 64
STOP_GRACE = 2.0  # seconds the requests in progress get to finish when the server stops
READ_BLOCK = 64 * 1024
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_EMPTY_LINES = re.compile(rb"[\r\n]*")
_TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a ClientHello

refusals = Throttled(log, "HTTP connections refused")


def _reply(status: str, text: str, extra: str = "") -> bytes:
    body = text.encode() + b"\n"
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\n"
        f"{extra}Connection: close\r\n\r\n"
    ).encode() + body


BUSY = _reply(
    "503 Service Unavailable",
    "the server is busy: too many connections or requests; try again shortly",
    f"Retry-After: {RETRY_AFTER}\r\n",
)
CROWDED = _reply(
    "503 Service Unavailable",
    "too many connections from your address; close some and try again",
    f"Retry-After: {RETRY_AFTER}\r\n",
)
SLOW_HEAD = _reply("408 Request Timeout", "the request head did not arrive in time")
PLAIN_TO_TLS = _reply("400 Bad Request", "this port speaks HTTPS only: use https://")


_WAKE = "wake"  # the selector data of the wake pipe


class Inbox(io.RawIOBase):
    """The raw stream under a connection's reader: first the bytes the intake read
    ahead, then the socket, at a minimum rate (see the module)."""

    def __init__(self, sock: socket.socket, window: float) -> None:
        self.sock = sock
        self.window = window  # seconds in which MIN_RATE_BYTES must arrive
        self.ahead = bytearray()
        self.scanned = 0  # the start of ``ahead`` holds no head's end before this
        self.broken = False  # a read failed or timed out: the connection must close
        self.window_start = time.monotonic()
        self.window_bytes = 0

    def readable(self) -> bool:
        """Always: it is a reader."""
        return True

    def restart_rate(self) -> None:
        """Start measuring the rate afresh (a request begins)."""
        self.window_start, self.window_bytes = time.monotonic(), 0

    def readinto(self, buffer: Any) -> int:
        """Bytes read ahead first, then the socket's (TimeoutError below the rate)."""
        if self.ahead:
            size = min(len(buffer), len(self.ahead))
            buffer[:size] = self.ahead[:size]
            del self.ahead[:size]
            self.scanned = 0
            return size
        now = time.monotonic()
        if now - self.window_start >= self.window:
            if self.window_bytes < MIN_RATE_BYTES:
                self.broken = True
                raise TimeoutError("timed out")  # (cheroot's test for a 408 is this text)
            self.window_start, self.window_bytes = now, 0
        try:
            size = self._at_once(buffer)
            if size < 0:
                with stepped_aside():  # (the client's next bytes may be long in coming)
                    size = self.sock.recv_into(buffer)
        except OSError:
            self.broken = True
            raise
        self.window_bytes += size
        return size

    def _at_once(self, buffer: Any) -> int:
        """Bytes the socket holds already, read with the worker's turn kept (a wait
        steps aside, which costs a place at the back of the turn queue); -1 if there are
        none yet or the socket is TLS (its bytes must go through ``ssl``)."""
        sock = self.sock
        if type(sock) is not socket.socket or sock.gettimeout() is None:
            return -1  # (a plain socket with a timeout has a non-blocking fd)
        try:
            return os.readv(sock.fileno(), [buffer])
        except BlockingIOError:
            return -1


def file_maker(window: float) -> Callable[..., Any]:
    """cheroot's ``makefile``, making a connection's reader over an ``Inbox`` (the
    connection replaces the writer with its own)."""

    def make_file(
        sock: socket.socket, mode: str = "r", bufsize: int = io.DEFAULT_BUFFER_SIZE
    ) -> Any:
        if "r" in mode:
            return cheroot_glue.BufferedStream(Inbox(sock, window), bufsize)
        return io.BufferedWriter(socket.SocketIO(sock, "wb"), bufsize)

    return make_file


def inbox_of(conn: Any) -> Inbox:
    """The ``Inbox`` under a connection's reader."""
    inbox = conn.rfile.raw
    assert isinstance(inbox, Inbox)
    return inbox


def gather(conn: Any) -> str:
    """Read what the client has sent, without waiting: ``ready`` when a whole request
    head is buffered (or too much for one), ``more`` when not yet, ``eof`` when the
    client has gone (or sent only the start of a head before closing: cheroot answers
    that one)."""
    sock = conn.socket
    inbox = inbox_of(conn)
    timeout = sock.gettimeout()
    # A plain socket with a timeout has a non-blocking fd: read it straight, without
    # the two system calls of a settimeout each way (TLS bytes must go through ``ssl``)
    direct = type(sock) is socket.socket and timeout is not None
    if not direct:
        sock.settimeout(0)
    try:
        while len(inbox.ahead) < HEAD_LIMIT:
            try:
                data = os.read(sock.fileno(), READ_BLOCK) if direct else sock.recv(READ_BLOCK)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError:
                return "eof"
            if not data:
                held = bool(inbox.ahead) or bool(conn.rfile.buffered().strip())
                return "ready" if held else "eof"
            inbox.ahead += data
    finally:
        if not direct:
            sock.settimeout(timeout)
    return "ready" if _head_is_here(conn.rfile.buffered(), inbox) else "more"


def _head_is_here(buffered: bytes, inbox: Inbox) -> bool:
    """Whether the reader's ``buffered`` bytes and the inbox's hold a whole request head.
    Usually nothing is buffered, and only the bytes that came since the last look are
    searched: a head trickled in byte by byte is not scanned anew at each byte."""
    if buffered:  # (what a pipelined request left in the reader: rare, and small)
        return head_is_whole(buffered + inbox.ahead)
    found = head_is_whole(inbox.ahead, max(0, inbox.scanned - 3))
    inbox.scanned = len(inbox.ahead)
    return found


def head_is_whole(data: bytes | bytearray, start: int = 0) -> bool:
    """Whether ``data`` holds a whole request head (or is past any head's size), where
    it holds no head's end before ``start``. Empty lines before the head are no end."""
    if len(data) >= HEAD_LIMIT:
        return True
    leading = _EMPTY_LINES.match(data)
    begin = max(start, leading.end() if leading else 0)
    return _HEAD_END.search(data, begin) is not None


@dataclass(eq=False)
class _Waiting:
    """A socket the intake watches: its state, and when it runs out of time."""

    sock: socket.socket
    address: str
    state: str  # proxy, hello, handshake, head, refused
    deadline: float
    counted: bool = True  # counted against the caps (released when it closes)
    conn: Any = None  # once made: cheroot's HTTPConnection
    started: bool = False  # some bytes of a head have arrived
    answer: bytes | None = None  # for a handshake that ends in a refusal
    peer: Any = None  # the client's (address, port): accept's, or a PROXY header's
    header: bytearray | None = None  # the start of a PROXY header taken so far


MAX_AWAITING_HEADERS = 1024  # connections of trusted proxies before their PROXY header


class Intake:
    """Takes the place of cheroot's ConnectionManager (``run``, ``put``, ``stop``,
    ``close``, ``can_add_keepalive_connection``); see the module."""

    def __init__(self, server: Any, limits: HTTPOptions, trusted: tuple[Network, ...] = ()) -> None:
        self.server = server
        self.trusted = trusted  # proxies whose connections start with a PROXY header
        self.per_address_limit = limits.max_connections_per_address
        self.total_limit = limits.max_connections
        self.head_timeout = limits.head_timeout
        self.body_timeout = limits.body_timeout
        self.queue_wait = limits.head_timeout  # a whole request's wait for a worker, at most
        self._make_file = file_maker(limits.body_timeout)
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._per_address: Counter[str] = Counter()
        self._total = 0
        self._idle = 0
        self._live: set[Any] = set()  # connections made and not closed yet
        self._ready: deque[tuple[Any, float]] = deque()  # (whole requests, deadline)
        self._stopping = False
        self._draining = False  # a stop has begun (see ``drain``)
        self._awaiting_headers = 0  # trusted proxies' connections before their header
        self._drained = False
        self._serving = False
        self._reserve: int | None = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        server.socket.setblocking(False)
        self._selector.register(server.socket, selectors.EVENT_READ, None)
        # ``stop`` wakes ``run`` at once through this pipe (it waited up to half a second)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)

    # -- what cheroot calls ----------------------------------------------------------

    @property
    def can_add_keepalive_connection(self) -> bool:
        """Whether a connection may stay open after its request."""
        return bool(self._idle < self.server.keep_alive_conn_limit)

    def put(self, conn: Any) -> None:
        """A worker gives back a kept-alive connection: serve its next request as soon
        as a whole head is there."""
        if self._stopping or self._draining:
            conn.close()
            return
        waiting = _Waiting(conn.socket, conn.remote_addr or "", "head", 0.0)
        waiting.conn = conn
        self._await_head(waiting)

    def run(self, interval: float) -> None:
        """Accept and watch until ``stop``."""
        self._serving = True
        try:
            while not self._stopping:
                wait = QUEUE_TICK if self._ready else min(interval, 0.5)
                for key, _ in self._selector.select(wait):
                    if key.data is None:
                        self._accept()
                    elif key.data is _WAKE:
                        continue
                    else:
                        self._step(key.data)
                if self._draining and not self._drained:
                    self._close_idle()
                self._hand_over()
                self._expire()
        finally:
            self._serving = False

    def drain(self) -> None:
        """A stop has begun: close the connections idle between requests, and each
        connection once its request is answered. The requests in flight go on; new
        ones are still taken, for the server to answer health probes and to tell
        everyone else 503 (a refused connection would explain nothing)."""
        self._draining = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _close_idle(self) -> None:
        """``drain``'s work, in the intake's thread (the one that uses the selector)."""
        self._drained = True
        for waiting in self._watched():
            if not (waiting.state == "head" and waiting.started):
                self._unwatch(waiting)
                self._close(waiting)

    def stop(self) -> None:
        """Stop ``run`` (at once: it is woken)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")
        while self._serving:
            time.sleep(0.01)

    def close(self) -> None:
        """Close every connection the intake holds; give those a worker serves
        ``STOP_GRACE`` seconds to finish their request, then cut them off (a worker
        blocked sending to a client that reads nothing would keep the server from
        stopping for as long as the send's timeout)."""
        with self._lock:
            held = self._watched()
            ready = [conn for conn, _ in self._ready]
            self._ready.clear()
        for conn in ready:
            conn.close()
        for waiting in held:
            self._unwatch(waiting)
            self._close(waiting)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline:
            with self._lock:
                if not self._live:
                    break
            time.sleep(0.05)
        with self._lock:
            busy = list(self._live)
        for conn in busy:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                conn.socket.shutdown(socket.SHUT_RDWR)
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None

    def _watched(self) -> list[_Waiting]:
        """The connections the selector watches (not the listener, not the wake pipe)."""
        return [
            key.data for key in self._selector.get_map().values() if isinstance(key.data, _Waiting)
        ]

    def close_gently(self, sock: socket.socket, address: str) -> None:
        """Take over the end of a connection whose client may still be sending a body
        no one reads: stop sending (after the answer, already written), drop what still
        arrives for ``REPLY_LINGER``, then close. Closed at once with unread bytes, the
        connection is reset, and the client may lose the answer. ``sock`` is the
        intake's own (a duplicate): the connection's is closed as usual."""
        if self._stopping:
            sock.close()
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
        except OSError:
            sock.close()
            return
        self._watch(_Waiting(sock, address, "refused", time.monotonic() + REPLY_LINGER, False))

    # -- the caps ----------------------------------------------------------------------

    def release(self, address: str, conn: Any = None) -> None:
        """A counted connection of ``address`` (cheroot's ``conn``, once made) closed."""
        with self._lock:
            self._live.discard(conn)
            self._total -= 1
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]

    def _admit(self, address: str) -> bytes | None:
        """Count a new connection, or the answer that refuses it."""
        with self._lock:
            if self._total >= self.total_limit:
                refusals.note(address, "too many connections in all")
                return BUSY
            if self._per_address[address] >= self.per_address_limit:
                refusals.note(address, "too many connections from this address")
                return CROWDED
            self._total += 1
            self._per_address[address] += 1
            return None

    # -- the loop ----------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, peer = self.server.socket.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self._refuse_for_want_of_files()
                return
            sock.setblocking(False)
            if isinstance(peer, tuple) and is_trusted(str(peer[0]), self.trusted):
                # (counted once the header names the client; its wait is bounded, and so
                # is the number of connections waiting so)
                if self._awaiting_headers >= MAX_AWAITING_HEADERS:
                    refusals.note(str(peer[0]), "too many connections waiting for a PROXY header")
                    sock.close()
                    continue
                self._awaiting_headers += 1
                deadline = time.monotonic() + self.head_timeout
                waiting = _Waiting(sock, str(peer[0]), "proxy", deadline, counted=False)
                waiting.peer, waiting.header = peer, bytearray()
                self._watch(waiting)
                self._proxy(waiting)
            else:
                self._start_serving(sock, peer)

    def _start_serving(self, sock: socket.socket, peer: Any) -> None:
        """Count a new connection from ``peer`` (the client's address and port), then
        shake TLS hands or wait for its first head; or refuse it past a cap."""
        address = client_of(str(peer[0])) if isinstance(peer, tuple) else ""
        answer = self._admit(address)
        now = time.monotonic()
        if self.server.ssl_adapter is not None:
            waiting = _Waiting(sock, address, "hello", now + HANDSHAKE_TIMEOUT, peer=peer)
            waiting.counted, waiting.answer = answer is None, answer
            self._watch(waiting)
        elif answer is not None:
            self._refuse(_Waiting(sock, address, "refused", now, counted=False), answer)
        else:
            self._connect(_Waiting(sock, address, "head", now), peer, {})

    def _proxy(self, waiting: _Waiting) -> None:
        """Take a trusted proxy's PROXY header; once whole, serve the client it names
        (a header naming none leaves the proxy's own address). A bad one, or none, and
        the connection is closed."""
        assert waiting.header is not None
        try:
            header = take(waiting.sock, waiting.header)
        except (ProxyHeaderError, OSError) as exc:
            refusals.note(waiting.address, f"no valid PROXY header from a trusted proxy ({exc})")
            self._unwatch(waiting)
            self._close(waiting)
            return
        if header is None:
            return
        self._unwatch(waiting)
        peer = header.source or waiting.peer
        log.debug("connection of %s through the proxy %s", peer[0], waiting.address)
        self._start_serving(waiting.sock, peer)

    def _refuse_for_want_of_files(self) -> None:
        """Out of file descriptors: free the reserve one to accept and refuse a client
        (the listening socket would otherwise stay readable, the loop spinning)."""
        if self._reserve is None:
            time.sleep(0.05)
            return
        os.close(self._reserve)
        self._reserve = None
        try:
            sock, peer = self.server.socket.accept()
        except OSError:
            pass
        else:
            refusals.note(str(peer[0]) if isinstance(peer, tuple) else "", "out of files")
            with contextlib.suppress(OSError):
                sock.send(BUSY)
            sock.close()
        with contextlib.suppress(OSError):
            self._reserve = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)

    def _connect(self, waiting: _Waiting, peer: Any, tls_environ: dict[str, Any]) -> None:
        """Make cheroot's connection over a new socket, and wait for its first head."""
        conn = self.server.ConnectionClass(self.server, waiting.sock, self._make_file)
        if isinstance(peer, tuple):
            conn.remote_addr, conn.remote_port = peer[0], peer[1]
        conn.ssl_env = tls_environ
        conn.intake = self
        with self._lock:
            self._live.add(conn)
        waiting.conn, waiting.state = conn, "head"
        self._await_head(waiting)

    def _await_head(self, waiting: _Waiting) -> None:
        """Dispatch a connection whose next head is whole, or watch it until it is (the
        head deadline runs from its first byte; before one, the idle timeout)."""
        conn = waiting.conn
        state = gather(conn)
        if state == "ready":
            self._dispatch(conn)
        elif state == "eof":
            conn.close()
        else:
            waiting.started = bool(inbox_of(conn).ahead) or bool(conn.rfile.buffered())
            wait = self.head_timeout if waiting.started else self.server.timeout
            waiting.deadline = time.monotonic() + wait
            self._watch(waiting)

    def _step(self, waiting: _Waiting) -> None:
        if waiting.state == "proxy":
            self._proxy(waiting)
        elif waiting.state == "hello":
            self._hello(waiting)
        elif waiting.state == "handshake":
            self._handshake(waiting)
        elif waiting.state == "head":
            state = gather(waiting.conn)
            if state == "more":
                if not waiting.started:
                    waiting.started = True
                    waiting.deadline = time.monotonic() + self.head_timeout
                return
            self._unwatch(waiting)
            if state == "ready":
                self._dispatch(waiting.conn)
            else:
                waiting.conn.close()
        else:  # refused: drop what the client sends until it closes
            try:
                while waiting.sock.recv(READ_BLOCK):
                    pass
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            except OSError:
                pass
            self._unwatch(waiting)
            self._close(waiting)

    def _hello(self, waiting: _Waiting) -> None:
        """The first byte on a TLS port: a handshake, or plain HTTP (told so)."""
        try:
            first = waiting.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            first = b""
        self._unwatch(waiting)
        if not first:
            self._close(waiting)
        elif first[0] != _TLS_HANDSHAKE:
            self._refuse(waiting, PLAIN_TO_TLS)
        else:
            context = self.server.ssl_adapter.context
            waiting.sock = context.wrap_socket(
                waiting.sock, server_side=True, do_handshake_on_connect=False
            )
            waiting.state = "handshake"
            self._watch(waiting)
            self._handshake(waiting)

    def _handshake(self, waiting: _Waiting) -> None:
        sock = waiting.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._modify(waiting, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._modify(waiting, selectors.EVENT_WRITE)
            return
        except OSError as exc:
            log.debug("TLS handshake with %s failed: %s", waiting.address, exc)
            self._unwatch(waiting)
            self._close(waiting)
            return
        self._unwatch(waiting)
        if waiting.answer is not None:
            self._refuse(waiting, waiting.answer)
            return
        try:
            peer = sock.getpeername()
        except OSError:
            self._close(waiting)
            return
        self._connect(waiting, waiting.peer or peer, self.server.ssl_adapter.get_environ(sock))

    def _dispatch(self, conn: Any) -> None:
        """Give a connection with a whole request head to a free worker, or keep it in
        line for one (or refuse it when too many wait already)."""
        with self._lock:
            if not self._ready and self._free_workers() > 0:
                self._start(conn)
                return
            if len(self._ready) < QUEUE_LIMIT:
                self._ready.append((conn, time.monotonic() + self.queue_wait))
                return
        self._refuse_busy(conn, "every worker busy, queue full")

    def _hand_over(self) -> None:
        """Give waiting requests to the workers that are free, in order; refuse those
        that waited ``queue_wait``."""
        late = []
        now = time.monotonic()
        with self._lock:
            while self._ready and self._free_workers() > 0:
                self._start(self._ready.popleft()[0])
            while self._ready and self._ready[0][1] < now:
                late.append(self._ready.popleft()[0])
        for conn in late:
            self._refuse_busy(conn, f"no worker free for {self.queue_wait:.0f} s")

    def _free_workers(self) -> int:
        return int(self.server.requests.idle) - int(self.server.requests.qsize)

    def _start(self, conn: Any) -> None:
        if conn.socket.gettimeout() != self.body_timeout:  # (a kept-alive one has it)
            conn.socket.settimeout(self.body_timeout)
        inbox_of(conn).restart_rate()
        self.server.process_conn(conn)

    def _refuse_busy(self, conn: Any, why: str) -> None:
        refusals.note(conn.remote_addr or "", why)
        waiting = _Waiting(conn.socket, conn.remote_addr or "", "refused", 0.0)
        waiting.conn = conn
        self._refuse(waiting, BUSY)

    def _refuse(self, waiting: _Waiting, answer: bytes) -> None:
        """Answer, stop sending, and read until the client closes (or REPLY_LINGER), so
        that the answer is not lost to a reset."""
        sock = waiting.sock
        try:
            sock.setblocking(False)
            sock.send(answer)
            sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            self._close(waiting)
            return
        waiting.state = "refused"
        waiting.deadline = time.monotonic() + REPLY_LINGER
        self._watch(waiting)

    def _expire(self) -> None:
        refusals.flush()
        now = time.monotonic()
        with self._lock:
            late = [waiting for waiting in self._watched() if waiting.deadline < now]
        for waiting in late:
            self._unwatch(waiting)
            if waiting.state == "proxy":
                refusals.note(waiting.address, "no whole PROXY header in time from a trusted proxy")
            if waiting.state == "head" and waiting.started:
                self._refuse(waiting, SLOW_HEAD)
            else:
                self._close(waiting)

    def _watch(self, waiting: _Waiting) -> None:
        with self._lock:
            if waiting.state == "head":
                self._idle += 1
            self._selector.register(waiting.sock, selectors.EVENT_READ, waiting)

    def _modify(self, waiting: _Waiting, events: int) -> None:
        with self._lock:
            self._selector.modify(waiting.sock, events, waiting)

    def _unwatch(self, waiting: _Waiting) -> None:
        with self._lock, contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(waiting.sock)
            if waiting.state == "head":
                self._idle -= 1
            elif waiting.state == "proxy":
                self._awaiting_headers -= 1

    def _close(self, waiting: _Waiting) -> None:
        if waiting.conn is not None:
            waiting.conn.close()  # (a connection releases its address when it closes)
            return
        with contextlib.suppress(OSError):
            waiting.sock.close()
        if waiting.counted:
            self.release(waiting.address)
