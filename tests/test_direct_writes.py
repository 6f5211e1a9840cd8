"""Large uploads are written with direct I/O from ``DIRECT_FROM`` on, by a helper thread.

Whatever the size, the pieces, the filesystem or the disk do, the committed content is
exactly what was sent, or the upload fails whole and leaves the target as it was.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hoody_mount.core import direct_writes
from hoody_mount.core.atomic_files import DIRECT_FROM, AtomicFile
from hoody_mount.core.direct_writes import BLOCK, MAX_WRITERS, DirectWriter
from hoody_mount.core.vfs import VFS

Pwrite = Callable[[int, object, int], int]


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _upload(root: Path, data: bytes, piece: int = 1 << 20) -> AtomicFile:
    upload = VFS.open_root(str(root)).atomic_file("/up.bin")
    for chunk in _pieces(data, piece):
        upload.write(chunk)
    return upload


def _helper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hoody-direct-write"]


def _is_direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, int, int]]:
    """Every pwrite made while the test runs: (through a direct descriptor, offset, length)."""
    seen: list[tuple[bool, int, int]] = []
    real: Pwrite = os.pwrite

    def spy(fd: int, data: memoryview, offset: int) -> int:
        seen.append((_is_direct(fd), offset, len(data)))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", spy)
    return seen


def _fail_direct_writes(monkeypatch: pytest.MonkeyPatch, error: int) -> None:
    real: Pwrite = os.pwrite

    def failing(fd: int, data: memoryview, offset: int) -> int:
        if _is_direct(fd):
            raise OSError(error, os.strerror(error))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", failing)


@pytest.mark.parametrize("piece", [1 << 20, 65537])
@pytest.mark.parametrize(
    "size", [DIRECT_FROM + extra for extra in (-1, 0, 1, 3 * BLOCK, 3 * BLOCK + 12345)]
)
def test_content_is_exact_and_whole_blocks_go_direct(
    tmp_path: Path, writes: list[tuple[bool, int, int]], size: int, piece: int
) -> None:
    data = os.urandom(size)
    _upload(tmp_path, data, piece).commit()
    assert (tmp_path / "up.bin").read_bytes() == data
    direct = [(offset, length) for is_direct, offset, length in writes if is_direct]
    whole_blocks = max(0, size - DIRECT_FROM) // BLOCK
    assert direct == [(DIRECT_FROM + i * BLOCK, BLOCK) for i in range(whole_blocks)]
    cached = [(offset, length) for is_direct, offset, length in writes if not is_direct]
    below = sum(length for offset, length in cached if offset < DIRECT_FROM)
    assert below == min(size, DIRECT_FROM)
    rest = max(0, size - DIRECT_FROM) % BLOCK
    tail = [(offset, length) for offset, length in cached if offset >= DIRECT_FROM]
    assert tail == ([(DIRECT_FROM + whole_blocks * BLOCK, rest)] if rest else [])
    assert _helper_threads() == []


def test_an_aborted_upload_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "up.bin").write_bytes(b"old")
    upload = _upload(tmp_path, os.urandom(DIRECT_FROM + 5 * BLOCK + 1))
    upload.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["up.bin"]
    assert (tmp_path / "up.bin").read_bytes() == b"old"
    assert _helper_threads() == []
    (tmp_path / "other.bin").touch()
    fds = [os.open(tmp_path / "other.bin", os.O_WRONLY) for _ in range(MAX_WRITERS)]
    writers = [DirectWriter.start(fd, 0) for fd in fds]
    try:
        assert None not in writers, "an aborted upload kept its slot"
    finally:
        for writer in writers:
            if writer is not None:
                writer.cancel()
        for fd in fds:
            os.close(fd)


def test_a_dropped_upload_leaves_nothing_behind(tmp_path: Path) -> None:
    """An upload that is neither committed nor aborted (its request died) removes its
    temp file and frees its direct-write slot when it is dropped."""
    (tmp_path / "up.bin").write_bytes(b"old")
    upload = _upload(tmp_path, os.urandom(DIRECT_FROM + 3 * BLOCK))
    assert len(list(tmp_path.iterdir())) == 2
    assert direct_writes._slots._value == MAX_WRITERS - 1
    del upload
    gc.collect()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["up.bin"]
    assert (tmp_path / "up.bin").read_bytes() == b"old"
    assert direct_writes._slots._value == MAX_WRITERS
    assert _helper_threads() == []


def test_a_half_made_upload_leaves_the_folder_fd_to_its_caller(tmp_path: Path) -> None:
    """An upload whose temp file cannot be created closes nothing when it is dropped:
    the folder's fd stays the caller's, open, to close once."""
    folder = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(FileNotFoundError):
            AtomicFile(folder, "missing/up.bin", "/missing/up.bin", 0o644)
        gc.collect()
        os.fstat(folder)  # still open
    finally:
        os.close(folder)


def test_uploads_beyond_the_limit_use_the_page_cache(
    tmp_path: Path, writes: list[tuple[bool, int, int]]
) -> None:
    data = [os.urandom(DIRECT_FROM + BLOCK) for _ in range(MAX_WRITERS + 1)]
    uploads = [VFS.open_root(str(tmp_path)).atomic_file(f"/up{i}.bin") for i in range(len(data))]
    for upload, content in zip(uploads, data, strict=True):
        for piece in _pieces(content, 1 << 20):
            upload.write(piece)
    for upload in uploads:
        upload.commit()
    for i, content in enumerate(data):
        assert (tmp_path / f"up{i}.bin").read_bytes() == content
    assert sum(is_direct for is_direct, _, _ in writes) == MAX_WRITERS  # one block each


def _refuse_direct_opens(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.open

    def no_direct(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_direct)


@pytest.mark.parametrize("refusal", ["open", "write"])
def test_a_filesystem_refusing_direct_io_gets_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: str
) -> None:
    if refusal == "open":
        _refuse_direct_opens(monkeypatch)
    else:
        _fail_direct_writes(monkeypatch, errno.EINVAL)
    data = os.urandom(DIRECT_FROM + 4 * BLOCK + 99)
    _upload(tmp_path, data).commit()
    assert (tmp_path / "up.bin").read_bytes() == data


def test_a_disk_error_fails_the_upload_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "up.bin").write_bytes(b"old")
    _fail_direct_writes(monkeypatch, errno.ENOSPC)
    upload = VFS.open_root(str(tmp_path)).atomic_file("/up.bin")
    with pytest.raises(OSError) as failed:  # at a later write, or at the latest at commit
        for piece in _pieces(os.urandom(DIRECT_FROM + 6 * BLOCK), 1 << 20):
            upload.write(piece)
        upload.commit()
    assert failed.value.errno == errno.ENOSPC
    upload.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["up.bin"]
    assert (tmp_path / "up.bin").read_bytes() == b"old"
    assert _helper_threads() == []


@pytest.mark.parametrize("full_at", [1 << 20, DIRECT_FROM + 2 * BLOCK])
def test_an_upload_whose_write_failed_is_never_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full_at: int
) -> None:
    """A front that reports a failed write but still commits (legacy scp's sink closed the
    file as finished after ENOSPC) gets the error again: the part that fitted never
    replaces the target, and nothing is logged as an upload."""
    (tmp_path / "up.bin").write_bytes(b"old")
    real: Pwrite = os.pwrite

    def filling(fd: int, data: memoryview, offset: int) -> int:
        if offset + len(data) > full_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", filling)
    upload = VFS.open_root(str(tmp_path)).atomic_file("/up.bin")
    committed: list[AtomicFile] = []
    upload.on_commit = lambda done, digest: committed.append(done)
    errors = []
    for piece in _pieces(os.urandom(DIRECT_FROM + 6 * BLOCK), 1 << 20):
        try:
            upload.write(piece)
        except OSError as exc:
            errors.append(exc.errno)
    assert set(errors) <= {errno.ENOSPC}
    assert errors or full_at > DIRECT_FROM  # (a direct write's error may come at commit)
    with pytest.raises(OSError) as failed:
        upload.commit()
    assert failed.value.errno == errno.ENOSPC
    assert committed == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["up.bin"]
    assert (tmp_path / "up.bin").read_bytes() == b"old"
    assert _helper_threads() == []


def test_direct_writes_start_on_a_block_boundary(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(ValueError):
            DirectWriter.start(fd, BLOCK // 2)
    finally:
        os.close(fd)
    assert DIRECT_FROM % BLOCK == 0
    assert direct_writes._slots._value == MAX_WRITERS  # every test gave its slots back


def test_a_copy_keeps_its_times_past_the_direct_writes(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(DIRECT_FROM + 3 * BLOCK + 5))
    os.utime(source, ns=(978307200 * 10**9, 978307200 * 10**9 + 123))  # 2001-01-01
    VFS.open_root(str(tmp_path)).copy_file("/src.bin", "/copy.bin")
    copy = tmp_path / "copy.bin"
    assert copy.read_bytes() == source.read_bytes()
    assert copy.stat().st_mtime_ns == 978307200 * 10**9 + 123


def test_an_unexpected_failure_in_the_helper_fails_the_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: DirectWriter, buffer: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(DirectWriter, "_write_block", broken)
    upload = VFS.open_root(str(tmp_path)).atomic_file("/up.bin")
    with pytest.raises(OSError) as failed:  # never a hang on the buffers
        for piece in _pieces(os.urandom(DIRECT_FROM + 8 * BLOCK), 1 << 20):
            upload.write(piece)
        upload.commit()
    assert failed.value.errno == errno.EIO
    upload.abort()
    assert list(tmp_path.iterdir()) == []
    assert _helper_threads() == []
