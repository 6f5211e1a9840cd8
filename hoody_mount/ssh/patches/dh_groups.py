"""Diffie-Hellman group exchange with groups of 2048 bits or more only.

asyncssh's server answers a group exchange request with its 1024-bit group when the
client's preferred or maximum size asks for it: a client sending min=pref=max=1024
completed key exchange on a 1024-bit group (ssh-audit: fail). OpenSSH's server never
offers a group below 2048 bits and ends key exchange when none fits. Here the 1024-bit
group is taken out of the table, and a request whose maximum is below 2048 bits ends
key exchange with a reason.
"""

from __future__ import annotations

import struct
from typing import Any

from asyncssh import KeyExchangeFailed, kex_dh
from asyncssh.packet import SSHPacket

MIN_BITS = 2048

# private names of asyncssh; a changed asyncssh fails here, at start, not mid-handshake
_GROUPS: tuple[tuple[int, int, int], ...] = kex_dh._dh_gex_groups
_HANDLERS: dict[int, Any] = kex_dh._KexDHGex._packet_handlers  # type: ignore[assignment]
_REQUESTS = (kex_dh.MSG_KEX_DH_GEX_REQUEST_OLD, kex_dh.MSG_KEX_DH_GEX_REQUEST)
_original = {kind: _HANDLERS[kind] for kind in _REQUESTS}


def _requested_max(pkttype: int, payload: bytes) -> int:
    """The largest group the client accepts (the old request names none: asyncssh's; a
    short request is left to asyncssh, which refuses it)."""
    if pkttype == kex_dh.MSG_KEX_DH_GEX_REQUEST_OLD or len(payload) < 12:
        return kex_dh.KEX_DH_GEX_MAX_SIZE
    return int(struct.unpack(">I", payload[8:12])[0])


def _process_request(self: Any, pkttype: int, pktid: int, packet: SSHPacket) -> None:
    biggest = _requested_max(pkttype, packet.get_remaining_payload())
    if biggest < MIN_BITS:
        raise KeyExchangeFailed(f"no DH group of at most {biggest} bits: the minimum is {MIN_BITS}")
    _original[pkttype](self, pkttype, pktid, packet)


def install() -> None:
    """Patch asyncssh's group exchange (idempotent)."""
    big = tuple(group for group in _GROUPS if group[0] >= MIN_BITS)
    kex_dh._dh_gex_groups = big  # type: ignore[assignment]
    for kind in _REQUESTS:
        _HANDLERS[kind] = _process_request
