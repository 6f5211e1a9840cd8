"""A disconnect whose reason the client reads before anything else of the ending.

asyncssh's ``disconnect`` closes every channel first, then sends the disconnect
message. OpenSSH's client, told that its last channel closed, leaves at once, without
reading the message behind it: an idle sftp session ended by a stop said "Connection
closed" instead of the server's reason (4 runs in 9 under load). Here the message goes
first (asyncssh's private ``_send_disconnect``); ``disconnect`` then closes the
channels and sends it again, which the client, gone, never reads.
"""

from __future__ import annotations

import asyncssh
from asyncssh.constants import DEFAULT_LANG


def disconnect(conn: asyncssh.SSHServerConnection, code: int, reason: str) -> None:
    """Send ``reason``, then disconnect ``conn`` as asyncssh does."""
    conn._send_disconnect(code, reason, DEFAULT_LANG)  # noqa: SLF001 - see the module
    conn.disconnect(code, reason)
