"""Cutting an SFTP byte stream into packets, however the stream is split."""

from __future__ import annotations

import random

import pytest

from hoody_mount.ssh.framing import Framer


def _stream(packets: list[bytes]) -> bytes:
    return b"".join(len(p).to_bytes(4, "big") + p for p in packets)


def test_any_split_gives_the_same_packets() -> None:
    """Packets split at every possible place, or many to one piece, come out whole."""
    rng = random.Random(7)
    packets = [
        bytes([rng.randrange(256)]) * rng.choice([5, 9, 40, 32768, 32800]) for _ in range(60)
    ]
    stream = _stream(packets)
    for _ in range(30):
        framer, out, at = Framer(1 << 20), [], 0
        while at < len(stream):
            step = rng.choice([1, 2, 3, 4, 5, 100, 32768, 70000])
            out += framer.feed(stream[at : at + step])
            at += step
        assert out == packets
    assert Framer(1 << 20).feed(stream) == packets


def test_a_partial_packet_waits() -> None:
    framer = Framer(1024)
    assert framer.feed(_stream([b"abcdefgh"])[:7]) == []
    assert framer.feed(b"defgh") == [b"abcdefgh"]
    assert framer.feed(b"") == []


@pytest.mark.parametrize("length", [0, 4, 1025])
def test_lengths_out_of_bounds_are_refused(length: int) -> None:
    """Too short to hold a type and an id, or over the limit: the stream is unusable."""
    with pytest.raises(ValueError):
        Framer(1024).feed(length.to_bytes(4, "big") + b"x" * 8)


def test_clear_drops_what_is_buffered() -> None:
    framer = Framer(1024)
    framer.feed(_stream([b"abcdefgh"])[:6])
    framer.clear()
    assert framer.feed(_stream([b"12345"])) == [b"12345"]
