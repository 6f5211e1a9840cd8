"""Cutting an SFTP byte stream into packets, copying each byte once.

A packet is a uint32 length, then that many bytes. The channel's data arrives in pieces
of the client's SSH packet size (32 KiB from OpenSSH), so a 32 KiB WRITE spans two of
them. The pieces are kept as views until a packet is whole, then copied once into its
own ``bytes``; appending them to one growing buffer and slicing it copied every byte of
an upload three times, a sixth of the event loop's time in a 1 GiB put.
"""

from __future__ import annotations

from collections import deque

MIN_PACKET = 5  # a type and a request id (INIT: a type and a version)


class Framer:
    """Whole packets out of a stream of pieces."""

    def __init__(self, max_packet: int) -> None:
        self._max = max_packet
        self._pieces: deque[memoryview] = deque()
        self._size = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; the packets now whole, in order (without their lengths).

        Raises ``ValueError`` for a length outside 5 to ``max_packet``: the stream cannot
        be followed past it.
        """
        if data:
            self._pieces.append(memoryview(data))
            self._size += len(data)
        packets = []
        while self._size >= 4:
            length = int.from_bytes(self._peek(4), "big")
            if not MIN_PACKET <= length <= self._max:
                raise ValueError(f"packet of {length} bytes (the limit is {self._max})")
            if self._size < 4 + length:
                break
            self._take(4)
            packets.append(self._take(length))
        return packets

    def clear(self) -> None:
        """Drop what is buffered."""
        self._pieces.clear()
        self._size = 0

    def _peek(self, count: int) -> bytes:
        first = self._pieces[0]
        if len(first) >= count:
            return bytes(first[:count])
        return b"".join(self._pieces)[:count]  # a length split over pieces: rare and short

    def _take(self, count: int) -> bytes:
        self._size -= count
        first = self._pieces[0]
        if len(first) > count:
            self._pieces[0] = first[count:]
            return bytes(first[:count])
        if len(first) == count:
            self._pieces.popleft()
            return bytes(first)
        parts = []
        while count:
            piece = self._pieces.popleft()
            if len(piece) > count:
                self._pieces.appendleft(piece[count:])
                piece = piece[:count]
            parts.append(piece)
            count -= len(piece)
        return b"".join(parts)
