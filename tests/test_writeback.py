"""Uploads start their writeback as they go: every ``WRITEBACK_STEP`` bytes an atomic
upload asks the kernel to send the new pages to the disk (without waiting), so the
fsync at commit is left with the tail; the content arrives whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hoody_mount.core import atomic_files, syscalls
from hoody_mount.core.atomic_files import WRITEBACK_STEP
from hoody_mount.core.vfs import VFS


def test_upload_starts_writeback_every_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[int, int]] = []
    real = syscalls.start_writeback

    def record(fd: int, offset: int, length: int) -> None:
        started.append((offset, length))
        real(fd, offset, length)

    monkeypatch.setattr(atomic_files.syscalls, "start_writeback", record)
    # A filesystem without direct I/O: the whole upload goes through the page cache.
    monkeypatch.setattr(atomic_files.DirectWriter, "start", lambda fd, offset: None)
    block = os.urandom(1 << 20)
    blocks = 3 * WRITEBACK_STEP // len(block) + 2
    upload = VFS.open_root(str(tmp_path)).atomic_file("/up.bin")
    for _ in range(blocks):
        upload.write(block)
    upload.commit()
    assert started == [(i * WRITEBACK_STEP, WRITEBACK_STEP) for i in range(3)]
    assert (tmp_path / "up.bin").read_bytes() == block * blocks
    real(-1, 0, 1)  # a hint: EBADF (or a C library without the call) is not an error
