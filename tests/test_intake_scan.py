"""The intake's look for the end of a request head, as its bytes come in."""

from __future__ import annotations

import socket

from hoody_mount.http_transport import intake
from hoody_mount.http_transport.intake import Inbox, head_is_whole


def _trickle(data: bytes) -> list[int]:
    """Feed ``data`` byte by byte; the positions where a whole head was seen."""
    left, right = socket.socketpair()
    try:
        inbox = Inbox(left, 30.0)
        seen = []
        for n in range(len(data)):
            inbox.ahead += data[n : n + 1]
            if intake._head_is_here(b"", inbox):
                seen.append(n + 1)
        return seen
    finally:
        left.close()
        right.close()


def test_a_head_sent_byte_by_byte_is_whole_at_its_last_byte_only() -> None:
    for head in (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\r\n\r\nGET / HTTP/1.1\nHost: x\n\n",  # empty lines first, bare line feeds
        b"GET / HTTP/1.1\r\nHost: x\n\r\n",
    ):
        seen = _trickle(head)
        assert seen and seen[0] == len(head), head


def test_only_new_bytes_are_searched(monkeypatch: object) -> None:
    """A 64 KiB head trickled in byte by byte was searched whole at each byte: 2 GB of
    scanning for one connection."""
    searched = [0]
    real = head_is_whole

    def counting(data: bytes | bytearray, start: int = 0) -> bool:
        searched[0] += len(data) - start
        return real(data, start)

    monkeypatch.setattr(intake, "head_is_whole", counting)  # type: ignore[attr-defined]
    head = b"GET / HTTP/1.1\r\n" + b"X-Filler: " + b"a" * 20_000 + b"\r\n\r\n"
    assert _trickle(head) == [len(head)]
    assert searched[0] < 4 * len(head)


def test_what_a_pipelined_request_left_counts_with_the_new_bytes() -> None:
    left, right = socket.socketpair()
    try:
        inbox = Inbox(left, 30.0)
        inbox.ahead += b"\r\n"
        assert intake._head_is_here(b"GET / HTTP/1.1\r\nHost: x\r\n", inbox)
        assert not intake._head_is_here(b"GET / HTTP/1.1\r\n", Inbox(left, 30.0))
    finally:
        left.close()
        right.close()
