"""An upload's SHA-256, hashed behind the receiving thread from 8 MiB on: the same digest
as hashing in one go, whatever the pieces; no helper left behind."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from hoody_mount.core.digests import HASH_BEHIND_FROM, StreamDigest


def _helpers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hoody-sha256"]


@pytest.mark.parametrize("piece", [1 << 20, 65537, 7])
@pytest.mark.parametrize(
    "size", [0, HASH_BEHIND_FROM - 1, HASH_BEHIND_FROM, 3 * HASH_BEHIND_FROM + 5]
)
def test_the_digest_is_that_of_the_whole_stream(size: int, piece: int) -> None:
    if piece == 7 and size > HASH_BEHIND_FROM:
        size = HASH_BEHIND_FROM + 100  # byte-sized pieces past the threshold, kept short
    data = os.urandom(size)
    digest = StreamDigest()
    for start in range(0, size, piece):
        digest.update(data[start : start + piece])
    assert digest.digest() == hashlib.sha256(data).digest()
    assert _helpers() == []


def test_a_dropped_stream_stops_its_helper() -> None:
    digest = StreamDigest()
    block = os.urandom(1 << 20)
    for _ in range(HASH_BEHIND_FROM // len(block) + 4):
        digest.update(block)
    assert _helpers() != []
    digest.close()
    digest.close()  # twice is fine
    assert _helpers() == []
