"""The SSH listener used when trusted proxies are configured: it accepts connections
itself, takes the PROXY header of those from a trusted proxy (never a byte past it,
within the login timeout), and hands each connection to asyncssh with its client.

Without trusted proxies asyncssh's own listener serves, as it always did.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable

from ..config import Listen
from ..core.log_limit import Throttled
from ..proxy_protocol import Header, Network, ProxyHeaderError, is_trusted, take

log = logging.getLogger("hoody_mount.ssh")
refusals = Throttled(log, "SSH connections from a trusted proxy dropped")

ACCEPTS_PER_WAKEUP = 64
MAX_PENDING = 1024  # connections before their header or still logging in, at most
ACCEPT_RETRY = 1.0  # seconds without accepting after running out of file descriptors

# serves one accepted connection: the socket, and the client a PROXY header named
# (None: the peer's own address stands)
Serve = Callable[[socket.socket, tuple[str, int] | None], Awaitable[object]]


class ProxiedListener:
    """Listening sockets, served by ``serve`` once each trusted proxy's header is in;
    ``get_port``, ``close`` and ``wait_closed`` as asyncssh's acceptor has them."""

    def __init__(
        self, sockets: list[socket.socket], trusted: tuple[Network, ...], serve: Serve,
        header_timeout: float,
    ) -> None:  # fmt: skip
        self._sockets = sockets
        self._trusted = trusted
        self._serve = serve
        self._header_timeout = header_timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        for listener in sockets:
            self._loop.add_reader(listener.fileno(), self._accept, listener)

    def get_port(self) -> int:
        """The port listened on."""
        return int(self._sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop listening; connections not yet handed to asyncssh, or still logging in,
        are dropped."""
        for listener in self._sockets:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(listener.fileno())
            listener.close()
        for task in self._tasks:
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait for the dropped connections' tasks to end."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("cannot accept SSH connections: %s", exc.strerror)
                    self._loop.remove_reader(listener.fileno())
                    self._loop.call_later(ACCEPT_RETRY, self._resume, listener)
                return
            sock.setblocking(False)
            if len(self._tasks) >= MAX_PENDING:  # (before their header, or logging in)
                refusals.note(str(peer[0]), "too many connections waiting to log in")
                sock.close()
                continue
            task = self._loop.create_task(self._connection(sock, str(peer[0])))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _resume(self, listener: socket.socket) -> None:
        if listener.fileno() >= 0:
            self._loop.add_reader(listener.fileno(), self._accept, listener)

    async def _connection(self, sock: socket.socket, peer: str) -> None:
        client: tuple[str, int] | None = None
        shown = peer
        if is_trusted(peer, self._trusted):
            try:
                header = await asyncio.wait_for(self._header(sock), self._header_timeout)
            except (ProxyHeaderError, OSError, TimeoutError) as exc:
                why = str(exc) or "none in time"
                refusals.note(peer, f"no valid PROXY header from a trusted proxy ({why})")
                sock.close()
                return
            except asyncio.CancelledError:
                sock.close()
                raise
            client = header.source
            shown = client[0] if client else peer
            log.debug("SSH connection of %s through the proxy %s", shown, peer)
        try:
            await self._serve(sock, client)
        except Exception as exc:  # (asyncssh's for any login that fails: told and logged)
            log.debug("SSH connection from %s ended before its login: %s", shown, exc)

    async def _header(self, sock: socket.socket) -> Header:
        held = bytearray()
        while (header := take(sock, held)) is None:
            await _readable(sock)
        return header


async def _readable(sock: socket.socket) -> None:
    """Wait until ``sock`` has bytes to read (or has ended)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def listen(
    where: Listen, backlog: int, trusted: tuple[Network, ...], serve: Serve,
    header_timeout: float,
) -> ProxiedListener:  # fmt: skip
    """Bind every address ``where`` names (port 0: one free port for all of them)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        where.host or None, where.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    port = where.port
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = sock.getsockname()[1]
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return ProxiedListener(sockets, trusted, serve, header_timeout)
