"""Read-ahead for sequential readers: the kernel is asked (POSIX_FADV_WILLNEED) to read
``READ_AHEAD`` bytes ahead of a reader that goes forward, never for one that jumps
around; reads answered from the cache on the event loop hand over to a worker near the
end of what was asked for, so the advice moves on."""

from __future__ import annotations

import os
import time
from itertools import pairwise
from pathlib import Path

import pytest

from hoody_mount.core import vfs as vfs_module
from hoody_mount.core.vfs import READ_AHEAD, VFS

MIB = 1 << 20


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    with open(path, "wb") as out:
        for _ in range(64):
            out.write(os.urandom(MIB))
    return path


def _advice(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def record(fd: int, offset: int, length: int, advice: int) -> None:
        if advice == os.POSIX_FADV_WILLNEED:
            calls.append((offset, offset + length))
        real(fd, offset, length, advice)

    monkeypatch.setattr(vfs_module.os, "posix_fadvise", record)
    return calls


def test_sequential_reads_are_read_ahead_and_jumps_are_not(
    big: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _advice(monkeypatch)
    file = VFS.open_root(str(big.parent)).open_file("/big.bin", os.O_RDONLY)
    try:
        for offset in range(0, 32 * MIB, MIB):  # forward, 1 MiB at a time
            assert file.read(offset, MIB) == big.read_bytes()[offset : offset + MIB]
        assert calls[0] == (MIB, MIB + READ_AHEAD), "advised from the first read on"
        covered = max(end for _, end in calls)
        assert covered >= 32 * MIB + READ_AHEAD // 2, "always well ahead of the reader"
        assert all(b[0] >= a[1] for a, b in pairwise(calls)), "no range asked twice"
        assert len(calls) <= 1 + 32 * MIB // (READ_AHEAD // 2), "one call per half window"
        calls.clear()
        for offset in (60 * MIB, 3 * MIB, 45 * MIB, 9 * MIB):  # jumping around
            file.read(offset, 4096)
        assert calls == [], "random reads get no advice"
    finally:
        file.close()


def test_cached_reads_hand_over_near_the_end_of_the_advice(big: Path) -> None:
    file = VFS.open_root(str(big.parent)).open_file("/big.bin", os.O_RDONLY)
    try:
        file.read(0, MIB)  # a worker's read: advice up to MIB + READ_AHEAD
        deadline = time.monotonic() + 10
        got = None
        while got is None and time.monotonic() < deadline:
            got = file.read_cached(2 * MIB, MIB)  # inside the advised range
            time.sleep(0.01)
        assert got is not None and bytes(got) == big.read_bytes()[2 * MIB : 3 * MIB]
        near_end = MIB + READ_AHEAD - READ_AHEAD // 4
        assert file.read_cached(near_end, MIB) is None, "a worker reads and advises on"
    finally:
        file.close()


def test_cold_sequential_read_brings_the_next_megabytes_in(big: Path) -> None:
    """The real effect: after one read from a cold file, data far beyond what the
    kernel reads ahead by itself arrives in the page cache without being read."""
    assert os.geteuid() == 0, "dropping caches needs root (CI runs as root)"
    file = VFS.open_root(str(big.parent)).open_file("/big.bin", os.O_RDONLY)
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1")
        target = READ_AHEAD - MIB  # well past the kernel's own initial window
        assert file.read_cached(target, 4096) is None, "cold after dropping the caches"
        file.read(0, 64 * 1024)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            buf = bytearray(4096)
            try:
                if os.preadv(file.fd, [buf], target, os.RWF_NOWAIT) == 4096:
                    break
            except BlockingIOError:
                pass
            time.sleep(0.02)
        else:
            raise AssertionError("the advised range never reached the page cache")
    finally:
        file.close()
