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


def test_a_folder_flush_that_fails_after_the_rename_says_the_content_is_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename is done when the folder's fsync fails (EIO): the new content is the
    file, no temp file is left, the commit is recorded, and the error says the content
    replaced the file but may not survive a crash (it read as a failed upload)."""
    (tmp_path / "up.txt").write_bytes(b"old")
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(5, os.strerror(5))
        real_fsync(fd)

    monkeypatch.setattr(atomic_files.os, "fsync", failing)
    upload = VFS.open_root(str(tmp_path)).atomic_file("/up.txt")
    committed = []
    upload.on_commit = lambda done, digest: committed.append(done.path)
    upload.write(b"new")
    with pytest.raises(OSError) as failed:
        upload.commit()
    assert failed.value.errno == 5
    assert "the new content replaced /up.txt" in str(failed.value)
    assert "may not survive a crash" in str(failed.value)
    assert (tmp_path / "up.txt").read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["up.txt"]
    assert committed == ["/up.txt"]
