"""Hand asyncssh the received bytes a piece at a time, so that it copies each byte less.

asyncssh keeps the bytes not yet parsed in one ``bytes`` object: each read is appended
to it, and each packet it parses is cut off the front by slicing off the rest, twice
(the header, then the body). asyncio reads up to 256 KiB at once, so during an upload
every 32 KiB packet copied the up to 224 KiB behind it twice: about eight copies of
every byte uploaded, a tenth of the event loop's time in an sshfs write of 1 GiB.

Handed on in pieces of about one SSH packet, the bytes behind a packet are never more
than a piece, and each byte is copied about three times. A byte stream may be cut
anywhere, so asyncssh sees the same stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asyncssh.connection import SSHConnection

PIECE = 32 * 1024 + 512  # OpenSSH's largest channel data packet, with its framing

# (called with memoryviews: asyncssh appends what it gets to its ``bytes`` buffer)
_original: Callable[[Any, Any, Any], None] = SSHConnection.data_received


def _data_received(self: Any, data: bytes, datatype: Any = None) -> None:
    if len(data) <= PIECE:
        _original(self, data, datatype)
        return
    view = memoryview(data)
    for start in range(0, len(data), PIECE):
        if self._transport is None:  # closed by an earlier piece
            return
        _original(self, view[start : start + PIECE], datatype)


def install() -> None:
    """Patch asyncssh's connections (idempotent)."""
    SSHConnection.data_received = _data_received  # type: ignore[method-assign]
