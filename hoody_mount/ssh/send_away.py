"""Disconnect an SSH connection so that the client can read why: a new one refused,
or one the server ends (a stop, a kill, the removal of its user).

asyncssh's ``disconnect`` sends the message and closes the socket at once. A new client
has by then sent its version line and, soon after, its KEXINIT; a logged-in one may be
sending anything: data that arrives at a closed socket, or waits unread in it when it
closes, makes the kernel answer with a reset, and a client that writes after the reset
stops on "Broken pipe", or loses what it had not read yet, before it reads the message
(OpenSSH did, now and then). So the socket is kept open a little longer
through a second descriptor: writing is shut (the client reads the message, then the
end), and what the client still sends is read and dropped until it closes its side or
``LINGER`` seconds pass. The message goes before the channels close
(``patches.reason_first``). At most ``MAX_LINGERING`` refused sockets linger at once; past
that a refusal closes at once, as before.
"""

from __future__ import annotations

import asyncio
import os
import socket

import asyncssh

from .patches import reason_first

LINGER = 3.0  # seconds a socket stays open for the client to read the reason
MAX_LINGERING = 64

_lingering: set[asyncio.Task[None]] = set()


def send_away(conn: asyncssh.SSHServerConnection, code: int, reason: str) -> None:
    """Disconnect ``conn`` with ``reason`` (on the event loop). For a refusal, call it
    from ``connection_made``: the disconnect goes once the version line is out (one sent
    before it reached OpenSSH as "banner line contains invalid characters")."""
    loop = asyncio.get_running_loop()
    held = _hold(conn) if len(_lingering) < MAX_LINGERING else None
    loop.call_soon(reason_first.disconnect, conn, code, reason)
    if held is not None:
        task = loop.create_task(_linger(held))  # (starts after the disconnect was sent)
        _lingering.add(task)
        task.add_done_callback(_lingering.discard)


def _hold(conn: asyncssh.SSHServerConnection) -> socket.socket | None:
    """A second descriptor of the connection's socket, or None if it has none."""
    transport_socket = conn.get_extra_info("socket")
    if transport_socket is None:
        return None
    try:
        held = socket.socket(fileno=os.dup(transport_socket.fileno()))
    except OSError:
        return None
    held.setblocking(False)
    return held


async def _linger(held: socket.socket) -> None:
    """Shut writing (after the disconnect message), then drop what the client still
    sends until it closes or ``LINGER`` passes; then close."""
    loop = asyncio.get_running_loop()
    with held:
        try:
            held.shutdown(socket.SHUT_WR)
            async with asyncio.timeout(LINGER):
                while await loop.sock_recv(held, 4096):
                    pass
        except (OSError, TimeoutError):
            pass
