"""Key asyncssh's UMAC once per direction instead of once per packet.

OpenSSH clients pick ``umac-64-etm@openssh.com`` first. asyncssh builds a new UMAC
context for every packet it signs or checks: a fresh buffer and nettle's key setup,
which derives the hash keys with AES. That cost 7.5 µs for a 32 KiB packet here and
4.3 µs for a small one; with the context keyed once and only its nonce set per packet,
4.8 µs and 1.8 µs. Every SFTP request and every reply is at least one packet.

nettle resets a context's message state at each digest and then adds one to the
nonce, a 64-bit counter like the packet sequence number: the nonce is set only when
the sequence number is not the next one (the first packet, and after it wraps at
2**32). So one context per direction gives the same tags. A connection's MACs are used
on the event loop only.

The hashing itself (about 4 µs for 32 KiB) is called through ``ctypes.PyDLL``, which
keeps the GIL: asyncssh's ``ctypes.CDLL`` released it for every call, and a worker
waiting for it then took it, so the event loop waited for the worker in turn, twice
per packet during an upload.
"""

from __future__ import annotations

import ctypes
import functools
import hmac
from collections.abc import Callable
from typing import Any

from asyncssh import mac
from asyncssh.packet import UInt64


@functools.cache
def _hash_functions(bits: int) -> tuple[Any, Any]:
    """nettle's update and digest for UMAC-``bits``, called with the GIL held (the
    library asyncssh found; it offers UMAC only when it found one)."""
    from asyncssh.crypto import umac  # (only once asyncssh has found nettle's UMAC)

    nettle = ctypes.PyDLL(umac._nettle_lib)
    update = getattr(nettle, f"nettle_umac{bits}_update")
    digest = getattr(nettle, f"nettle_umac{bits}_digest")
    for function in (update, digest):  # (context, length, bytes)
        function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
        function.restype = None
    return update, digest


class KeyedUMAC(mac.MAC):
    """UMAC over a context keyed when the connection's keys are set."""

    def __init__(self, key: bytes, hash_size: int, umac_alg: Callable[..., Any]) -> None:
        super().__init__(key, hash_size)
        self._context = umac_alg(key)  # asyncssh's wrapper: it allocates and keys
        self._next_nonce = -1  # the nonce the context holds: none set yet
        self._address = ctypes.addressof(self._context._ctx)
        self._update, self._digest = _hash_functions(hash_size * 8)
        self._tag = ctypes.create_string_buffer(hash_size)

    def sign(self, seq: int, packet: bytes) -> bytes:
        """The tag of a packet with sequence number ``seq``."""
        context = self._context
        if seq != self._next_nonce:
            context.set_nonce(UInt64(seq))
        self._update(self._address, len(packet), packet)
        self._digest(self._address, len(self._tag), self._tag)
        self._next_nonce = seq + 1
        return self._tag.raw

    def verify(self, seq: int, packet: bytes, sig: bytes) -> bool:
        """Whether ``sig`` is the tag of the packet."""
        return hmac.compare_digest(self.sign(seq, packet), sig)


def install() -> None:
    """Make asyncssh's UMAC algorithms use ``KeyedUMAC`` (idempotent)."""
    if not mac._umac_available:  # no nettle with UMAC: asyncssh offers no UMAC
        return
    handlers = mac._mac_handler  # asyncssh's registry: no public setter
    for name, (handler, hash_size, args) in list(handlers.items()):
        if handler is mac._UMAC:
            _hash_functions(hash_size * 8)  # a missing function fails here, at start
            handlers[name] = (KeyedUMAC, hash_size, args)
