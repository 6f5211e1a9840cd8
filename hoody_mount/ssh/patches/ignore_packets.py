"""Stop asyncssh from sending an empty SSH_MSG_IGNORE before every encrypted packet.

asyncssh precedes each packet it encrypts with an empty IGNORE packet, the old defence
against the chosen-plaintext attack on CBC ciphers (RFC 4251, section 9.3.1). With the
counter-mode and GCM ciphers this server offers it buys nothing, yet it doubles the
packets to encrypt, MAC and write: one extra per 32 KiB of SFTP data, and one extra per
small reply. OpenSSH sends none.
"""

from __future__ import annotations

from typing import Any

from asyncssh.connection import SSHConnection
from asyncssh.constants import MSG_IGNORE
from asyncssh.packet import String

_original = SSHConnection.send_packet
_EMPTY = String(b"")


def _send_packet(self: Any, pkttype: int, *args: bytes, handler: Any = None) -> None:
    if pkttype == MSG_IGNORE and args == (_EMPTY,):
        return
    _original(self, pkttype, *args, handler=handler)


def install(ciphers: list[str]) -> None:
    """Patch asyncssh's connections (idempotent); only for servers offering no CBC cipher."""
    if any(name.endswith("-cbc") for name in ciphers):
        raise ValueError("the IGNORE countermeasure is needed with CBC ciphers")
    SSHConnection.send_packet = _send_packet  # type: ignore[method-assign]
